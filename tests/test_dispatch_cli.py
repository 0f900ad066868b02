"""`ocsched dispatch`: sub-agent sessions as event-sourced labels, against the fake gateway."""

from __future__ import annotations

import json

import pytest

from ocsched.commands.dispatch import SUBCOMMANDS

from .conftest import wait_until


def enqueue(scheduler, label="fix-bug", *extra, message="Fix the bug", json=True):
    return scheduler.run(
        *(["--json"] if json else []),
        "dispatch",
        "enqueue",
        "--label",
        label,
        "--message",
        message,
        "--timeout",
        "600",
        "--deliver-to",
        "12345",
        *extra,
    )


def state(scheduler, label="fix-bug"):
    """`status --label` as JSON."""
    return scheduler.ok("--json", "status", "--label", label).json


def test_enqueue_spawns_a_session_and_records_the_label(scheduler, gateway):
    result = enqueue(scheduler)
    assert result.returncode == 0, result.stderr
    out = result.json
    assert out["ok"] is True and out["status"] == "accepted" and out["mode"] == "fresh"
    assert out["sessionKey"].startswith("agent:main:subagent:")
    assert out["delivery"] == {
        "scheduler": True,
        "gateway": False,
        "target": "12345",
        "channel": "telegram",
    }
    (turn,) = gateway.calls_of("agent")
    assert turn["lane"] == "subagent" and turn["deliver"] is False
    assert turn["sessionKey"] == out["sessionKey"]
    assert "ORIGIN_CHAT_ID: 12345" in turn["message"]
    assert "Fix the bug" in turn["message"]
    patch = gateway.calls_of("sessions.patch")[0]
    assert patch == {"key": out["sessionKey"], "spawnDepth": 1}
    status = state(scheduler, "fix-bug")
    assert (status["status"], status["sessionKey"]) == ("running", out["sessionKey"])


def test_enqueue_argument_errors_exit_2(scheduler, gateway):
    no_label = scheduler.run("dispatch", "enqueue", "--message", "x")
    assert (no_label.returncode, no_label.stderr.strip()) == (2, "[dispatch] --label is required")
    both = scheduler.run(
        "enqueue", "--label", "a", "--message", "x", "--message-env", "HOME", "--deliver-to", "1"
    )
    assert both.returncode == 2
    assert "choose only one of --message, --message-env" in both.stderr
    no_target = scheduler.run("enqueue", "--label", "a", "--message", "x")
    assert no_target.returncode == 2
    assert "REJECTED: --deliver-to is required for dispatch jobs." in no_target.stderr
    bad_timeout = scheduler.run(
        "enqueue", "--label", "a", "--message", "x", "--timeout", "-5", "--deliver-to", "1"
    )
    assert bad_timeout.stderr.strip() == "[dispatch] --timeout must be a positive integer"
    assert gateway.calls_of("agent") == []


def test_reenqueueing_a_label_starts_a_clean_record(scheduler, gateway):
    first = enqueue(scheduler).json
    scheduler.ok("--json", "dispatch", "import-labels", _ledger(scheduler, {}))  # no-op import
    second = enqueue(scheduler).json
    assert first["sessionKey"] != second["sessionKey"]
    (entry,) = scheduler.ok("--json", "dispatch", "list").json["labels"]
    assert entry["sessionKey"] == second["sessionKey"]
    assert entry["completion"] is None and entry["summary"] is None


def test_mode_reuse_needs_a_prior_session(scheduler, gateway):
    result = scheduler.run(
        "enqueue", "--label", "new", "--message", "x", "--mode", "reuse", "--deliver-to", "1"
    )
    assert result.returncode == 1
    assert 'mode=reuse: no prior session found for label "new". Use --mode fresh.' in (
        result.stderr
    )
    first = enqueue(scheduler, "again").json
    reused = enqueue(scheduler, "again", "--mode", "reuse").json
    assert reused["sessionKey"] == first["sessionKey"] and reused["mode"] == "reuse"


