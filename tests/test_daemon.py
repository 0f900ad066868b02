"""The daemon as a real process: timers become runs, runs become records."""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from .conftest import shell_job, wait_until


def runs_of(scheduler, job_id: str) -> list[dict]:
    return scheduler.ok("--json", "runs", "list", job_id, "100").json


def finished_runs(scheduler, job_id: str, count: int = 1, timeout: float = 15) -> list[dict]:
    def enough():
        runs = [r for r in runs_of(scheduler, job_id) if r["finished_at"]]
        return runs if len(runs) >= count else None

    return wait_until(enough, timeout, what=f"{count} finished run(s) of {job_id}")


def every_second(**fields) -> dict:
    return shell_job(schedule_cron="* * * * * *", **fields)


def test_a_cron_job_runs_and_records_its_output(scheduler, daemons):
    job = scheduler.add(every_second(payload_message="echo hello; echo oops >&2"))
    daemons.start()
    (run, *_) = finished_runs(scheduler, job["id"])
    assert run["status"] == "ok"
    assert run["shell_exit_code"] == 0
    assert run["shell_stdout"] == "hello"
    assert run["shell_stderr"] == "oops"
    assert run["summary"] == "stdout:\nhello\n\nstderr:\noops"
    assert run["trigger"] == "clock"
    assert scheduler.ok("runs", "output", run["id"]).stdout == "hello\n"
    err = scheduler.ok("--json", "runs", "output", run["id"], "stderr").json
    assert err == {
        "run_id": run["id"],
        "kind": "stderr",
        "file_path": None,
        "content": "oops",
    }
    assert scheduler.ok("runs", "get", run["id"]).json["job_id"] == job["id"]
    after = scheduler.ok("jobs", "get", job["id"]).json
    assert after["last_status"] == "ok"
    assert after["next_run_at"] > run["slot"]


def test_a_one_shot_job_runs_once_and_deletes_itself(scheduler, daemons):
    job = scheduler.add(shell_job(schedule_cron=None, payload_message="echo once"), "--in", "1s")
    daemons.start()
    wait_until(lambda: scheduler.run("jobs", "get", job["id"]).returncode == 1, what="deletion")
    history = scheduler.ok("--json", "events", "show", job["id"]).json
    assert [e["type"] for e in history] == ["Job.Created", "Job.Deleted"]
    assert history[1]["actor"] == "reactor"


def test_an_at_job_without_delete_after_run_is_disabled_after_running(scheduler, daemons):
    spec = shell_job(schedule_cron=None, schedule_kind="at", schedule_at="2020-01-01 00:00:00")
    job = scheduler.add(spec)
    daemons.start()
    wait_until(lambda: scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0)
    assert len(runs_of(scheduler, job["id"])) == 1


def test_a_failing_command_is_an_error_with_backoff(scheduler, daemons):
    job = scheduler.add(every_second(payload_message="exit 3"))
    daemons.start()
    finished = finished_runs(scheduler, job["id"])
    # On a loaded machine the next second's slot may come while the run still runs: that
    # one is skipped (overlap); no second run may start before the backoff is over.
    (run,) = [r for r in finished if r["status"] != "skipped"]
    assert (run["status"], run["shell_exit_code"]) == ("error", 3)
    assert run["error_message"] == "Shell exited with code 3"
    state = scheduler.ok("jobs", "get", job["id"]).json
    assert state["consecutive_errors"] == 1
    assert state["next_run_at"] >= _ts_in(29)


def test_a_failed_run_is_retried_with_lineage(scheduler, daemons):
    scheduler.env["OCSCHED_RETRY_BASE_S"] = "1"
    job = scheduler.add(shell_job(payload_message="exit 1", max_retries=2), "--in", "1s")
    daemons.start()
    wait_until(lambda: scheduler.run("jobs", "get", job["id"]).returncode == 1, timeout=20)
    by_retry_of = {r["retry_of"]: r for r in runs_of(scheduler, job["id"])}
    runs = [by_retry_of[None]]
    while runs[-1]["id"] in by_retry_of:
        runs.append(by_retry_of[runs[-1]["id"]])
    assert [r["trigger"] for r in runs] == ["clock", "retry", "retry"]
    # A run that scheduled retry n shows n (spec §14.1); the last keeps the count it ran with.
    assert [r["retry_count"] for r in runs] == [1, 2, 2]
    assert all(r["status"] == "error" for r in runs)


