"""`ocsched migrate` (spec §28.1): OpenClaw's cron jobs.json as jobs, the anchor's mapping,
its re-import and missing-file behaviour, and the same jobs as openclaw-scheduler's own
`migrate` makes (when it is installed: `ocsched.testing.anchor`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocsched.testing.anchor import locate

from .conftest import Scheduler

JOBS = {
    "jobs": [
        {
            "id": "news",
            "name": "daily news",
            "enabled": True,
            "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Berlin"},
            "payload": {"kind": "agentTurn", "message": "news", "model": "opus"},
            "delivery": {"mode": "announce", "channel": "telegram", "to": "42"},
            "origin": "telegram:42",
        },
        {
            "id": "ninety",
            "name": "every 90 min",
            "enabled": False,
            "schedule": {"kind": "every", "everyMs": 5400000},
            "payload": {"kind": "agentTurn", "message": "x", "timeoutSeconds": 30},
            "delivery": {"mode": "announce"},
        },
        {
            "id": "ping",
            "name": "every 30s",
            "schedule": {"kind": "every", "everyMs": 30000},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "ping"},
            "delivery": {"mode": "none"},
        },
        {
            "id": "days",
            "name": "every 3 days",
            "schedule": {"kind": "every", "everyMs": 259200000},
            "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "long"},
            "delivery": {"mode": "none"},
        },
        {
            "id": "once",
            "name": "once ünïcode",
            "schedule": {"kind": "at", "at": "2027-01-02T03:04:05Z"},
            "payload": {"kind": "agentTurn", "message": "once"},
            "delivery": {"mode": "announce", "to": "42"},
        },
        {"id": "weird", "name": "weird", "schedule": {"kind": "weekly"}, "payload": {}},
        {
            "id": "empty",
            "name": "empty",
            "schedule": {"kind": "cron", "expr": "0 1 * * *"},
            "payload": {"kind": "agentTurn"},
            "delivery": {"mode": "announce", "to": "42"},
        },
    ]
}
OUT = """Found 7 job(s) in {path}
  OK: daily news -> cron="0 9 * * *" tz=Europe/Berlin
  OK: every 90 min -> cron="0 */2 * * *" tz=UTC
  OK: every 30s -> cron="*/1 * * * *" tz=UTC
  OK: every 3 days -> cron="0 */23 * * *" tz=UTC
  OK: once ünïcode -> cron="4 3 2 1 *" tz=UTC

Done: 5 imported, 0 skipped
"""
ERR = """  WARN: 5400000ms interval (90min) cannot be represented exactly in standard cron; \
approximating to every 2 hour(s)
  WARN: every 90 min: delivery_mode='announce' but no delivery_to configured; downgrading to 'none'
  WARN: 30000ms interval rounded up to 1 minute (cron minimum)
  WARN: 259200000ms interval exceeds 23 hours; clamping to */23 hours
  ERR: weird: Unknown schedule kind: weekly
  ERR: empty: payload_message cannot be empty
