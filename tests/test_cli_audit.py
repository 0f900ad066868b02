"""Who changed what and when: `events show`, `events tail`, and the event metadata."""

from __future__ import annotations

import json
import subprocess

from .conftest import OCSCHED, shell_job


def test_events_show_tells_the_whole_history_of_a_job(scheduler):
    job = scheduler.add(shell_job())
    scheduler.ok("--actor", "alice", "jobs", "update", job["id"], '{"name": "renamed"}')
    scheduler.ok("jobs", "disable", job["id"], env={"OCSCHED_ACTOR": "bob"})
    scheduler.ok("jobs", "enable", job["id"])
    scheduler.ok("jobs", "delete", job["id"])
    lines = scheduler.ok("events", "show", job["id"]).stdout.splitlines()
    assert [line.split("  ")[4] for line in lines] == [
        "Job.Created",
        "Job.Updated",
        "Job.Disabled",
        "Job.Enabled",
        "Job.Deleted",
    ]
    assert lines[0].split("  ")[1:3] == ["tester", "system"]
    assert lines[1].split("  ")[1:3] == ["alice", "cli"]
    assert lines[1].endswith('name: "backup" -> "renamed"')
    assert lines[2].split("  ")[1] == "bob"


def test_events_show_json_carries_actor_origin_and_correlation(scheduler):
    job = scheduler.add(shell_job(origin="telegram:42"))
    events = scheduler.ok("--json", "events", "show", job["id"]).json
    (created,) = events
    assert created["type"] == "Job.Created"
    assert created["actor"] == "tester"
    assert created["origin"] == "telegram:42"
    assert len(created["correlation_id"]) == 32
    assert created["fields"]["name"] == "backup"
    assert created["time"] == job["created_at"]


def test_each_invocation_has_its_own_correlation_id(scheduler):
    job = scheduler.add(shell_job())
    scheduler.ok("jobs", "disable", job["id"])
    ids = [e["correlation_id"] for e in scheduler.ok("--json", "events", "show", job["id"]).json]
    assert len(set(ids)) == 2


def test_events_show_of_an_unknown_id_fails(scheduler):
    result = scheduler.run("events", "show", "nope")
    assert (result.returncode, result.stderr.strip()) == (1, "No events for: nope")


def test_events_tail_shows_the_newest_events_of_all_jobs(scheduler):
    first = scheduler.add(shell_job(name="first"))
    second = scheduler.add(shell_job(name="second"))
    scheduler.ok("jobs", "disable", first["id"])
    tail = scheduler.ok("--json", "events", "tail", "-n", "2").json
    assert [(e["aggregate_id"], e["type"]) for e in tail] == [
        (second["id"], "Job.Created"),
        (first["id"], "Job.Disabled"),
    ]
    assert [e["position"] for e in tail] == [2, 3]
    assert len(scheduler.ok("events", "tail").stdout.splitlines()) == 3


def test_events_tail_follow_prints_events_appended_later(scheduler):
    scheduler.add(shell_job(name="first"))
    # A process: `--follow` never returns.
    with subprocess.Popen(
        [*OCSCHED, "events", "tail", "--follow"],
        env=scheduler.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            assert "Job.Created" in follower.stdout.readline()
            job = scheduler.add(shell_job(name="second"))
            line = follower.stdout.readline()
            assert job["id"][:8] in line and "Job.Created" in line
        finally:
            follower.terminate()
            follower.wait(timeout=10)


def test_failed_commands_leave_the_log_untouched(scheduler):
    job = scheduler.add(shell_job())
    before = scheduler.event_count()
    for args in [
        ("jobs", "add", "{not json"),
        ("jobs", "add", '{"name": 5}'),
        ("jobs", "update", job["id"], '{"schedule_cron": "bad cron"}'),
        ("jobs", "update", job["id"], '{"schedule_tz": "Mars/Olympus"}'),
        ("jobs", "update", job["id"], '{"nmae": "typo"}'),
        ("jobs", "disable", "ghost"),
    ]:
        result = scheduler.run(*args)
        assert result.returncode == 1, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert scheduler.event_count() == before


def test_events_tail_follow_json_streams_one_object_per_line(scheduler):
    scheduler.add(shell_job(name="first"))
    # A process: `--follow` never returns.
    with subprocess.Popen(
        [*OCSCHED, "--json", "events", "tail", "--follow"],
        env=scheduler.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            assert json.loads(follower.stdout.readline())["type"] == "Job.Created"
            job = scheduler.add(shell_job(name="second"))
            record = json.loads(follower.stdout.readline())
            assert (record["aggregate_id"], record["type"]) == (job["id"], "Job.Created")
        finally:
            follower.terminate()
            follower.wait(timeout=10)
