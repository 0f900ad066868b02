"""`capabilities` (spec §29.3) and `idem` (§5.6), through the real CLI; the ledger view
over runs (`domain/idempotency.py`); the key an at-least-once prompt carries."""

from __future__ import annotations

from ocsched.domain.idempotency import ledger_row, result_hash

from .conftest import shell_job
from .test_daemon import finished_runs


def test_capabilities_reports_the_anchors_features_as_json(scheduler):
    for args in (("capabilities",), ("--json", "capabilities")):
        report = scheduler.ok(*args).json
        assert report["schema_version"] == 23 and report["handoff_version"] == "2"
        assert report["features"]["trust_evaluation"] is True
        assert report["features"]["delegation_validation"] is False
        assert len(report["features"]) == 16
    assert scheduler.run("capabilities", "extra").returncode == 1


# The ledger view

SHELL = {"session_target": "shell", "delete_after_run": 0}
AGENT = {"session_target": "isolated", "delete_after_run": 1}


def run_row(**fields) -> dict:
    row = {
        "id": "r1",
        "job_id": "j1",
        "status": "ok",
        "idempotency_key": "clock/j1/2026-12-05 03:00:00",
        "dispatched_at": "2026-12-05 03:00:00",
        "finished_at": "2026-12-05 03:00:09",
        "process_id": 42,
        "session_key": None,
        "summary": "done",
        "key_released_at": None,
    }
    row.update(fields)
    return row


def test_a_shell_run_keeps_its_key_claimed_for_seven_days_whatever_its_status():
    row = ledger_row(run_row(status="error"), SHELL)
    assert row == {
        "key": "clock/j1/2026-12-05 03:00:00",
        "job_id": "j1",
        "run_id": "r1",
        "status": "claimed",
        "claimed_at": "2026-12-05 03:00:00",
        "released_at": None,
        "result_hash": None,
        "expires_at": "2026-12-12 03:00:00",
    }


def test_an_agent_success_keeps_the_key_with_its_result_hash_and_a_failure_releases_it():
    ok = ledger_row(run_row(process_id=None, session_key="agent:main:x"), AGENT)
    assert ok is not None
    assert (ok["status"], ok["result_hash"], ok["expires_at"]) == (
        "claimed",
        result_hash("done"),
        "2026-12-06 03:00:00",
    )
    assert ok["result_hash"] is not None and len(ok["result_hash"]) == 16
    failed = ledger_row(run_row(status="timeout", session_key="agent:main:x"), AGENT)
    assert failed is not None
    assert (failed["status"], failed["released_at"]) == ("released", "2026-12-05 03:00:09")


def test_crashes_refusals_and_releases_free_the_key_and_skips_never_held_one():
    for released in (
        run_row(status="crashed"),
        run_row(status="error", process_id=None),
        run_row(key_released_at="2026-12-05 04:00:00"),
    ):
        row = ledger_row(released, SHELL)
        assert row is not None and row["status"] == "released"
    assert ledger_row(run_row(status="skipped"), SHELL) is None


# Through the CLI, against what a daemon ran


def test_idem_finds_release_and_prune_the_keys_of_a_jobs_runs(scheduler, daemons):
    job = scheduler.add(shell_job(schedule_cron=None, delete_after_run=0), "--in", "1s")
    assert scheduler.ok("idem", "status", job["id"]).stdout == (
        "No idempotency entries for this job\n"
    )
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    key = run["idempotency_key"]
    assert key == f"clock/{job['id']}/{run['slot']}"
    (entry,) = scheduler.ok("--json", "idem", "status", job["id"][:8]).json
    assert (entry["key"], entry["run_id"], entry["status"]) == (key, run["id"], "claimed")
    assert scheduler.ok("idem", "check", key).json == entry
    assert scheduler.ok("--json", "idem", "check", "nope").json == {"found": False, "key": "nope"}
    assert scheduler.ok("idem", "check", "nope").stdout == "Key not found in ledger\n"
    released = scheduler.ok("--json", "idem", "release", key).json
    assert released == {"ok": True, "key": key, "released": True}
    assert scheduler.ok("idem", "release", key).stdout == "Key already released\n"
    assert scheduler.ok("idem", "check", key).json["status"] == "released"
    history = scheduler.ok("--json", "events", "show", run["id"]).json
    assert history[-1]["type"] == "Run.KeyReleased" and history[-1]["actor"] == "tester"
    missing = scheduler.run("--json", "idem", "release", "nope")
    assert (missing.returncode, missing.json["error"]) == (1, "Key not found in ledger")
    assert scheduler.ok("--json", "idem", "prune").json == {"ok": True, "pruned": 0}
    table = scheduler.ok("idem", "status", job["id"], env={"COLUMNS": "200"}).stdout
    assert f"{key[:12]}..  {run['id'][:8]}..  released" in table