"""


@pytest.fixture
def jobs_json(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(JOBS, ensure_ascii=False))
    return path


def test_each_job_is_mapped_as_the_anchor_maps_it(scheduler: Scheduler, jobs_json: Path):
    done = scheduler.ok("migrate", str(jobs_json))
    assert done.stdout == OUT.format(path=jobs_json)
    assert done.stderr == ERR
    news = scheduler.ok("--json", "jobs", "get", "news").json
    assert (news["schedule_tz"], news["payload_model"], news["origin"]) == (
        "Europe/Berlin",
        "opus",
        "telegram:42",
    )
    ninety = scheduler.ok("--json", "jobs", "get", "ninety").json
    assert ninety["enabled"] == 0 and ninety["delivery_mode"] == "none"
    assert ninety["delivery_opt_out_reason"] == "migrated: no delivery target configured"
    assert (ninety["payload_timeout_seconds"], ninety["run_timeout_ms"]) == (30, 300000)
    once = scheduler.ok("--json", "jobs", "get", "once").json
    assert (once["delete_after_run"], once["origin"], once["overlap_policy"]) == (
        1,
        "system",
        "skip",
    )
    assert scheduler.run("jobs", "get", "weird").returncode == 1


def test_a_second_migrate_skips_what_is_there(scheduler: Scheduler, jobs_json: Path):
    scheduler.ok("migrate", str(jobs_json))
    events = scheduler.event_count()
    again = scheduler.ok("--json", "migrate", str(jobs_json)).json
    assert (again["imported"], again["skipped"]) == (0, 5)
    assert scheduler.event_count() == events
    text = scheduler.ok("migrate", str(jobs_json)).stdout
    assert "  SKIP: daily news (already exists)\n" in text
    assert text.endswith("\nDone: 0 imported, 5 skipped\n")


def test_the_file_is_found_as_the_anchor_finds_it(scheduler: Scheduler, jobs_json: Path):
    home = scheduler.home.parent / "user"
    missing = scheduler.run("migrate", env={"HOME": str(home)})
    assert missing.returncode == 1
    assert missing.stderr == f"No jobs.json found at: {home}/.openclaw/cron/jobs.json\n"
    refused = scheduler.run("--json", "migrate", env={"OPENCLAW_JOBS_JSON": "/nowhere.json"})
    assert refused.json == {"ok": False, "error": "No jobs.json found at: /nowhere.json"}
    found = scheduler.ok("--json", "migrate", env={"OPENCLAW_JOBS_JSON": str(jobs_json)})
    assert found.json["imported"] == 5


def test_a_file_that_is_not_json_is_a_parse_error(scheduler: Scheduler, tmp_path: Path):
    bad = tmp_path / "jobs.json"
    bad.write_text("{bad")
    refused = scheduler.run("migrate", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"Failed to parse {bad}: ")
    assert scheduler.event_count() == 0


def test_the_jobs_are_those_openclaw_scheduler_makes(scheduler: Scheduler, jobs_json: Path):
    anchor = locate()
    if isinstance(anchor, str):
        pytest.skip(anchor)
    database = jobs_json.parent / "scheduler.db"
    theirs: dict = {}
    for _attempt in range(3):  # its native module now and then dies as it exits
        anchor.cli(database, "migrate", check=False, OPENCLAW_JOBS_JSON=str(jobs_json))
        theirs = {job["id"]: job for job in anchor.json(database, "jobs", "list")}
        if len(theirs) == 5:
            break
    scheduler.ok("migrate", str(jobs_json))
    ours = {job["id"]: job for job in scheduler.ok("--json", "jobs", "list").json}
    assert set(ours) == set(theirs)
    ignored = {"created_at", "updated_at", "next_run_at"}  # when each ran
    for job_id, job in theirs.items():
        differences = {
            key: (value, ours[job_id].get(key))
            for key, value in job.items()
            if key not in ignored and ours[job_id].get(key) != value
        }
        assert differences == {}, job_id


def test_entries_that_are_not_jobs_are_errors_and_the_rest_go_on(scheduler, tmp_path):
    odd = tmp_path / "jobs.json"
    good = {"id": "fine", "name": "fine", "schedule": {"kind": "cron", "expr": "0 1 * * *"}}
    good.update(sessionTarget="main", payload={"kind": "systemEvent", "text": "x"})
    entries = [1, None, {"id": {"a": 1}, "name": ["x"], "schedule": {"kind": "at", "at": 1e20}}]
    odd.write_text(json.dumps({"jobs": [*entries, good]}))
    done = scheduler.ok("migrate", str(odd))
    assert done.stdout.endswith("Done: 1 imported, 0 skipped\n")
    assert done.stderr.count("  ERR: ") == 3
    assert scheduler.ok("--json", "jobs", "get", "fine").json["delivery_mode"] == "none"
