"""`events tail` filters: type, actor, origin, aggregate, correlation, since/until,
combined, and with `--follow`."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

from .conftest import OCSCHED, shell_job


def _tail(scheduler, *flags: str) -> list[dict]:
    return scheduler.ok("--json", "events", "tail", "-n", "all", *flags).json


def _story(scheduler) -> tuple[dict, dict]:
    """Two jobs: `first` (origin system, by tester) disabled by alice; `second` (origin
    telegram:42) updated by bob."""
    first = scheduler.add(shell_job(name="first"))
    second = scheduler.add(shell_job(name="second", origin="telegram:42"))
    scheduler.ok("--actor", "alice", "jobs", "disable", first["id"])
    scheduler.ok("--actor", "bob", "jobs", "update", second["id"], '{"name": "renamed"}')
    return first, second


def test_each_filter_keeps_only_its_events(scheduler):
    first, second = _story(scheduler)
    assert [e["type"] for e in _tail(scheduler, "--type", "Job.Disabled")] == ["Job.Disabled"]
    assert len(_tail(scheduler, "--type", "Job")) == 4
    assert len(_tail(scheduler, "--type", "Job.*ed")) == 4
    assert [e["type"] for e in _tail(scheduler, "--actor", "bob")] == ["Job.Updated"]
    assert [e["aggregate_id"] for e in _tail(scheduler, "--origin", "telegram:*")] == [second["id"]]
    by_job = _tail(scheduler, "--aggregate", first["id"][:6])
    assert [e["type"] for e in by_job] == ["Job.Created", "Job.Disabled"]
    correlation = by_job[1]["correlation_id"]
    assert [e["actor"] for e in _tail(scheduler, "--correlation", correlation[:10])] == ["alice"]


def test_filters_combine_and_repeated_values_are_alternatives(scheduler):
    first, second = _story(scheduler)
    both = _tail(scheduler, "--type", "Job.Disabled", "--type", "Job.Updated")
    assert [e["actor"] for e in both] == ["alice", "bob"]
    assert _tail(scheduler, "--type", "Job.Disabled", "--actor", "bob") == []
    combined = _tail(
        scheduler, "--aggregate", first["id"], "--aggregate", second["id"], "--actor", "tester"
    )
    assert [e["type"] for e in combined] == ["Job.Created", "Job.Created"]


def test_since_and_until_bound_the_events_times(scheduler):
    _story(scheduler)
    events = _tail(scheduler)
    now = datetime.now(UTC)
    assert len(_tail(scheduler, "--since", "1h")) == len(events) == 4
    assert _tail(scheduler, "--until", "1h") == []
    future = (now + timedelta(hours=1)).isoformat()
    assert _tail(scheduler, "--since", future) == []
    last = events[-1]["time"].replace(" ", "T") + "Z"  # (seconds: several events share it)
    assert _tail(scheduler, "--since", last)[-1] == events[-1]
    after_last = datetime.fromisoformat(last) + timedelta(seconds=1)
    assert _tail(scheduler, "--until", after_last.isoformat()) == events


def test_n_counts_the_newest_matching_events(scheduler):
    _story(scheduler)
    newest = scheduler.ok("--json", "events", "tail", "-n", "1", "--type", "Job.Created").json
    assert [e["fields"]["name"] for e in newest] == ["second"]
    lines = scheduler.ok("events", "tail", "--actor", "alice").stdout.splitlines()
    assert len(lines) == 1 and "Job.Disabled" in lines[0] and "alice" in lines[0]


def test_a_bad_time_is_one_clear_line(scheduler):
    scheduler.add(shell_job())
    result = scheduler.run("events", "tail", "--since", "yesterday")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("--since needs an ISO 8601 time")
    result = scheduler.run("--json", "events", "tail", "-n", "many")
    assert result.returncode == 1 and result.json["ok"] is False


def test_follow_prints_only_new_events_that_match(scheduler):
    job = scheduler.add(shell_job(name="first"))
    command = [*OCSCHED, "--json", "events", "tail", "--follow", "--type", "Job.Disabled"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with subprocess.Popen(command, env=scheduler.env, text=True, **pipes) as follower:
        try:
            other = scheduler.add(shell_job(name="second"))  # not printed: Job.Created
            scheduler.ok("--actor", "carol", "jobs", "disable", job["id"])
            scheduler.ok("jobs", "disable", other["id"])
            first = json.loads(follower.stdout.readline())
            second = json.loads(follower.stdout.readline())
            assert (first["aggregate_id"], first["actor"]) == (job["id"], "carol")
            assert (second["aggregate_id"], second["type"]) == (other["id"], "Job.Disabled")
        finally:
            follower.terminate()
            follower.wait(timeout=10)
