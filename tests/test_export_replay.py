"""`export` -> `replay --into` a scratch home -> `projections verify` clean; a read-model
row edited by hand is named by `projections verify`."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

import pytest

from .conftest import Scheduler, shell_job
from .test_as_of import Day, scripted_day
from .test_postgres import database_url, on_host  # noqa: F401 - the fixture

READS = (("--json", "jobs", "list"), ("--json", "status"), ("--json", "dispatch", "list"))


def _day(scheduler) -> dict[str, str]:
    day = Day(scheduler)
    ids = scripted_day(day)
    day.ctx.close()
    return ids


def test_an_export_replayed_into_a_scratch_home_gives_the_same_read_models(scheduler, tmp_path):
    ids = _day(scheduler)
    exported = scheduler.ok("export").stdout
    lines = [json.loads(line) for line in exported.splitlines()]
    assert len(lines) == scheduler.event_count()
    assert [line["position"] for line in lines] == sorted(line["position"] for line in lines)
    approved = [line for line in lines if line["type"] == "Approval.Approved"]
    assert [(line["actor"], line["state"]["by"]) for line in approved] == [("alice", "alice")]
    (tmp_path / "log.jsonl").write_text(exported)

    into = tmp_path / "replayed"
    done = scheduler.ok("--json", "replay", str(tmp_path / "log.jsonl"), "--into", str(into)).json
    assert done == {"ok": True, "replayed": len(lines), "home": str(into)}
    replayed = Scheduler(into)
    assert replayed.ok("projections", "verify").stdout.startswith("The read models agree")
    assert replayed.ok("audit", "verify").returncode == 0  # (its own chain, made as it was written)
    assert scheduler.ok("projections", "verify").returncode == 0
    for argv in (*READS, ("--json", "runs", "list", ids["child"])):
        theirs, ours = replayed.ok(*argv).json, scheduler.ok(*argv).json
        if argv[-1] == "status":
            assert theirs.pop("db_path") == str(into / "ocsched.db")
            ours.pop("db_path")
        assert theirs == ours, argv
    assert replayed.ok("--json", "events", "show", ids["child"]).json == [
        {**record, "position": None}
        for record in scheduler.ok("--json", "events", "show", ids["child"]).json
    ]


def test_export_filters_and_replay_from_stdin(scheduler, tmp_path):
    first = scheduler.add(shell_job(name="first"))
    scheduler.add(shell_job(name="second"))
    scheduler.ok("jobs", "disable", first["id"])
    only = scheduler.ok("export", "--aggregate", first["id"]).stdout
    assert [json.loads(line)["type"] for line in only.splitlines()] == [
        "Job.Created",
        "Job.Disabled",
    ]
    into = tmp_path / "one"
    replayed = scheduler.run("replay", "-", "--into", str(into), stdin=only)
    assert replayed.returncode == 0, replayed.stderr
    jobs = Scheduler(into).ok("--json", "jobs", "list").json
    assert [(job["name"], job["enabled"]) for job in jobs] == [("first", 0)]


def test_replay_refuses_a_home_with_a_log_and_a_line_that_is_not_an_event(scheduler, tmp_path):
    scheduler.add(shell_job())
    export = tmp_path / "log.jsonl"
    export.write_text(scheduler.ok("export").stdout)
    again = scheduler.run("replay", str(export), "--into", str(scheduler.home))
    assert again.returncode == 1 and "already holds events" in again.stderr
    export.write_text(export.read_text() + '{"position": 9}\n')
    broken = scheduler.run("replay", str(export), "--into", str(tmp_path / "new"))
    assert broken.returncode == 1 and f"{export}:2: not an exported event" in broken.stderr
    missing = scheduler.run("--json", "replay", str(tmp_path / "nope"), "--into", str(tmp_path))
    assert missing.returncode == 1 and missing.json["error"].startswith("Cannot read")


def test_projections_verify_names_an_edited_a_deleted_and_an_added_row(scheduler):
    ids = _day(scheduler)
    with closing(sqlite3.connect(scheduler.db_path)) as db, db:
        db.execute("UPDATE jobs SET name = 'tampered' WHERE id = ?", (ids["parent"],))
        db.execute("DELETE FROM runs WHERE id = ?", (ids["first"],))
        db.execute("INSERT INTO agents (id) VALUES ('ghost')")
    result = scheduler.run("projections", "verify")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"jobs [id={ids['parent']!r}]: name 'tampered' (rebuilt: 'nightly')" in lines
    assert f"runs [id={ids['first']!r}]: missing from the live read models" in lines
    assert "agents [id='ghost']: not in the rebuilt read models" in lines
    assert result.stderr.startswith("3 read-model rows differ from a rebuild from the log: ")
    failed = scheduler.run("--json", "projections", "verify")
    assert failed.returncode == 1 and failed.json["ok"] is False
    assert "tampered" in failed.json["error"]


@pytest.mark.postgres
def test_on_postgres_export_replay_verify_as_of_and_filters(tmp_path, database_url):  # noqa: F811
    host = on_host(tmp_path, "alpha", database_url)
    first = host.add(shell_job(name="first"))
    between = datetime.now(UTC)  # (with microseconds: that moment exactly)
    host.ok("--actor", "alice", "jobs", "disable", first["id"])
    assert host.ok("projections", "verify").returncode == 0
    exported = host.ok("export").stdout
    into = tmp_path / "replayed"
    assert host.run("replay", "-", "--into", str(into), stdin=exported).returncode == 0
    replayed = Scheduler(into)
    assert replayed.ok("--json", "jobs", "list").json == host.ok("--json", "jobs", "list").json
    disabled = host.ok("--json", "events", "tail", "--actor", "alice").json
    assert [e["type"] for e in disabled] == ["Job.Disabled"]
    as_of = host.ok("--json", "jobs", "get", first["id"], "--as-of", between.isoformat()).json
    assert as_of["enabled"] == 1


def test_with_a_cipher_key_export_is_plain_and_replay_enciphers_again(scheduler, tmp_path):
    pytest.importorskip("cryptography")
    from .test_cipher import KEY, SECRET, add_secret_job, database_bytes, keyed

    keyed(scheduler, KEY)
    job = add_secret_job(scheduler)
    moment = datetime.now(UTC).isoformat()
    exported = scheduler.ok("export").stdout
    assert SECRET in exported  # (an export is plain text: kept as safely as the key)
    into = tmp_path / "replayed"
    assert scheduler.run("replay", "-", "--into", str(into), stdin=exported).returncode == 0
    replayed = Scheduler(into)
    keyed(replayed, KEY)
    assert SECRET.encode() not in database_bytes(replayed)
    assert replayed.ok("--json", "jobs", "get", job["id"]).json == (
        scheduler.ok("--json", "jobs", "get", job["id"]).json
    )
    assert replayed.ok("projections", "verify").returncode == 0
    assert scheduler.ok("projections", "verify").returncode == 0
    as_of = scheduler.ok("--json", "jobs", "get", job["id"], "--as-of", moment).json
    assert SECRET in as_of["payload_message"]
    assert scheduler.ok("--json", "events", "tail", "--type", "Job.Created").json
