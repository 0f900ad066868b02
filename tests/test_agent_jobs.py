"""Agent jobs, deliveries and approvals through the project's fake gateway."""

from __future__ import annotations

import signal

from .conftest import shell_job, wait_until
from .test_daemon import finished_runs, runs_of


def agent_job(**fields) -> dict:
    spec = {
        "name": "summarize",
        "session_target": "isolated",
        "payload_message": "Summarize the news",
        "run_timeout_ms": 60000,
        "origin": "telegram:42",
        "delivery_mode": "announce-always",
        "delivery_channel": "telegram",
        "delivery_to": "12345",
    }
    spec.update(fields)
    if spec["delivery_mode"] == "none":
        spec.setdefault("delivery_opt_out_reason", "the test reads the run record")
    return spec


def test_an_isolated_job_runs_one_turn_and_delivers_the_reply(scheduler, daemons, gateway):
    gateway.reply_text = "All quiet today."
    job = scheduler.add(agent_job(), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert (run["status"], run["summary"]) == ("ok", "All quiet today.")
    assert run["session_key"] == f"agent:main:scheduler:{job['id']}"
    assert run["total_tokens"] and run["total_tokens"] > 0
    (turn,) = gateway.calls_of("agent")
    assert turn["idempotencyKey"] == run["id"]
    assert turn["message"].startswith(f"[scheduler:{job['id']} summarize]")
    sent = wait_until(gateway.messages_sent, what="the delivery")
    assert [(m["channel"], m["target"], m["message"]) for m in sent] == [
        ("telegram", "12345", "All quiet today.")
    ]
    # a send precedes its record (its idempotency key makes a repeat harmless): wait for it
    (delivery,) = wait_until(
        lambda: [
            d
            for d in scheduler.ok("--json", "deliveries", "list", "--run", run["id"]).json
            if d["status"] != "pending"
        ],
        what="the delivery recorded",
    )
    assert (delivery["status"], delivery["chunks_sent"]) == ("delivered", 1)


def test_a_main_session_job_uses_the_agents_main_session(scheduler, daemons, gateway):
    job = scheduler.add(agent_job(session_target="main", delivery_mode="none"), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["session_key"] == "agent:main:main"


def test_task_failed_is_a_soft_failure_delivered_under_announce(scheduler, daemons, gateway):
    gateway.reply_text = "TASK_FAILED: the feed was empty"
    job = scheduler.add(agent_job(delivery_mode="announce"), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert (run["status"], run["error_message"]) == ("error", "Agent signalled TASK_FAILED")
    (message,) = wait_until(gateway.messages_sent, what="the delivery")
    assert message["message"].startswith("⚠️ Job soft-failed (no retries configured): summarize")


def test_agent_jobs_wait_for_the_gateway_while_shell_jobs_run(scheduler, daemons, gateway):
    gateway.healthy = False
    agent = scheduler.add(agent_job(), "--in", "1s")
    shell = scheduler.add(shell_job(), "--in", "1s")
    daemons.start()
    finished_runs(scheduler, shell["id"])
    assert runs_of(scheduler, agent["id"]) == []
    assert gateway.turns() == 0


def test_a_killed_daemon_never_starts_a_second_turn(scheduler, daemons, gateway):
    gateway.reply_delay_s = 3
    job = scheduler.add(agent_job(delivery_mode="none"), "--in", "1s")
    first = daemons.start()
    wait_until(
        lambda: (r := runs_of(scheduler, job["id"])) and r[0]["status"] == "running",
        what="the turn to be accepted",
    )
    first.stop(signal.SIGKILL)
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"], timeout=20)
    assert run["status"] == "ok"
    assert gateway.turns() == 1
    assert len(runs_of(scheduler, job["id"])) == 1


def test_an_overloaded_gateway_fails_the_run_and_retries_it(scheduler, daemons, gateway):
    from ocsched.testing.fake_gateway import OVERLOADED_ERROR

    scheduler.env["OCSCHED_RETRY_BASE_S"] = "1"
    gateway.agent_error = OVERLOADED_ERROR
    job = scheduler.add(agent_job(delivery_mode="none", max_retries=1), "--in", "1s")
    daemons.start()
    (failed,) = finished_runs(scheduler, job["id"])
    assert failed["status"] == "error"
    gateway.agent_error = None
    runs = finished_runs(scheduler, job["id"], count=2)
    retry = next(r for r in runs if r["trigger"] == "retry")
    assert (retry["status"], retry["retry_of"]) == ("ok", failed["id"])


def test_a_delivery_failing_twice_is_sent_once_when_the_gateway_recovers(
    scheduler, daemons, gateway
):
    job = scheduler.add(agent_job(), "--in", "1s")
    gateway.http_status = 500
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    wait_until(
        lambda: scheduler.ok("--json", "deliveries", "list").json[0]["attempts"] >= 2,
        timeout=20,
        what="two failed attempts",
    )
    gateway.http_status = None
    wait_until(
        lambda: scheduler.ok("--json", "deliveries", "list").json[0]["status"] == "delivered",
        timeout=20,
        what="the delivery",
    )
    assert len(gateway.messages_sent()) == 1
    history = scheduler.ok("--json", "events", "show", _delivery_id(scheduler)).json
    kinds = [e["type"] for e in history]
    assert kinds[:3] == ["Delivery.Requested", "Delivery.AttemptFailed", "Delivery.AttemptFailed"]
    assert kinds[-1] == "Delivery.ChunkSent"
    assert run["status"] == "ok"


def test_a_delivery_to_an_alias_goes_to_the_aliased_chat(scheduler, daemons, gateway):
    scheduler.ok("alias", "add", "team", "telegram", "-100777", "the team")
    job = scheduler.add(agent_job(delivery_to="@team", delivery_channel=None), "--in", "1s")
    daemons.start()
    finished_runs(scheduler, job["id"])
    (message,) = wait_until(gateway.messages_sent, what="the delivery")
    assert (message["channel"], message["target"]) == ("telegram", "-100777")


def test_a_wrong_token_fails_the_run_naming_the_setting_not_the_token(scheduler, daemons, gateway):
    scheduler.env["OPENCLAW_GATEWAY_TOKEN"] = "not-the-token-s3cr3t"
    job = scheduler.add(agent_job(delivery_mode="none"), "--in", "1s")
    daemon = daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "error"
    assert "OPENCLAW_GATEWAY_TOKEN" in run["error_message"]
    assert "s3cr3t" not in run["error_message"]
    assert "s3cr3t" not in daemon.log
    assert "s3cr3t" not in scheduler.ok("events", "tail", "-n", "50").stdout


def _delivery_id(scheduler) -> str:
    return scheduler.ok("--json", "deliveries", "list").json[0]["id"]


def chained(scheduler, **child_fields):
    parent = scheduler.add(shell_job(name="build", payload_message="echo built"), "--in", "1s")
    child = scheduler.add(
        shell_job(
            name="deploy",
            parent_id=parent["id"],
            trigger_on="success",
            schedule_cron=None,
            approval_required=True,
            payload_message="echo deployed",
            delivery_mode="announce",
            delivery_channel="telegram",
            delivery_to="999",
            **child_fields,
        )
    )
    return parent, child


def pending(scheduler):
    return scheduler.ok("--json", "approvals", "pending").json


def test_an_approved_child_runs_and_the_request_is_delivered(scheduler, daemons, gateway):
    _, child = chained(scheduler)
    daemons.start()
    (approval,) = wait_until(lambda: pending(scheduler), what="an approval request")
    assert approval["job_name"] == "deploy"
    (notice,) = wait_until(gateway.messages_sent, what="the approval notice")
    assert notice["message"].startswith("⚠️ Job 'deploy' requires approval.")
    assert runs_of(scheduler, child["id"]) == []
    result = scheduler.ok("--json", "--actor", "alice", "jobs", "approve", child["id"]).json
    assert result == {
        "ok": True,
        "approval_id": approval["id"],
        "job_id": child["id"],
        "status": "approved",
    }
    (run,) = finished_runs(scheduler, child["id"])
    assert run["status"] == "ok"
    decision = scheduler.ok("--json", "events", "show", approval["id"]).json[-1]
    assert (decision["type"], decision["actor"]) == ("Approval.Approved", "alice")


def test_a_rejected_child_never_runs(scheduler, daemons, gateway):
    _, child = chained(scheduler)
    daemons.start()
    wait_until(lambda: pending(scheduler), what="an approval request")
    result = scheduler.ok("--json", "jobs", "reject", child["id"], "not", "today").json
    assert (result["status"], result["reason"]) == ("rejected", "not today")
    assert pending(scheduler) == []
    again = scheduler.run("jobs", "approve", child["id"])
    assert again.stderr.strip() == f"No pending approval for job: {child['id']}"
    assert runs_of(scheduler, child["id"]) == []


def test_approval_timeouts_apply_approval_auto(scheduler, daemons, gateway):
    scheduler.env["SCHEDULER_HEARTBEAT_CHECK_MS"] = "5000"
    _, approved = chained(scheduler, approval_timeout_s=1, approval_auto="approve")
    daemons.start()
    (run,) = finished_runs(scheduler, approved["id"], timeout=20)
    assert run["status"] == "ok"


def test_approval_timeout_rejects_by_default(scheduler, daemons, gateway):
    scheduler.env["SCHEDULER_HEARTBEAT_CHECK_MS"] = "5000"
    _, child = chained(scheduler, approval_timeout_s=1)
    daemons.start()
    wait_until(lambda: pending(scheduler), what="an approval request")
    wait_until(lambda: not pending(scheduler), timeout=20, what="the timeout")
    assert runs_of(scheduler, child["id"]) == []


def run_manually(scheduler, job_id: str, count: int) -> None:
    for done in range(1, count + 1):
        scheduler.ok("jobs", "run", job_id)
        finished_runs(scheduler, job_id, count=done)


def test_recent_retrieval_puts_the_prior_summaries_in_the_prompt(scheduler, daemons, gateway):
    replies = iter(["first answer", "second answer", "third answer"])
    gateway.reply_text = lambda message: next(replies)
    spec = agent_job(delivery_mode="none", context_retrieval="recent", context_retrieval_limit=2)
    job = scheduler.add({**spec, "schedule_cron": "0 0 1 1 *"})
    daemons.start()
    run_manually(scheduler, job["id"], 3)
    prompts = [call["message"] for call in gateway.calls_of("agent")]
    assert "--- Prior Run Context ---" not in prompts[0]
    block = prompts[2].split("--- Prior Run Context ---\n")[1].split("\n--- End")[0]
    assert [line.split("] ", 1)[1] for line in block.splitlines()] == [
        "second answer",
        "first answer",
    ]


def test_hybrid_retrieval_ranks_prior_runs_by_relevance(scheduler, daemons, gateway):
    replies = iter(["the weather was sunny", "database backups completed", "lunch menu"])
    gateway.reply_text = lambda message: next(replies, "done")
    spec = agent_job(
        delivery_mode="none",
        context_retrieval="hybrid",
        context_retrieval_limit=1,
        payload_message="Check the database backups",
        schedule_cron="0 0 1 1 *",
    )
    job = scheduler.add(spec)
    daemons.start()
    run_manually(scheduler, job["id"], 4)
    last_prompt = gateway.calls_of("agent")[-1]["message"]
    block = last_prompt.split("--- Prior Run Context ---\n")[1].split("\n--- End")[0]
    assert block.endswith("] database backups completed")


def test_a_websocket_dropped_mid_turn_costs_no_second_turn(scheduler, daemons, gateway):
    gateway.reply_delay_s = 1
    gateway.drop_after_accept = True
    job = scheduler.add(agent_job(delivery_mode="none"), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "ok"
    assert gateway.turns() == 1
    assert len(gateway.calls_of("agent")) >= 2  # the client re-sent the same request


def test_a_silent_session_is_aborted_by_the_activity_timeout(scheduler, daemons, gateway):
    scheduler.env["OCSCHED_ACTIVITY_POLL_S"] = "0.5"
    gateway.reply_delay_s = 30
    spec = agent_job(delivery_mode="none", payload_timeout_seconds=1)
    job = scheduler.add(spec, "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "error"
    assert run["error_message"] == "Session idle for 2s -- aborted (activity-based timeout)"


def test_an_auth_profile_is_pinned_on_the_session_before_the_turn(
    scheduler, daemons, gateway, tmp_path
):
    import json

    openclaw = tmp_path / "openclaw"
    (openclaw / "credentials").mkdir(parents=True)
    (openclaw / "credentials" / "auth-profiles.json").write_text('{"profiles": {}}')
    scheduler.env["OPENCLAW_HOME"] = str(openclaw)
    job = scheduler.add(
        agent_job(delivery_mode="none", auth_profile="anthropic:work"), "--in", "1s"
    )
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    store = json.loads((openclaw / "agents/main/sessions/sessions.json").read_text())
    short = run["session_key"].removeprefix("agent:main:")
    for key in (run["session_key"], short):
        assert store[key]["authProfileOverride"] == "anthropic:work"
        assert store[key]["authProfileOverrideSource"] == "user"
    assert (openclaw / "agents/main/agent/auth-profiles.json").exists()


def test_inherit_takes_the_main_sessions_profile(scheduler, daemons, gateway, tmp_path):
    import json

    openclaw = tmp_path / "openclaw"
    store_path = openclaw / "agents/main/sessions/sessions.json"
    store_path.parent.mkdir(parents=True)
    store_path.write_text(json.dumps({"agent:main:main": {"authProfileOverride": "openai:team"}}))
    scheduler.env["OPENCLAW_HOME"] = str(openclaw)
    job = scheduler.add(agent_job(delivery_mode="none", auth_profile="inherit"), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    store = json.loads(store_path.read_text())
    assert store[run["session_key"]]["authProfileOverride"] == "openai:team"