def test_a_timed_out_run_kills_its_whole_process_group(scheduler, daemons, tmp_path):
    marker = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {marker}; wait"
    job = scheduler.add(shell_job(payload_message=command, run_timeout_ms=500), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "timeout"
    assert run["shell_timed_out"] == 1
    assert run["error_message"] == "Shell command timed out after 500ms"
    assert not _alive(int(marker.read_text()))


def test_children_run_after_their_parent_by_trigger(scheduler, daemons):
    parent = scheduler.add(shell_job(payload_message="echo deploy ok"), "--in", "1s")
    child = {"schedule_cron": None, "origin": None, "payload_message": "echo child"}
    on_success = scheduler.add(
        shell_job(name="notify", parent_id=parent["id"], trigger_on="success", **child)
    )
    on_failure = scheduler.add(
        shell_job(name="page", parent_id=parent["id"], trigger_on="failure", **child)
    )
    matching = scheduler.add(
        shell_job(
            name="audit",
            parent_id=parent["id"],
            trigger_on="complete",
            trigger_condition="contains:deploy ok",
            **child,
        )
    )
    daemons.start()
    (first,) = finished_runs(scheduler, on_success["id"])
    (audit,) = finished_runs(scheduler, matching["id"])
    assert first["trigger"] == "chain" and audit["status"] == "ok"
    assert first["triggered_by_run"] == audit["triggered_by_run"]
    assert runs_of(scheduler, on_failure["id"]) == []


def test_jobs_run_runs_a_disabled_job_once(scheduler, daemons):
    job = scheduler.add(shell_job(payload_message="echo manual"))
    scheduler.ok("jobs", "disable", job["id"])
    daemons.start()
    result = scheduler.ok("--json", "jobs", "run", job["id"]).json
    assert result["dispatch_kind"] == "manual" and result["name"] == "backup"
    (run,) = finished_runs(scheduler, job["id"])
    assert (run["trigger"], run["status"], run["dispatch_queue_id"]) == (
        "manual",
        "ok",
        result["dispatch_id"],
    )
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0


def test_jobs_run_of_a_deleted_job_fails_and_records_nothing(scheduler):
    job = scheduler.add(shell_job())
    scheduler.ok("jobs", "delete", job["id"])
    before = scheduler.event_count()
    result = scheduler.run("jobs", "run", job["id"])
    assert (result.returncode, result.stderr.strip()) == (1, f"Job not found: {job['id']}")
    assert scheduler.event_count() == before


def test_overlap_skip_records_the_skipped_fires(scheduler, daemons):
    job = scheduler.add(every_second(payload_message="sleep 2.5"))
    daemons.start()
    skipped = wait_until(
        lambda: [r for r in runs_of(scheduler, job["id"]) if r["status"] == "skipped"],
        what="a skipped fire",
    )
    assert skipped[0]["summary"].startswith("Skipped: previous run still running: ")


def test_cancel_stops_a_running_run_and_disables_the_job(scheduler, daemons, tmp_path):
    marker = tmp_path / "pid"
    job = scheduler.add(shell_job(payload_message=f"echo $$ > {marker}; sleep 30"), "--in", "1s")
    daemons.start()
    wait_until(marker.exists, what="the run to start")
    pid = int(marker.read_text())
    result = scheduler.ok("--json", "jobs", "cancel", job["id"]).json
    assert result == {"ok": True, "cancelled": [job["id"]]}
    wait_until(lambda: not _alive(pid), what="the process to die")
    (run,) = runs_of(scheduler, job["id"])
    assert run["status"] == "cancelled"
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0


def test_a_missing_shell_fails_the_run_clearly(scheduler, daemons):
    scheduler.env["SCHEDULER_SHELL"] = "/nonexistent/shell"
    job = scheduler.add(shell_job(), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "error"
    assert "/nonexistent/shell" in run["error_message"]


def test_large_output_is_offloaded_and_read_back(scheduler, daemons):
    spec = shell_job(
        payload_message="head -c 3000 /dev/zero | tr '\\0' x",
        output_offload_threshold_bytes=1024,
    )
    job = scheduler.add(spec, "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    assert run["shell_stdout_path"].endswith(f"runs/{run['id']}/stdout.txt")
    assert run["shell_stdout_bytes"] == 3000
    output = scheduler.ok("--json", "runs", "output", run["id"]).json
    assert output["content"] == "x" * 3000


def test_events_show_explains_why_a_run_exists(scheduler, daemons):
    job = scheduler.add(shell_job(), "--in", "1s")
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    history = scheduler.ok("--json", "events", "show", run["id"]).json
    assert [e["type"] for e in history] == ["Run.Scheduled", "Run.Started", "Run.Finished"]
    assert history[0]["cause"] == f"clock/{job['id']}/{run['slot']}"
    assert history[0]["fields"]["trigger"] == "clock"


def test_kill_9_leaves_no_orphan_and_at_least_once_replays(scheduler, daemons, tmp_path):
    marker = tmp_path / "pid"
    command = f"echo $$ >> {marker}; sleep 30"
    spec = shell_job(payload_message=command, delivery_guarantee="at-least-once")
    job = scheduler.add(spec, "--in", "1s")
    first = daemons.start()
    wait_until(marker.exists, what="the run to start")
    pid = int(marker.read_text().split()[0])
    first.stop(signal.SIGKILL)
    wait_until(lambda: not _alive(pid), timeout=5, what="the orphan to die with the daemon")
    daemons.start()
    runs = wait_until(
        lambda: len(runs_of(scheduler, job["id"])) == 2 and runs_of(scheduler, job["id"])
    )
    crashed = next(r for r in runs if r["status"] == "crashed")
    replay = next(r for r in runs if r["trigger"] == "replay")
    assert replay["replay_of"] == crashed["id"] == replay["retry_of"]


def test_kill_9_under_at_most_once_records_the_crash_without_replay(scheduler, daemons, tmp_path):
    marker = tmp_path / "pid"
    job = scheduler.add(shell_job(payload_message=f"echo $$ > {marker}; sleep 30"), "--in", "1s")
    first = daemons.start()
    wait_until(marker.exists, what="the run to start")
    first.stop(signal.SIGKILL)
    daemons.start()
    wait_until(lambda: runs_of(scheduler, job["id"])[0]["status"] == "crashed")
    time.sleep(0.5)
    assert len(runs_of(scheduler, job["id"])) == 1
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0


def test_recovery_kills_what_a_crashed_run_left_in_other_groups_before_recording(
    scheduler, daemons, tmp_path
):
    marker = tmp_path / "pid"
    command = f"setsid sleep 60 & echo $! > {marker}.new; mv {marker}.new {marker}; wait"
    job = scheduler.add(shell_job(payload_message=command), "--in", "1s")
    first = daemons.start()
    wait_until(marker.exists, what="the run to start")
    escaped = int(marker.read_text())
    first.stop(signal.SIGKILL)
    time.sleep(0.3)
    assert _alive(escaped)  # a session of its own: the watchdog's group kill missed it
    daemons.start()
    wait_until(lambda: runs_of(scheduler, job["id"])[0]["status"] == "crashed")
    assert not _alive(escaped)  # found by the run id in its environment, killed first


def test_sigterm_waits_for_running_runs_then_stops(scheduler, daemons):
    job = scheduler.add(shell_job(payload_message="sleep 1; echo done"), "--in", "1s")
    daemon = daemons.start("--grace", "10")
    wait_until(lambda: runs_of(scheduler, job["id"]), what="the run to start")
    assert daemon.stop() == 0
    (run,) = runs_of(scheduler, job["id"])
    assert (run["status"], run["shell_stdout"]) == ("ok", "done")


def test_two_daemons_fire_each_slot_once(scheduler, daemons):
    job = scheduler.add(every_second(payload_message="true"))
    daemons.start()
    daemons.start()
    time.sleep(3.5)
    runs = runs_of(scheduler, job["id"])
    slots = [r["slot"] for r in runs]
    assert len(slots) >= 2
    assert len(slots) == len(set(slots))
    with sqlite3.connect(scheduler.db_path) as connection:
        owners = {row[0] for row in connection.execute("SELECT owner FROM runs")}
    assert owners  # recorded which daemon ran each slot


@pytest.mark.timing
def test_a_job_added_while_the_daemon_runs_fires_on_time(scheduler, daemons):
    daemons.start()
    job = scheduler.add(shell_job(payload_message="echo late"), "--in", "1s")
    (run,) = finished_runs(scheduler, job["id"])
    assert run["status"] == "ok"
    lag = _epoch(run["started_at"]) - _epoch(job["schedule_at"])
    assert lag < 1.5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def _ts_in(seconds: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(ts: str) -> float:
    from datetime import UTC, datetime

    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def test_the_overlap_queue_runs_held_fires_one_after_another(scheduler, daemons):
    job = scheduler.add(every_second(payload_message="sleep 1.2", overlap_policy="queue"))
    daemons.start()
    queued = wait_until(
        lambda: [r for r in runs_of(scheduler, job["id"]) if r["queued_behind"]],
        what="a queued fire",
    )
    assert scheduler.ok("jobs", "get", job["id"]).json["queued_count"] >= 1
    held = queued[0]["id"]
    wait_until(
        lambda: scheduler.ok("runs", "get", held).json["status"] == "ok",
        what="the queued run to run",
    )
    runs = [r for r in runs_of(scheduler, job["id"]) if r["status"] in ("ok", "running")]
    assert all(r["status"] != "skipped" for r in runs)


def test_jobs_due_at_once_in_a_busy_pool_run_one_after_the_other(scheduler, daemons, tmp_path):
    # Issue 11: a run blocked by its resource pool waits (queued) and starts when the
    # pool frees; none is skipped, none runs beside another of the pool.
    log = tmp_path / "pool.log"
    due = "2020-01-01 00:00:00"
    jobs = [
        scheduler.add(
            shell_job(
                name=name,
                schedule_cron=None,
                schedule_kind="at",
                schedule_at=due,
                resource_pool="gpu",
                payload_message=f"echo {name} $(date +%s.%N) >> {log}; sleep 0.5;"
                f" echo {name} $(date +%s.%N) >> {log}",
            )
        )
        for name in ("a", "b")
    ]
    daemons.start()
    runs = [finished_runs(scheduler, job["id"])[0] for job in jobs]
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert all(len(runs_of(scheduler, job["id"])) == 1 for job in jobs)  # none skipped
    first, second = sorted(runs, key=lambda r: r["queued_behind"] or "")
    assert second["queued_behind"] == first["id"]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [name for name, _ in lines] in (list("aabb"), list("bbaa"))
    assert float(lines[2][1]) >= float(lines[1][1])  # the second began after the first ended
    for job in jobs:
        assert scheduler.ok("jobs", "get", job["id"]).json["queued_count"] == 0


def test_the_prune_pass_deletes_children_whose_parent_is_gone(scheduler, daemons):
    parent = scheduler.add(shell_job(name="parent"))
    child = scheduler.add(
        shell_job(name="child", parent_id=parent["id"], trigger_on="success", schedule_cron=None)
    )
    scheduler.ok("jobs", "delete", parent["id"])
    daemons.start()
    wait_until(lambda: scheduler.run("jobs", "get", child["id"]).returncode == 1, what="prune")
    deleted = scheduler.ok("--json", "events", "show", child["id"]).json[-1]
    assert (deleted["type"], deleted["actor"]) == ("Job.Deleted", "reactor")
    assert deleted["cause"] == f"prune/orphan/{child['id']}"


def test_a_surviving_daemon_recovers_the_runs_of_a_killed_one(scheduler, daemons, tmp_path):
    scheduler.env["SCHEDULER_HEARTBEAT_CHECK_MS"] = "5000"
    marker = tmp_path / "pid"
    job = scheduler.add(shell_job(payload_message=f"echo $$ > {marker}; sleep 30"), "--in", "1s")
    first = daemons.start()
    wait_until(marker.exists, what="the run to start")
    daemons.start()
    first.stop(signal.SIGKILL)
    run = wait_until(
        lambda: (r := runs_of(scheduler, job["id"])[0])["status"] == "crashed" and r,
        timeout=15,
        what="the survivor's sweep",
    )
    assert run["error_message"].startswith("The scheduler stopped")


@pytest.mark.parametrize("direct", [True, False], ids=["posix_spawn", "asyncio"])
def test_a_runs_shell_starts_as_popen_would_start_it(direct, monkeypatch):
    """SIGPIPE at its default (Python ignores it; `yes | head` must not report an error),
    no descriptor of the daemon's but the three streams, a session of its own: with
    glibc's posix_spawn (Linux) and with asyncio's subprocesses (elsewhere)."""
    import asyncio

    from ocsched.adapters import shell
    from ocsched.adapters.shell import run_shell

    if direct and not shell.can_spawn_directly():
        pytest.skip("no glibc posix_spawn with pidfds here")
    monkeypatch.setattr(shell, "_direct", direct and shell.can_spawn_directly())
    # Descriptors above 2, looked for with builtins only (a pipeline's pipe would show).
    opened = 'for n in {3..255}; do [ -e /proc/$$/fd/$n ] && printf "%s " $n; done; echo'
    script = f'yes | head -1; echo "${{PIPESTATUS[0]}}"; {opened}; ps -o sid= $$'
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)  # as a descriptor the daemon's parent left it
    try:
        result = asyncio.run(run_shell(script, timeout_ms=10_000, shell="/bin/bash"))
    finally:
        os.close(inherited)
    lines = result.stdout.decode().splitlines()
    assert lines[:2] == ["y", "141"]
    assert lines[2].split() == []
    assert result.stderr == b""
    assert result.returncode == 0
    assert int(lines[3]) != os.getsid(0)
