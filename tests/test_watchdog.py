"""Watchdog jobs (spec §24): the verdicts of a check, their records, and a real daemon
running real check commands that alert, time out and disarm."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.run import Run
from ocsched.domain.watchdog import CHECKED, elapsed_minutes, judge, terminal_payload

from .conftest import shell_job, wait_until
from .test_daemon import finished_runs
from .test_reactions import NOW, Store, conclude, due_job, fire, started

CHECK = "check-task --label build-42"


def watchdog(**fields) -> dict:
    job = {
        "job_type": "watchdog",
        "watchdog_target_label": "build-42",
        "watchdog_check_cmd": CHECK,
        "watchdog_alert_channel": "telegram",
        "watchdog_alert_target": "4242",
        "watchdog_self_destruct": 1,
        "run_timeout_ms": 120000,
    }
    job.update(fields)
    return job


# The verdicts


def test_exit_2_is_a_transient_failure_of_the_check_and_alerts_nobody():
    verdict = judge(watchdog(), 2, "", "network down\n", NOW)
    assert (verdict.status, verdict.alert) == ("ok", None)
    assert verdict.summary == "Watchdog check failed (transient): network down"


def test_a_terminal_json_report_disarms_with_its_detail():
    report = json.dumps({"status": "done", "summary": "Built and pushed."})
    verdict = judge(watchdog(), 0, report, "", NOW)
    assert verdict.disarm and verdict.status == "ok"
    assert verdict.alert == (
        '✅ [watchdog] Task "build-42" completed -- watchdog disarmed\n\nBuilt and pushed.'
    )
    assert verdict.summary == '✅ [watchdog] Task "build-42" completed -- watchdog disarmed'


def test_a_terminal_failure_says_so_with_its_error():
    report = 'status line\n{"status": "error", "error": "tests failed"}\ntrailer'
    verdict = judge(watchdog(), 0, report, "", NOW)
    assert verdict.disarm
    assert verdict.alert == (
        '⚠️ [watchdog] Task "build-42" ended with failure -- watchdog disarmed\n'
        "Details: tests failed"
    )


def test_terminal_true_without_detail_gets_the_default_text():
    verdict = judge(watchdog(), 0, '{"terminal": true}', "", NOW)
    assert verdict.alert is not None
    assert verdict.alert.endswith("\n\nTask reported terminal status done.")
    failed = judge(watchdog(), 0, '{"status": "interrupted"}', "", NOW)
    assert failed.alert is not None
    assert failed.alert.endswith("Details: Task ended with status interrupted.")


def test_plain_text_and_running_reports_are_not_terminal():
    assert terminal_payload("Done.") is None
    assert terminal_payload('{"status": "running"}') is None
    assert terminal_payload("[1, 2]") is None
    verdict = judge(watchdog(), 0, "Done.", "", NOW)
    assert (verdict.kind, verdict.alert, verdict.disarm) == ("running", None, False)
    assert verdict.summary == (
        "Watchdog check returned non-terminal output; target still running (0min elapsed)"
    )
    quiet = judge(watchdog(), 0, "  \n", "", NOW)
    assert quiet.summary == "Watchdog check: target still running (0min elapsed)"


def test_exit_1_alerts_that_the_task_appears_stuck():
    started = (NOW - timedelta(minutes=12, seconds=31)).isoformat().replace("+00:00", "Z")
    job = watchdog(watchdog_started_at=started, watchdog_timeout_min=30)
    verdict = judge(job, 1, "last output 12 min ago", "slow", NOW)
    assert verdict.summary == "Watchdog alert fired: check command reported stuck"
    assert verdict.alert == "\n".join(
        [
            '🚨 [watchdog] Task "build-42" appears stuck',
            f"- Dispatched: {started}",
            "- Running for: 13 minutes (threshold: 30 min)",
            "- Reason: check command reported stuck",
            "- Check: check-task",
            "- Error: slow",
            "- Output: last output 12 min ago",
        ]
    )


def test_the_time_threshold_alerts_even_when_the_check_says_running():
    started = (NOW - timedelta(minutes=45)).isoformat()
    job = watchdog(watchdog_started_at=started, watchdog_timeout_min=45)
    assert elapsed_minutes(job, NOW) == (45, True)
    verdict = judge(job, 0, "", "", NOW)
    assert verdict.kind == "stuck"
    assert verdict.summary == "Watchdog alert fired: running for 45min (threshold: 45min)"
    assert verdict.alert is not None and "- Dispatched: " + started in verdict.alert


def test_a_long_check_command_is_cut_in_the_alert_and_thresholds_may_be_unknown():
    job = watchdog(watchdog_check_cmd="probe " + "x" * 80)
    verdict = judge(job, 1, "", "", NOW)
    assert verdict.alert is not None
    assert "- Check: probe [...]" in verdict.alert
    assert "- Dispatched: unknown" in verdict.alert
    assert "- Running for: 0 minutes (threshold: ? min)" in verdict.alert


def test_an_odd_exit_code_is_an_error_of_the_watchdog():
    verdict = judge(watchdog(), 7, "", "", NOW)
    assert (verdict.status, verdict.alert) == ("error", None)
    assert verdict.summary == "Watchdog check command returned unexpected exit code 7"


def test_a_check_killed_by_its_timeout_counts_as_reporting_stuck():
    killed = judge(watchdog(), None, "", "Terminated", NOW)
    assert killed.kind == "stuck"
    assert killed.summary == "Watchdog alert fired: check command reported stuck"


def test_an_unreadable_start_time_counts_as_no_elapsed_time():
    assert elapsed_minutes(watchdog(watchdog_started_at="soon", watchdog_timeout_min=1), NOW) == (
        0,
        False,
    )


# The records (reactions on a real store)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    yield store
    store.ctx.close()


def checked(exit_code: int, stdout: str = "", stderr: str = "") -> Outcome:
    fields = {"shell_exit_code": exit_code, "shell_stdout": stdout, "shell_stderr": stderr}
    return Outcome(CHECKED, fields, stdout)


def watchdog_run(store, **fields) -> tuple[Run, dict]:
    spec = watchdog(payload_message="true", **fields)
    job = due_job(store, **spec)
    run = started(store, fire(store, job))
    return run, job


def test_a_stuck_check_records_its_alert_for_the_alert_target_only(store):
    run, job = watchdog_run(store, delivery_mode="announce-always", delivery_to="999")
    plan = conclude(store, run, job, checked(1, "still compiling"))
    store.save(plan)
    record = store.run(run.id)
    assert (record["status"], record["summary"]) == (
        "ok",
        "Watchdog alert fired: check command reported stuck",
    )
    rows = store.db().execute("SELECT * FROM deliveries WHERE run_id = ?", (run.id,)).fetchall()
    assert [(d["purpose"], d["channel"], d["target"]) for d in rows] == [
        ("watchdog", "telegram", "4242")
    ]
    (delivery,) = [r for r in plan.records if type(r).__name__ == "Delivery"]
    assert delivery.chunks[0].startswith('🚨 [watchdog] Task "build-42" appears stuck')
    after = store.job(job["id"])
    assert after["enabled"] == 1 and after["last_status"] == "ok"


def test_a_finished_task_deletes_a_self_destructing_watchdog(store):
    run, job = watchdog_run(store)
    plan = conclude(store, run, job, checked(0, '{"status":"done","deliveryText":"shipped"}'))
    store.save(plan)
    assert (
        store.ctx.views().execute("SELECT 1 FROM jobs WHERE id = ?", (job["id"],)).fetchone()
        is None
    )
    assert store.run(run.id)["status"] == "ok"


def test_a_finished_task_leaves_a_watchdog_without_self_destruct_in_place(store):
    run, job = watchdog_run(store, watchdog_self_destruct=0)
    store.save(conclude(store, run, job, checked(0, '{"terminal":true}')))
    assert store.job(job["id"])["enabled"] == 1


def test_a_quiet_check_never_retries_fires_children_or_ends_a_recurring_watchdog(store):
    run, job = watchdog_run(store, max_retries=3, delete_after_run=1)
    store.add(
        name="child",
        parent_id=job["id"],
        trigger_on="complete",
        schedule_cron=None,
        origin=None,
    )
    plan = conclude(store, run, job, checked(7))
    store.save(plan)
    assert [type(r).__name__ for r in plan.records] == ["Run"]
    record = store.run(run.id)
    assert (record["status"], record["error_message"]) == (
        "error",
        "Watchdog check command returned unexpected exit code 7",
    )
    assert store.job(job["id"])["consecutive_errors"] == 1


def test_a_watchdog_needs_no_gateway_whatever_its_target(store):
    job = due_job(store, **watchdog(payload_message="true"))
    job["session_target"] = "isolated"
    plan = fire(store, job, gateway_up=False)
    assert [type(e).__name__ for e in plan.effects] == ["StartRun"]


# A real daemon, real check commands


@pytest.fixture
def alerts(scheduler, gateway):
    def sent(count: int = 1):
        return wait_until(
            lambda: gateway.messages_sent() if len(gateway.messages_sent()) >= count else None,
            what=f"{count} watchdog message(s)",
        )

    return sent


def test_a_daemon_alerts_repeatedly_then_disarms_when_the_task_ends(
    scheduler, daemons, alerts, tmp_path
):
    state = tmp_path / "state"
    state.write_text("running")
    check = (
        f'if [ "$(cat {state})" = done ]; then echo \'{{"status":"done","summary":"ok now"}}\'; '
        "else echo still-busy; exit 1; fi"
    )
    job = scheduler.add(
        shell_job(schedule_cron="* * * * * *", **watchdog(watchdog_check_cmd=check)),
    )
    daemons.start()
    sent = alerts(2)
    assert all(m["message"].startswith('🚨 [watchdog] Task "build-42" appears stuck') for m in sent)
    assert {(m["channel"], m["target"]) for m in sent} == {("telegram", "4242")}
    state.write_text("done")
    wait_until(lambda: scheduler.run("jobs", "get", job["id"]).returncode == 1, what="disarm")
    final = [m["message"] for m in alerts(3) if m["message"].startswith("✅")]
    assert final == ['✅ [watchdog] Task "build-42" completed -- watchdog disarmed\n\nok now']
    history = scheduler.ok("--json", "events", "show", job["id"]).json
    assert history[-1]["type"] == "Job.Deleted"


def test_a_daemon_alerts_when_the_time_threshold_passes(scheduler, daemons, alerts):
    started = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    spec = watchdog(
        watchdog_check_cmd="echo working",
        watchdog_started_at=started,
        watchdog_timeout_min=15,
    )
    job = scheduler.add(shell_job(schedule_cron=None, **spec), "--in", "1s")
    daemons.start()
    (message,) = alerts(1)
    assert "- Reason: running for 20min (threshold: 15min)" in message["message"]
    assert "- Output: working" in message["message"]
    (run,) = finished_runs(scheduler, job["id"])
    assert run["summary"] == "Watchdog alert fired: running for 20min (threshold: 15min)"


def test_a_daemon_records_odd_exits_and_transient_failures_without_alerting(
    scheduler, daemons, gateway
):
    odd = scheduler.add(
        shell_job(schedule_cron=None, name="odd", **watchdog(watchdog_check_cmd="exit 5")),
        "--in",
        "1s",
    )
    flaky = scheduler.add(
        shell_job(
            schedule_cron=None,
            name="flaky",
            **watchdog(watchdog_check_cmd="echo 'dns' >&2; exit 2"),
        ),
        "--in",
        "1s",
    )
    daemons.start()
    (odd_run,) = finished_runs(scheduler, odd["id"])
    (flaky_run,) = finished_runs(scheduler, flaky["id"])
    assert (odd_run["status"], odd_run["shell_exit_code"]) == ("error", 5)
    assert odd_run["summary"] == "Watchdog check command returned unexpected exit code 5"
    assert (flaky_run["status"], flaky_run["summary"]) == (
        "ok",
        "Watchdog check failed (transient): dns",
    )
    assert gateway.messages_sent() == []


def test_a_daemon_kills_a_hanging_check_at_its_timeout_and_alerts(scheduler, daemons, alerts):
    spec = watchdog(watchdog_check_cmd="sleep 30", run_timeout_ms=1000)
    job = scheduler.add(shell_job(schedule_cron=None, **spec), "--in", "1s")
    daemons.start()
    (message,) = alerts(1)
    assert "- Reason: check command reported stuck" in message["message"]
    (run,) = finished_runs(scheduler, job["id"])
    assert (run["status"], run["shell_timed_out"]) == ("ok", 1)
    assert run["duration_ms"] < 10000
