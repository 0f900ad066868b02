"""The runs commands' plain and --json shapes, and their errors."""

from __future__ import annotations

from .conftest import shell_job, wait_until


def test_runs_commands_on_a_store_without_runs(scheduler):
    job = scheduler.add(shell_job())
    assert scheduler.ok("runs", "list", job["id"]).stdout == "No runs\n"
    assert scheduler.ok("--json", "runs", "list", job["id"]).json == []
    assert scheduler.ok("runs", "running").stdout == "No running runs\n"
    assert scheduler.ok("--json", "runs", "running").json == []
    assert scheduler.ok("runs", "stale").stdout == "No stale runs\n"
    assert scheduler.ok("--json", "runs", "stale", "30").json == []


def test_runs_get_and_output_of_an_unknown_run_fail(scheduler):
    scheduler.add(shell_job())
    for args in (("runs", "get", "nope"), ("runs", "output", "nope")):
        result = scheduler.run(*args)
        assert (result.returncode, result.stderr.strip()) == (1, "Run not found: nope")
        assert scheduler.run("--json", *args).json == {"ok": False, "error": "Run not found: nope"}


def test_runs_usage_errors(scheduler):
    result = scheduler.run("runs", "list")
    assert (result.returncode, result.stderr.strip()) == (1, "Usage: runs list <job-id> [limit]")
    bad_kind = scheduler.run("runs", "output", "x", "stdin")
    assert bad_kind.stderr.strip() == "Usage: runs output <run-id> [stdout|stderr]"
    bad_limit = scheduler.run("runs", "list", "x", "many")
    assert bad_limit.returncode == 1 and "many" in bad_limit.stderr


def test_runs_list_and_running_tables(scheduler, daemons, tmp_path):
    marker = tmp_path / "started"
    job = scheduler.add(shell_job(payload_message=f"touch {marker}; sleep 5"), "--in", "1s")
    daemons.start()
    wait_until(marker.exists, what="the run to start")
    wait_until(lambda: scheduler.ok("--json", "runs", "running").json, what="running run")
    running = scheduler.ok("--json", "runs", "running").json
    assert running[0]["job_name"] == "backup" and running[0]["job_timeout_ms"] == 60000
    table = scheduler.ok("runs", "running").stdout.splitlines()
    assert table[0].split() == ["ID", "JOB", "STATUS", "STARTED", "(UTC)"]
    assert "running" in table[2]
    status = scheduler.ok("--json", "status").json
    assert status["running_runs"] == 1 and status["stale_runs"] == 0
    listed = scheduler.ok("runs", "list", job["id"]).stdout.splitlines()
    assert listed[0].split()[:2] == ["ID", "STATUS"]
    assert running[0]["id"][:8] in listed[2]
    # 80 columns (the fixture's COLUMNS) with the time of day of the start
    assert all(len(line) <= 80 for line in listed), listed
    assert running[0]["started_at"][11:19] in listed[2]


def test_a_run_left_running_past_its_timeout_is_stale(scheduler, daemons, tmp_path):
    marker = tmp_path / "started"
    spec = shell_job(payload_message=f"touch {marker}; sleep 30", run_timeout_ms=1000)
    job = scheduler.add(spec, "--in", "1s")
    daemon = daemons.start()
    wait_until(marker.exists, what="the run to start")
    # the shell can begin before the daemon's writer has recorded `Run.Started`
    wait_until(lambda: scheduler.ok("--json", "runs", "running").json, what="the run recorded")
    daemon.stop(9)  # nobody left to time the run out: its record stays "running"
    stale = wait_until(lambda: scheduler.ok("--json", "runs", "stale").json, timeout=5)
    assert [r["job_id"] for r in stale] == [job["id"]]
    assert scheduler.ok("runs", "stale").stdout.splitlines()[0].split() == [
        "ID",
        "JOB",
        "STATUS",
        "STARTED",
        "(UTC)",
    ]


def test_schema_describes_runs_approvals_and_dispatches(scheduler):
    runs = scheduler.ok("schema", "runs").json
    assert "crashed" in runs["statuses"] and "shell_exit_code" in runs["key_fields"]
    dispatches = scheduler.ok("schema", "dispatch").json
    assert dispatches["kinds"] == ["manual", "chain", "retry", "replay"]
    assert list(scheduler.ok("schema").json) == [
        "jobs",
        "runs",
        "approvals",
        "dispatches",
        "messages",
    ]
