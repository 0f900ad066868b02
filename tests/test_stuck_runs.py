"""`ocsched runs stuck` (spec §25.3): running runs silent past the threshold, those of a
done dispatch skipped, the rest reported with exit status 1."""

from __future__ import annotations

import json
import time

from .conftest import shell_job, wait_until
from .test_daemon import runs_of


def sleeper(name: str) -> dict:
    return shell_job(name=name, payload_message="sleep 30", run_timeout_ms=120000)


def test_nothing_running_is_no_stale_runs(scheduler):
    scheduler.add(shell_job())
    result = scheduler.run("runs", "stuck")
    assert (result.returncode, result.stdout) == (0, "No stale runs older than 45 minute(s).\n")
    assert scheduler.ok("--json", "runs", "stuck").json == {
        "threshold_min": 45,
        "skipped": [],
        "stuck": [],
    }


def test_silent_runs_are_reported_and_a_done_dispatchs_run_skipped(scheduler, daemons, tmp_path):
    ledger = tmp_path / "labels.json"
    ledger.write_text(json.dumps({"fix-bug": {"sessionKey": "agent:main:x", "status": "done"}}))
    scheduler.ok("dispatch", "import-labels", str(ledger))
    first = scheduler.add(sleeper("first sleeper"), "--in", "1s")
    daemons.start("--grace", "0")
    wait_until(lambda: runs_of(scheduler, first["id"]), what="the first run to start")
    watcher = scheduler.add(sleeper("watch-deliver:fix-bug"), "--in", "1s")
    second = scheduler.add(sleeper("second sleeper"), "--in", "1s")
    for job in (watcher, second):
        wait_until(lambda job=job: runs_of(scheduler, job["id"]), what="the later runs to start")
    time.sleep(1.3)  # all three silent for more than 0.02 min

    assert scheduler.run("runs", "stuck").returncode == 0  # not for 45 minutes
    result = scheduler.run("runs", "stuck", "--threshold-min", "0.02")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        'Skipped: job="watch-deliver:fix-bug" label="fix-bug"'
        " -- ledger status=done (read models behind)"
    )
    assert lines[1] == "Detected 2 stale run(s) older than 0.02 minute(s):"
    (run,) = runs_of(scheduler, first["id"])
    assert lines[2].startswith(f'- run={run["id"]} job="first sleeper" job_id={first["id"]} ')
    assert f" started={run['started_at']} last_heartbeat={run['last_heartbeat']}" in lines[2]
    assert lines[2].endswith("timeout_ms=120000")
    assert 'job="second sleeper"' in lines[3]  # stalest first

    limited = scheduler.run("--json", "runs", "stuck", "--threshold-min", "0.02", "--limit", "1")
    assert limited.returncode == 1
    (only,) = json.loads(limited.stdout)["stuck"]
    assert (only["job_name"], only["label"]) == ("first sleeper", None)


def test_bad_thresholds_and_limits_are_one_line(scheduler):
    for flag, value in (("--threshold-min", "0"), ("--threshold-min", "nan"), ("--limit", "0")):
        result = scheduler.run("--json", "runs", "stuck", flag, value)
        assert result.returncode == 1 and result.json["error"].startswith(f"{flag} must be")
