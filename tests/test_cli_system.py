"""status, schema, projections: the commands about the scheduler itself."""

from __future__ import annotations

import sqlite3
import subprocess

import pytest

from ocsched.projections import NAMES

from .conftest import OCSCHED, shell_job


def test_status_counts_jobs_and_names_the_next_one(scheduler):
    early = scheduler.add(shell_job(name="early", schedule_cron="0 0 * * *"))
    late = scheduler.add(shell_job(name="late", schedule_cron="0 0 1 1 *"))
    scheduler.ok("jobs", "disable", late["id"])
    status = scheduler.ok("--json", "status").json
    assert status["db_path"] == str(scheduler.db_path)
    assert (status["jobs_total"], status["jobs_enabled"]) == (2, 1)
    assert status["next_job"] == {
        "id": early["id"],
        "name": "early",
        "next_run_at": early["next_run_at"],
    }
    plain = scheduler.ok("status").stdout
    assert plain.startswith("=== OpenClaw Scheduler Status ===")
    assert "Jobs:     2 total, 1 enabled" in plain
    assert f"Next:     early at {early['next_run_at']}" in plain


def test_status_on_a_fresh_machine_creates_nothing(scheduler):
    assert scheduler.ok("--json", "status").json["jobs_total"] == 0
    assert not scheduler.home.exists()


def test_schema_jobs_describes_every_field_from_the_model(scheduler):
    schema = scheduler.ok("schema", "jobs").json
    assert schema["required"] == ["name", "payload_message", "run_timeout_ms"]
    fields = schema["fields"]
    assert fields["overlap_policy"] == {
        "type": "string",
        "default": "skip",
        "enum": ["skip", "allow", "queue"],
    }
    assert fields["max_retries"]["min"] == 0
    assert fields["name"]["maxLength"] == 200
    assert fields["ttl_hours"]["nullable"] is True
    assert fields["output_excerpt_limit_bytes"]["default"] == 2000
    assert len(fields) >= 79
    assert scheduler.ok("schema").json["jobs"] == schema


def test_schema_of_an_unknown_target_fails(scheduler):
    result = scheduler.run("schema", "widgets")
    assert (result.returncode, result.stderr.strip()) == (1, "Unknown schema target: widgets")


def test_projection_status_shows_position_and_lag(scheduler):
    scheduler.add(shell_job())
    rows = scheduler.ok("--json", "projections", "status").json
    assert rows == [{"name": name, "position": 1, "head": 1, "lag": 0} for name in NAMES]
    assert "LAG" in scheduler.ok("projections", "status").stdout


def test_a_read_command_catches_up_a_read_model_that_fell_behind(scheduler):
    job = scheduler.add(shell_job())
    scheduler.ok("jobs", "disable", job["id"])
    with sqlite3.connect(scheduler.db_path) as connection:  # as if a writer died mid-way
        connection.execute("UPDATE tracking SET notification_id = 1 WHERE application_name='jobs'")
        connection.execute("UPDATE jobs SET enabled = 1")
    assert scheduler.ok("--json", "projections", "status").json[0]["lag"] == 1
    assert scheduler.ok("jobs", "get", job["id"]).json["enabled"] == 0


def test_rebuild_reproduces_the_live_tables_row_for_row(scheduler):
    jobs = [scheduler.add(shell_job(name=f"job {i}")) for i in range(6)]
    scheduler.ok("jobs", "update", jobs[0]["id"], '{"name": "renamed", "max_retries": 3}')
    scheduler.ok("jobs", "update", jobs[1]["id"], '{"schedule_cron": "*/5 * * * *"}')
    scheduler.ok("jobs", "disable", jobs[2]["id"])
    scheduler.ok("jobs", "disable", jobs[3]["id"])
    scheduler.ok("jobs", "enable", jobs[3]["id"])
    scheduler.ok("jobs", "delete", jobs[4]["id"])
    child = scheduler.add(
        shell_job(name="child", parent_id=jobs[5]["id"], trigger_on="success", schedule_cron=None)
    )
    scheduler.ok("jobs", "delete", child["id"])
    live = _rows(scheduler.db_path)
    result = scheduler.ok("--json", "projections", "rebuild", "jobs").json
    assert result == {"ok": True, "rebuilt": [{"name": "jobs", "events": 14}]}
    assert _rows(scheduler.db_path) == live
    assert len(live) == 5


def test_rebuild_of_an_unknown_projection_fails(scheduler):
    result = scheduler.run("projections", "rebuild", "widgets")
    assert result.returncode == 1
    assert result.stderr.strip() == "Unknown projection: widgets. Known: " + ", ".join(NAMES)


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM jobs ORDER BY id").fetchall()


# The `scheduler` fixture runs commands in this process; what it answers must be what a
# process answers, byte for byte (status, stdout, stderr).
@pytest.mark.parametrize(
    "args",
    [
        (),
        ("version",),
        ("frobnicate",),
        ("--json", "frobnicate"),
        ("--actor",),
        ("jobs", "get", "nope"),
        ("--json", "jobs", "get", "nope\udc80"),
        ("jobs", "get", "nope\udc80"),
        ("jobs", "add", "{nope"),
        ("--json", "schema", "jobs"),
    ],
)
def test_the_in_process_cli_answers_as_a_process_does(scheduler, args):
    scheduler.add(shell_job(id="seed"))
    assert scheduler.call(*args) == scheduler.process(*args)


def test_a_reader_that_stops_early_ends_a_listing_quietly(scheduler):
    for number in range(150):
        scheduler.add(shell_job(name=f"job-{number}"))
    listing = subprocess.Popen(
        [*OCSCHED, "jobs", "list"],
        env=scheduler.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.read(10)
    listing.stdout.close()  # as `| head -c 10` does
    _, errors = listing.communicate(timeout=60)
    assert (listing.returncode, errors) == (0, b"")
