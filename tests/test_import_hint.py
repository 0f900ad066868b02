"""When the default store is empty and openclaw-scheduler's database sits beside it,
`jobs list` and `status` say so in one line naming the import command (stderr; `status
--json` adds a `hint` field, `jobs list --json` keeps its bare list)."""

from __future__ import annotations

from .conftest import Scheduler, shell_job

HINT = (
    "This store is empty; openclaw-scheduler's database is at {path}: import it with"
    " `ocsched import openclaw-scheduler`\n"
)


def _anchor_database(scheduler: Scheduler):
    scheduler.home.mkdir(parents=True, exist_ok=True)
    path = scheduler.home / "scheduler.db"
    path.write_bytes(b"")
    return path


def test_no_hint_without_an_anchor_database(scheduler: Scheduler):
    listed = scheduler.ok("jobs", "list")
    assert (listed.stdout, listed.stderr) == ("No jobs\n", "")
    assert "hint" not in scheduler.ok("--json", "status").json


def test_jobs_list_and_status_name_the_import_command(scheduler: Scheduler):
    hint = HINT.format(path=_anchor_database(scheduler))
    listed = scheduler.ok("jobs", "list")
    assert (listed.stdout, listed.stderr) == ("No jobs\n", hint)
    as_json = scheduler.ok("--json", "jobs", "list")
    assert (as_json.json, as_json.stderr) == ([], hint)
    assert scheduler.ok("status").stderr == hint
    status = scheduler.ok("--json", "status")
    assert (status.json["hint"], status.stderr) == (hint.strip(), "")


def test_no_hint_once_the_store_holds_anything(scheduler: Scheduler):
    _anchor_database(scheduler)
    job = scheduler.add(shell_job())
    scheduler.ok("jobs", "delete", job["id"])
    assert scheduler.ok("jobs", "list").stderr == ""
    assert "hint" not in scheduler.ok("--json", "status").json


def test_no_hint_for_a_store_named_by_scheduler_db(scheduler: Scheduler, tmp_path):
    _anchor_database(scheduler)
    elsewhere = {"SCHEDULER_DB": str(tmp_path / "elsewhere.db")}
    assert scheduler.ok("jobs", "list", env=elsewhere).stderr == ""