def test_a_gateway_that_is_down_is_a_clear_error(scheduler):
    scheduler.env.update(OPENCLAW_GATEWAY_URL="http://127.0.0.1:9", OPENCLAW_GATEWAY_TOKEN="t")
    before = scheduler.event_count()
    result = enqueue(scheduler, json=False)
    assert result.returncode == 1
    assert result.stderr.startswith("[dispatch] ")
    assert "Traceback" not in result.stderr
    assert scheduler.event_count() == before


def test_send_and_steer_reach_the_labels_session(scheduler, gateway):
    session = enqueue(scheduler).json["sessionKey"]
    sent = scheduler.ok("--json", "send", "--label", "fix-bug", "--message", "status?").json
    assert (sent["status"], sent["sessionKey"]) == ("sent", session)
    scheduler.ok("steer", "--label", "fix-bug", "--message", "focus on tests")
    nested = [c for c in gateway.calls_of("agent") if c["lane"] == "nested"]
    assert [c["message"] for c in nested] == ["status?", "focus on tests"]
    unknown = scheduler.run("send", "--label", "nope", "--message", "x")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1,
        '[dispatch] No session found for label "nope"',
    )


def test_result_returns_the_last_assistant_reply(scheduler, gateway):
    gateway.reply_text = "Fixed it, see the PR."
    enqueue(scheduler)
    out = wait_until(
        lambda: (
            (r := scheduler.ok("--json", "result", "--label", "fix-bug").json)["lastReply"] and r
        ),
        what="the reply",
    )
    assert out["lastReply"] == "Fixed it, see the PR."
    assert scheduler.ok("--json", "result", "--label", "nope").json == {
        "ok": False,
        "label": "nope",
        "message": "No session found for this label",
    }


def test_result_passes_over_an_empty_last_reply(scheduler, gateway):
    gateway.reply_text = lambda message: "" if "nudge" in message else "The real answer."
    enqueue(scheduler)
    wait_until(lambda: state(scheduler)["liveness"].get("tokens"), what="the first reply")
    scheduler.ok("send", "--label", "fix-bug", "--message", "nudge")
    wait_until(lambda: len(gateway.calls_of("agent")) == 2, what="the nudge")
    wait_until(
        lambda: len(ended := gateway.turn_statuses()) == 2 and all(ended.values()),
        what="both turns to end",
    )
    out = scheduler.ok("--json", "result", "--label", "fix-bug").json
    assert out["lastReply"] == "The real answer."


def test_heartbeat_reports_liveness_from_the_gateway(scheduler, gateway):
    enqueue(scheduler)
    beat = wait_until(
        lambda: (b := scheduler.ok("--json", "heartbeat", "--label", "fix-bug").json)["ok"] and b,
        what="the session to exist",
    )
    assert beat["alive"] is True
    missing = scheduler.run("heartbeat")
    assert missing.returncode == 2


def test_import_labels_turns_a_ledger_into_events_once(scheduler, gateway, tmp_path):
    ledger = _ledger(
        scheduler,
        {
            "old-task": {
                "sessionKey": "agent:main:subagent:abc",
                "status": "done",
                "summary": "Shipped.",
                "spawnedAt": "2026-01-01T00:00:00.000Z",
                "deliverTo": "12345",
            },
            "broken": "not an entry",
        },
    )
    first = scheduler.ok("--json", "dispatch", "import-labels", ledger).json
    assert (first["imported"], first["skipped"]) == (1, 1)
    count = scheduler.event_count()
    again = scheduler.ok("--json", "dispatch", "import-labels", ledger).json
    assert again["imported"] == 0
    assert scheduler.event_count() == count
    (entry,) = scheduler.ok("--json", "dispatch", "list").json["labels"]
    assert (entry["label"], entry["status"], entry["summary"]) == ("old-task", "done", "Shipped.")


