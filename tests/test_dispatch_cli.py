"""`ocsched dispatch`: sub-agent sessions as event-sourced labels, against the fake gateway."""

from __future__ import annotations

import json

from .conftest import wait_until


def enqueue(scheduler, label="fix-bug", *extra, message="Fix the bug"):
    return scheduler.run(
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
    status = scheduler.ok("status", "--label", "fix-bug").json
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
    scheduler.ok("dispatch", "import-labels", _ledger(scheduler, {}))  # no-op import
    second = enqueue(scheduler).json
    assert first["sessionKey"] != second["sessionKey"]
    (entry,) = scheduler.ok("dispatch", "list").json["labels"]
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
    result = enqueue(scheduler)
    assert result.returncode == 1
    assert result.stderr.startswith("[dispatch] ")
    assert "Traceback" not in result.stderr
    assert scheduler.event_count() == before


def test_send_and_steer_reach_the_labels_session(scheduler, gateway):
    session = enqueue(scheduler).json["sessionKey"]
    sent = scheduler.ok("send", "--label", "fix-bug", "--message", "status?").json
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
        lambda: (r := scheduler.ok("result", "--label", "fix-bug").json)["lastReply"] and r,
        what="the reply",
    )
    assert out["lastReply"] == "Fixed it, see the PR."
    assert scheduler.ok("result", "--label", "nope").json == {
        "ok": False,
        "label": "nope",
        "message": "No session found for this label",
    }


def test_heartbeat_reports_liveness_from_the_gateway(scheduler, gateway):
    enqueue(scheduler)
    beat = wait_until(
        lambda: (b := scheduler.ok("heartbeat", "--label", "fix-bug").json)["ok"] and b,
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
    first = scheduler.ok("dispatch", "import-labels", ledger).json
    assert (first["imported"], first["skipped"]) == (1, 1)
    count = scheduler.event_count()
    again = scheduler.ok("dispatch", "import-labels", ledger).json
    assert again["imported"] == 0
    assert scheduler.event_count() == count
    (entry,) = scheduler.ok("dispatch", "list").json["labels"]
    assert (entry["label"], entry["status"], entry["summary"]) == ("old-task", "done", "Shipped.")


def test_stuck_and_sync_with_nothing_running(scheduler, gateway):
    stuck = scheduler.ok("stuck").json
    assert stuck["stuck_count"] == 0 and stuck["threshold_min"] == 15
    synced = scheduler.ok("sync", "--dry-run").json
    assert synced == {"ok": True, "dryRun": True, "changes": 0, "details": []}


def _ledger(scheduler, entries) -> str:
    path = scheduler.home.parent / f"labels-{len(entries)}.json"
    path.write_text(json.dumps(entries))
    return str(path)