def test_stuck_and_sync_with_nothing_running(scheduler, gateway):
    stuck = scheduler.ok("--json", "stuck").json
    assert stuck["stuck_count"] == 0 and stuck["threshold_min"] == 15
    synced = scheduler.ok("--json", "sync", "--dry-run").json
    assert synced == {"ok": True, "dryRun": True, "changes": 0, "details": []}


def _ledger(scheduler, entries) -> str:
    path = scheduler.home.parent / f"labels-{len(entries)}.json"
    path.write_text(json.dumps(entries))
    return str(path)


def done(scheduler, *flags):
    return scheduler.run("done", "--label", "fix-bug", *flags)


def done_json(scheduler, *flags):
    return scheduler.run("--json", "done", "--label", "fix-bug", *flags)


CHECKLIST = '{"work_complete":true,"tests_passed":true,"pushed":true}'


def test_done_guards_reject_and_leave_the_label_running(scheduler, gateway):
    enqueue(scheduler)
    before = scheduler.event_count()
    cases = [
        ((), "REJECTED: --checklist is required."),
        (("--checklist", "{nope"), "REJECTED: --checklist must be valid JSON."),
        (("--checklist", '{"work_complete":false}'), "REJECTED: checklist.work_complete must"),
        (
            ("--checklist", '{"work_complete":true,"tests_passed":false}'),
            "REJECTED: checklist.tests_passed is false.",
        ),
        (("--checklist", CHECKLIST), "REJECTED: Session ran for only"),
        (
            ("--checklist", CHECKLIST, "--force-done"),
            "REJECTED: --force-done requires --reason",
        ),
    ]
    for flags, message in cases:
        result = done(scheduler, *flags)
        assert result.returncode == 1, flags
        assert message in result.stderr, (flags, result.stderr)
    assert scheduler.event_count() == before
    assert state(scheduler, "fix-bug")["status"] == "running"


def test_a_sha_that_does_not_exist_is_rejected(scheduler, gateway):
    enqueue(scheduler, message="Fix it and git push the branch")
    result = done(
        scheduler,
        "--checklist",
        CHECKLIST,
        "--force-done",
        "--reason",
        "tiny fix",
        "--sha",
        "deadbeefcafe",
    )
    assert result.returncode == 1
    assert "REJECTED: SHA deadbeefcafe not found in local git." in result.stderr
    missing = done(scheduler, "--checklist", CHECKLIST, "--force-done", "--reason", "tiny fix")
    assert "REJECTED: Task involves git commits but --sha was not provided." in missing.stderr


def test_done_marks_the_label_and_the_daemon_delivers_the_result(scheduler, daemons, gateway):
    enqueue(scheduler)
    daemons.start()
    # (a dispatch done before the daemon saw it running gets its result only)
    wait_until(
        lambda: [m for m in gateway.messages_sent() if "starting..." in m["message"]],
        what="the starting notice",
    )
    result = done_json(
        scheduler,
        "--checklist",
        CHECKLIST,
        "--summary",
        "Fixed the race in the scheduler and added a regression test.",
        "--force-done",
        "--reason",
        "the fix was one line",
    )
    assert result.returncode == 0, result.stderr
    out = result.json
    assert out["status"] == "done" and out["completion"]["version"] == 2
    assert out["message"] == "Label marked done via agent signal."
    status = state(scheduler, "fix-bug")
    assert status["status"] == "done"
    sent = wait_until(
        lambda: [m for m in gateway.messages_sent() if "✅ [fix-bug] done" in m["message"]],
        what="the result delivery",
    )
    assert len(sent) == 1 and sent[0]["target"] == "12345"
    starting = [m for m in gateway.messages_sent() if "starting..." in m["message"]]
    assert len(starting) == 1


def test_done_for_an_unknown_label_is_recorded(scheduler, gateway):
    result = scheduler.run("--json", "done", "--label", "ghost", "--checklist", CHECKLIST)
    assert result.returncode == 0, result.stderr
    assert result.json["message"] == "Label not previously registered; marked done."
    (entry,) = scheduler.ok("--json", "dispatch", "list").json["labels"]
    assert (entry["label"], entry["status"]) == ("ghost", "done")


def test_hooks_are_retried_until_the_webhook_accepts_them(scheduler, daemons, gateway):
    import http.server
    import threading

    received: list[dict] = []
    answers = iter([500, 500])

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = next(answers, 200)
            if status == 200:
                received.append(json.loads(body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scheduler.env["DISPATCH_WEBHOOK_URL"] = f"http://127.0.0.1:{server.server_port}/hook"
        out = enqueue(scheduler)
        assert out.returncode == 0, out.stderr
        daemons.start()
        wait_until(lambda: received, timeout=20, what="the hook")
        (hook,) = received
        assert (hook["event"], hook["label"]) == ("dispatch.started", "fix-bug")
        assert hook["session_key"] == out.json["sessionKey"]

        def delivered():
            deliveries = scheduler.ok("--json", "deliveries", "list").json
            (record,) = [d for d in deliveries if d["channel"] == "webhook"]
            return record if record["status"] == "delivered" else None

        # The webhook answered before the daemon recorded the send: wait for the record.
        record = wait_until(delivered, timeout=10, what="the delivery's record")
        assert record["attempts"] == 3
    finally:
        server.shutdown()


def test_an_overloaded_dispatch_is_retried_once_across_a_restart(scheduler, daemons, gateway):
    import signal
    import time

    from ocsched.testing.fake_gateway import OVERLOADED_ERROR

    scheduler.env.update(OCSCHED_DISPATCH_FOLLOW_S="0.5", OCSCHED_OVERLOAD_GRACE_S="2")
    gateway.agent_error = OVERLOADED_ERROR
    assert enqueue(scheduler).returncode == 0
    first = daemons.start()
    failed = wait_until(
        lambda: (s := state(scheduler, "fix-bug"))["status"] == "error" and s,
        what="the overload to be noticed",
    )
    assert failed["error"].startswith("FailoverError (529): ")
    gateway.agent_error = None
    wait_until(
        lambda: scheduler.ok("--json", "dispatch", "list").json["labels"][0]["retryCount"] == 1,
        what="the retry",
    )
    first.stop(signal.SIGKILL)
    daemons.start()
    time.sleep(3)
    (entry,) = scheduler.ok("--json", "dispatch", "list").json["labels"]
    assert (entry["status"], entry["retryCount"]) == ("running", 1)
    retries = [c for c in gateway.calls_of("agent") if "Auto-retry after 529" in c["message"]]
    assert len({c["idempotencyKey"] for c in retries}) == 1


def test_stuck_reports_silent_sessions_and_exits_1(scheduler, gateway, tmp_path):
    import time

    config = tmp_path / "dispatch-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"name": "crew", "startupGraceMs": 0}))
    scheduler.env["DISPATCH_CONFIG_DIR"] = str(config)
    result = scheduler.run(
        "enqueue", "--label", "slow", "--message", "x", "--timeout", "1", "--deliver-to", "1"
    )
    assert result.returncode == 0, result.stderr
    time.sleep(1.5)
    stuck = scheduler.run("stuck", "--threshold-min", "0.01")
    assert stuck.returncode == 1
    lines = stuck.stdout.splitlines()
    assert lines[0] == "⚠️ crew: 1 stuck session:"
    assert lines[1].startswith("* slow (running 0min, silent")


def test_a_failing_verify_command_turns_done_into_an_error(scheduler, daemons, gateway):
    enqueue(scheduler, "checked", "--verify-cmd", "echo missing artifact >&2; exit 3")
    daemons.start()
    result = scheduler.run(
        "done",
        "--label",
        "checked",
        "--checklist",
        CHECKLIST,
        "--force-done",
        "--reason",
        "test",
    )
    assert result.returncode == 0, result.stderr
    status = wait_until(
        lambda: (s := state(scheduler, "checked"))["status"] == "error" and s,
        what="the verification",
    )
    assert status["error"] == "verify-cmd failed: missing artifact"
    (message,) = wait_until(
        lambda: [m for m in gateway.messages_sent() if "VERIFICATION FAILED" in m["message"]],
        what="the failure delivery",
    )
    assert "exit 3" in message["message"]


def test_a_session_the_gateway_never_saw_is_a_spawn_failure(scheduler, daemons, gateway, tmp_path):
    from .conftest import ThreadedFakeGateway

    config = tmp_path / "dispatch-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"startupGraceMs": 2000}))
    scheduler.env.update(DISPATCH_CONFIG_DIR=str(config), OCSCHED_DISPATCH_FOLLOW_S="0.5")
    assert enqueue(scheduler).returncode == 0
    elsewhere = ThreadedFakeGateway()  # a gateway that never saw the session
    try:
        scheduler.env.update(elsewhere.env())
        daemons.start()
        status = wait_until(
            lambda: (s := state(scheduler, "fix-bug"))["status"] == "error" and s,
            what="the spawn failure",
        )
        assert status["error"] == "spawn-failure: session never appeared in gateway"
    finally:
        elsewhere.stop()


def test_origin_is_detected_from_the_agents_active_group_session(scheduler, gateway, tmp_path):
    import time

    now = int(time.time() * 1000)
    store = tmp_path / "openclaw" / "agents/main/sessions/sessions.json"
    store.parent.mkdir(parents=True)
    store.write_text(
        json.dumps(
            {
                "agent:main:telegram:direct:1": {
                    "updatedAt": now,
                    "deliveryContext": {"to": "telegram:111"},
                },
                "agent:main:telegram:group:2": {
                    "updatedAt": now - 60_000,
                    "deliveryContext": {"to": "telegram:-100222"},
                },
                "agent:main:subagent:x": {"updatedAt": now, "deliveryContext": {"to": "no"}},
            }
        )
    )
    scheduler.env["OPENCLAW_HOME"] = str(tmp_path / "openclaw")
    result = scheduler.run("--json", "enqueue", "--label", "auto", "--message", "x")
    assert result.returncode == 0, result.stderr
    assert "auto-detected origin from active session: telegram:-100222" in result.stderr
    assert result.json["delivery"]["target"] == "-100222"


def test_the_gateway_token_may_come_from_openclaw_json(scheduler, gateway, tmp_path):
    home = tmp_path / "openclaw"
    home.mkdir()
    (home / "openclaw.json").write_text(json.dumps({"gateway": {"auth": {"token": gateway.token}}}))
    scheduler.env.pop("OPENCLAW_GATEWAY_TOKEN")
    scheduler.env["OPENCLAW_HOME"] = str(home)
    assert enqueue(scheduler).returncode == 0
    handoff = scheduler.ok("--json", "dispatch", "watcher-handoff", "--label", "fix-bug").json
    assert (handoff["ok"], handoff["scheduled"]) == (True, False)


def test_status_resolves_a_dispatch_whose_session_went_away(scheduler, gateway, tmp_path):
    from .conftest import ThreadedFakeGateway

    config = tmp_path / "dispatch-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"startupGraceMs": 0}))
    scheduler.env["DISPATCH_CONFIG_DIR"] = str(config)
    assert enqueue(scheduler).returncode == 0
    elsewhere = ThreadedFakeGateway()  # the session is unknown there: it went away
    try:
        scheduler.env.update(elsewhere.env())
        status = state(scheduler, "fix-bug")
    finally:
        elsewhere.stop()
    assert status["status"] == "interrupted"
    assert status["syncAction"] == (
        "auto-resolved as interrupted: session not found in sessions store or gateway API"
    )


# --- the command line: help, typos, unknown flags, text output ------------------------------

SUBCOMMAND_NAMES = sorted(SUBCOMMANDS)
SHORTCUTS = ("enqueue", "stuck", "result", "sync", "done", "send", "steer", "heartbeat", "list")


@pytest.mark.parametrize("name", SUBCOMMAND_NAMES)
def test_every_dispatch_subcommand_has_help_with_examples(scheduler, name):
    result = scheduler.ok("dispatch", name, "--help")
    assert result.stdout.startswith(f"Usage: ocsched dispatch {name}")
    assert "\nExamples:\n  ocsched " in result.stdout
    assert "--json" in result.stdout
    if name in SHORTCUTS:  # spec §5.1: the bare form is the same command
        assert scheduler.ok(name, "--help").stdout == result.stdout
    assert not scheduler.db_path.exists()  # help opens no store


def test_a_flag_s_value_that_looks_like_help_is_a_value(scheduler, gateway):
    result = scheduler.run("send", "--label", "nope", "--message", "-h")
    assert (result.returncode, result.stderr) == (
        1,
        '[dispatch] No session found for label "nope"\n',
    )


@pytest.mark.parametrize(
    ("argv", "nearest"),
    [
        (("dispatch", "enqeue"), "enqueue"),
        (("dispatch", "stauts", "--label", "x"), "status"),
        (("dispatch", "import-lables", "x.json"), "import-labels"),
        (("enqeue", "--label", "x"), "enqueue"),  # a bare §5.1 shortcut
    ],
)
def test_a_misspelled_subcommand_exits_2_naming_the_nearest(scheduler, argv, nearest):
    result = scheduler.run(*argv)
    assert result.returncode == 2 and result.stdout == ""
    assert f"did you mean '{nearest}'?" in result.stderr and result.stderr.count("\n") == 1
    as_json = scheduler.run("--json", *argv)
    assert as_json.returncode == 2 and as_json.json["ok"] is False


def test_an_unknown_flag_exits_2_naming_the_nearest(scheduler, gateway):
    result = scheduler.run("enqueue", "--label", "a", "--mesage", "x", "--deliver-to", "1")
    assert (result.returncode, result.stderr) == (
        2,
        "[dispatch] Unknown option: --mesage; did you mean '--message'?\n",
    )
    assert gateway.calls_of("agent") == []


def test_dispatch_alone_prints_its_help_and_exits_2(scheduler):
    result = scheduler.run("dispatch")
    assert result.returncode == 2
    assert result.stdout == scheduler.ok("dispatch", "--help").stdout


def test_loose_flags_keep_spec_31_1(scheduler, gateway):
    """`--name=value`; a flag before another `--` flag is true; the last occurrence wins;
    other words are ignored."""
    result = scheduler.run(
        "--json",
        "enqueue",
        "stray",
        "--label=first",
        "--label",
        "second",
        "--message",
        "x",
        "--timeout=60",
        "--deliver-to",
        "1",
        "--no-monitor",
        "--thinking",
    )
    assert result.returncode == 0, result.stderr
    assert result.json["label"] == "second" and result.json["watchdog"] is None
    (patch,) = gateway.calls_of("sessions.patch")  # --thinking alone: no thinking level
    assert "thinkingLevel" not in patch


def test_the_commands_print_text_without_json(scheduler, gateway, tmp_path):
    enqueued = enqueue(scheduler, json=False)
    assert enqueued.returncode == 0, enqueued.stderr
    lines = enqueued.stdout.splitlines()
    assert lines[0] == "Enqueued fix-bug (fresh session, agent main)."
    assert any(line.split() == ["deliver", "to", "telegram", "12345"] for line in lines)
    assert lines[-1] == "Session spawned. Durable delivery watcher registered."
    status = scheduler.ok("status", "--label", "fix-bug").stdout
    assert status.startswith("fix-bug: running\n")
    assert "  session " in status and "spawned " in status and " UTC" in status
    listing = scheduler.ok("list").stdout.splitlines()
    assert listing[0].split()[:5] == ["LABEL", "STATUS", "AGENT", "SPAWNED", "(UTC)"]
    assert listing[2].split()[:3] == ["fix-bug", "running", "main"]
    sent = scheduler.ok("send", "--label", "fix-bug", "--message", "hi").stdout
    assert sent.startswith("Message sent to session agent:main:subagent:")
    beat = wait_until(
        lambda: (
            (b := scheduler.ok("heartbeat", "--label", "fix-bug").stdout).startswith("alive") and b
        ),
        what="the session to exist",
    )
    assert beat.startswith("alive: agent:main:subagent:")
    reply = wait_until(
        lambda: "Last reply:" in (r := scheduler.ok("result", "--label", "fix-bug").stdout) and r,
        what="the reply",
    )
    assert reply.startswith("fix-bug: running\n")
    assert scheduler.ok("result", "--label", "nope").stdout == "No session found for this label\n"
    assert scheduler.ok("stuck").stdout == "No stuck sessions (threshold 15 min).\n"
    assert scheduler.ok("sync", "--dry-run").stdout == "Nothing to resolve.\n"
    assert scheduler.ok("dispatch", "watcher-handoff", "--label", "fix-bug").stdout == (
        "fix-bug: not scheduled: the daemon follows every running dispatch\n"
    )
    done = scheduler.ok("done", "--label", "ghost", "--checklist", CHECKLIST).stdout
    assert done.startswith("Label not previously registered; marked done.\n")
    imported = scheduler.ok("dispatch", "import-labels", _ledger(scheduler, {"old": {}})).stdout
    assert imported == "Imported 1 label, skipped 0: old\n"


# --- import-labels: every field kept, running dispatches followed -----------------------------


def test_import_labels_keeps_every_field_of_the_ledger(scheduler, gateway):
    entry = {
        "sessionKey": "agent:main:subagent:kept",
        "runId": "run-kept",
        "agent": "main",
        "status": "done",
        "summary": "Shipped.",
        "completion": {"version": 2, "summary": "Shipped.", "sha": "abc1234"},
        "sha": "abc1234",
        "spawnedAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T01:00:00+01:00",
        "lastPing": 1767229200000,
        "retryCount": 2,
        "timeout": 1800,
        "timeoutSeconds": 1200,
        "deliverTo": "12345",
    }
    scheduler.ok("dispatch", "import-labels", _ledger(scheduler, {"kept": entry}))
    (listed,) = scheduler.ok("--json", "dispatch", "list").json["labels"]
    assert {key: listed[key] for key in ("runId", "completion", "sha", "retryCount")} == {
        "runId": "run-kept",
        "completion": entry["completion"],
        "sha": "abc1234",
        "retryCount": 2,
    }
    assert (listed["updatedAt"], listed["lastPing"]) == (
        "2026-01-01T00:00:00.000Z",  # the same moment, as toISOString writes it
        "2026-01-01T01:00:00.000Z",
    )
    assert (listed["timeout"], listed["timeoutSeconds"]) == (1800, 1200)
    (event,) = [e for e in scheduler.ok("--json", "events", "tail").json if "Enqueued" in e["type"]]
    assert event["fields"]["settings"]["run_id"] == "run-kept"


def test_the_daemon_follows_dispatches_imported_while_running(
    scheduler, daemons, gateway, tmp_path
):
    import time
    from datetime import UTC, datetime, timedelta

    config = tmp_path / "dispatch-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"startupGraceMs": 1000}))
    scheduler.env.update(DISPATCH_CONFIG_DIR=str(config), OCSCHED_DISPATCH_FOLLOW_S="0.5")
    live = "agent:main:subagent:live"
    scheduler.ok("send", "--session-key", live, "--message", "hello")  # the session exists
    now = datetime.now(UTC)

    def iso(seconds_ago: float) -> str:
        return (now - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")

    running = {"status": "running", "deliverTo": "12345", "timeoutSeconds": 600}
    ledger = {
        "live": {**running, "sessionKey": live, "spawnedAt": iso(5), "runId": "r1"},
        "gone": {**running, "sessionKey": "agent:main:subagent:gone", "spawnedAt": iso(60)},
        "over": {**running, "status": "done", "summary": "old news", "spawnedAt": iso(90)},
    }
    scheduler.ok("dispatch", "import-labels", _ledger(scheduler, ledger))
    daemons.start()

    def results(label):
        return [m for m in gateway.messages_sent() if f"[{label}]" in m["message"]]

    (gone,) = wait_until(lambda: results("gone"), timeout=20, what="the gone session's result")
    assert gone["message"].startswith("⚠️ [gone] interrupted")
    assert state(scheduler, "live")["status"] == "running"
    done = scheduler.run(
        "done", "--label", "live", "--checklist", CHECKLIST, "--force-done", "--reason", "test"
    )
    assert done.returncode == 0, done.stderr
    (result,) = wait_until(lambda: results("live"), timeout=20, what="the live result")
    assert result["message"].startswith("✅ [live] done") and result["target"] == "12345"
    time.sleep(1)  # a pass or two more: nothing else goes out
    assert results("over") == [] and len(results("live")) == len(results("gone")) == 1
    assert not [m for m in gateway.messages_sent() if "starting..." in m["message"]]


def test_send_and_steer_leave_updated_at_alone(scheduler, gateway):
    enqueue(scheduler)
    before = state(scheduler)["updatedAt"]
    scheduler.ok("send", "--label", "fix-bug", "--message", "status?")
    scheduler.ok("steer", "--label", "fix-bug", "--message", "focus")
    assert state(scheduler)["updatedAt"] == before


def test_each_command_asks_the_gateway_for_the_least_scopes_it_needs(scheduler, gateway):
    def scopes_of(*argv):
        before = len(gateway.calls_of("connect"))
        scheduler.ok(*argv)
        return {tuple(c["scopes"]) for c in gateway.calls_of("connect")[before:]}

    read, write = {("operator.read",)}, {("operator.read", "operator.write")}
    enqueue = ("enqueue", "--label", "l", "--message", "x", "--timeout", "60", "--deliver-to", "1")
    # a fresh session's spawnDepth is outside what operator.write may patch
    assert scopes_of(*enqueue) == {("operator.read", "operator.write", "operator.admin")}
    assert scopes_of(*enqueue, "--mode", "reuse") == write  # no patch
    assert scopes_of("send", "--label", "l", "--message", "y") == write
    assert scopes_of("status", "--label", "l") == read
    assert scopes_of("result", "--label", "l") == read
    assert scopes_of("heartbeat", "--label", "l") == read
    assert scopes_of("sync", "--dry-run") == read


def test_a_fresh_overload_retry_patches_its_session_over_an_admin_connection(
    scheduler, daemons, gateway
):
    from ocsched.testing.fake_gateway import OVERLOADED_ERROR

    scheduler.env.update(OCSCHED_DISPATCH_FOLLOW_S="0.5", OCSCHED_OVERLOAD_GRACE_S="1")
    gateway.agent_error = OVERLOADED_ERROR  # the first turn and the same-session retry fail
    gateway.reply_delay_s = 1  # each failure after the retry is recorded
    first = enqueue(scheduler).json["sessionKey"]
    daemons.start()
    wait_until(
        lambda: scheduler.ok("--json", "list").json["labels"][0]["retryCount"] == 2,
        timeout=30,
        what="the second retry, in a fresh session",
    )
    fresh = state(scheduler)["sessionKey"]
    assert fresh != first
    patches = [c for c in gateway.calls_of("sessions.patch") if c["key"] == fresh]
    assert patches == [{"key": fresh, "spawnDepth": 1}]
    admin = [c for c in gateway.calls_of("connect") if "operator.admin" in c["scopes"]]
    assert len(admin) == 2  # enqueue's, and the retry's own connection; never the daemon's
