"""`ocsched audit`: the hash chain names the first event edited, deleted, inserted or
reordered with plain SQL in a copy of a store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from .conftest import Scheduler, shell_job


@pytest.fixture
def store(scheduler: Scheduler) -> Scheduler:
    """A store of 8 events: three jobs created, updated, disabled and enabled."""
    ids = [scheduler.add(shell_job(name=f"job{n}"))["id"] for n in range(3)]
    scheduler.ok("jobs", "update", ids[0], '{"max_retries": 2}')
    scheduler.ok("jobs", "disable", ids[1])
    scheduler.ok("jobs", "enable", ids[1])
    scheduler.ok("jobs", "update", ids[2], '{"max_retries": 3}')
    scheduler.ok("jobs", "disable", ids[2])
    assert scheduler.event_count() == 8
    return scheduler


def copy_of(store: Scheduler, tmp_path: Path, name: str) -> Scheduler:
    """Another home whose SCHEDULER_DB is a copy of the store's database."""
    copy = Scheduler(tmp_path / name)
    copy.home.mkdir()
    with (
        contextlib.closing(sqlite3.connect(store.db_path)) as source,
        contextlib.closing(sqlite3.connect(copy.db_path)) as target,
    ):
        source.backup(target)
    return copy


def sql(copy: Scheduler, *statements: str, params: tuple = ()) -> None:
    with contextlib.closing(sqlite3.connect(copy.db_path)) as connection:
        for statement in statements:
            connection.execute(statement, params if "?" in statement else ())
        connection.commit()


def row(copy: Scheduler, position: int) -> tuple:
    with contextlib.closing(sqlite3.connect(copy.db_path)) as connection:
        return connection.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " WHERE rowid = ?",
            (position,),
        ).fetchone()


def finding(copy: Scheduler) -> dict:
    result = copy.run("--json", "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.json
    assert report["ok"] is False and report["intact"] is False
    return report["finding"]


def test_an_intact_log_verifies_and_prints_its_head(store):
    result = store.ok("audit", "verify")
    assert result.stdout.startswith("Intact: 8 events verified, positions 1 to 8")
    anchor = store.ok("audit", "anchor").stdout.strip()
    assert f"Head: {anchor}" in result.stdout
    assert anchor.startswith("8:") and len(anchor) == 2 + 64
    report = store.ok("--json", "audit", "verify", "--head", anchor).json
    assert report["intact"] and report["anchor_matched"] and report["checked"] == 8


def test_an_edited_event_is_named_by_position_aggregate_and_time(store, tmp_path):
    copy = copy_of(store, tmp_path, "edited")
    originator_id, _, _, state = row(copy, 4)
    edited = state.replace(b'"max_retries"', b'"max_retriez"')
    assert edited != state
    sql(copy, "UPDATE stored_events SET state = ? WHERE rowid = 4", params=(edited,))
    found = finding(copy)
    assert (found["kind"], found["position"], found["aggregate"]) == ("edited", 4, originator_id)
    assert found["type"] == "Job.Updated" and found["time"].startswith("20")
    text = copy.run("audit", "verify")
    assert text.returncode == 1
    assert text.stdout.startswith(f"TAMPERED: position 4 EDITED: Job.Updated of {originator_id}")


def test_a_deleted_event_is_named_with_the_events_around_it(store, tmp_path):
    copy = copy_of(store, tmp_path, "deleted")
    sql(copy, "DELETE FROM stored_events WHERE rowid = 5")
    found = finding(copy)
    assert (found["kind"], found["position"]) == ("deleted", 5)
    assert found["after"]["position"] == 4 and found["before"]["position"] == 6


def test_an_event_deleted_with_its_link_is_named(store, tmp_path):
    copy = copy_of(store, tmp_path, "deleted-link")
    sql(
        copy,
        "DELETE FROM stored_events WHERE rowid = 5",
        "DELETE FROM event_chain WHERE position = 5",
    )
    found = finding(copy)
    assert (found["kind"], found["position"]) == ("deleted", 5)


def test_an_inserted_event_is_named(store, tmp_path):
    copy = copy_of(store, tmp_path, "inserted")
    _, _, topic, state = row(copy, 8)
    sql(
        copy,
        "INSERT INTO stored_events VALUES ('forged-job', 1, ?, ?)",
        params=(topic, state),
    )
    found = finding(copy)
    assert (found["kind"], found["position"], found["aggregate"]) == ("inserted", 9, "forged-job")


def test_two_events_swapped_are_named_as_reordered(store, tmp_path):
    copy = copy_of(store, tmp_path, "reordered")
    moved = row(copy, 3)[0]
    sql(
        copy,
        "UPDATE stored_events SET rowid = 100 WHERE rowid = 3",
        "UPDATE stored_events SET rowid = 3 WHERE rowid = 4",
        "UPDATE stored_events SET rowid = 4 WHERE rowid = 100",
    )
    found = finding(copy)
    assert (found["kind"], found["position"], found["now_at"]) == ("reordered", 3, 4)
    assert row(copy, 4)[0] == moved


def test_a_recomputed_chain_passes_alone_but_not_against_an_earlier_anchor(store, tmp_path):
    from ocsched.adapters.chain import GENESIS, link_hash

    anchor = store.ok("audit", "anchor").stdout.strip()
    copy = copy_of(store, tmp_path, "rewritten")
    originator_id, version, topic, state = row(copy, 2)
    sql(
        copy,
        "UPDATE stored_events SET state = ? WHERE rowid = 2",
        params=(state.replace(b"echo hi", b"rm -rf ~"),),
    )
    with contextlib.closing(sqlite3.connect(copy.db_path)) as connection:  # the whole chain
        digest = GENESIS
        rows = connection.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
            " ORDER BY rowid"
        ).fetchall()
        for position, originator_id, version, topic, state in rows:
            digest = link_hash(
                digest, position, originator_id.encode(), version, topic.encode(), state
            )
            connection.execute(
                "UPDATE event_chain SET hash = ? WHERE position = ?", (digest, position)
            )
        connection.commit()
    copy.ok("audit", "verify")
    result = copy.run("--json", "audit", "verify", "--head", anchor)
    assert result.returncode == 1
    assert result.json["finding"]["kind"] == "rewritten"


def test_verify_resumes_from_a_position(store):
    report = store.ok("--json", "audit", "verify", "--from", "6").json
    assert (report["from"], report["checked"], report["intact"]) == (6, 3, True)


def test_a_store_from_before_the_chain_is_chained_from_the_upgrade(store, tmp_path):
    copy = copy_of(store, tmp_path, "upgraded")
    sql(copy, "DROP TABLE event_chain")
    copy.add(shell_job(name="after-upgrade"))
    copy.add(shell_job(name="later"))
    report = copy.ok("--json", "audit", "verify").json
    assert (report["chain_start"], report["unchained"], report["checked"]) == (9, 8, 2)
    text = copy.ok("audit", "verify").stdout
    assert "Not covered: positions 1 to 8 (8 events) were written before the chain began" in text
    sql(copy, "DELETE FROM event_chain WHERE position = 9")  # the chain's first link
    found = finding(copy)
    assert (found["kind"], found["position"]) == ("deleted", 9)
    assert found["detail"].startswith("its chain link is gone")


def test_bad_arguments_are_one_line(store):
    for args, message in [
        (("--head", "nope"), "is not an anchor"),
        (("--from", "x"), "is not a position"),
        (("--from", "2", "--head", "1:" + "ab" * 32), "drop --from"),
    ]:
        result = store.run("audit", "verify", *args)
        assert result.returncode == 1 and message in result.stderr
        assert result.stderr.count("\n") == 1


def test_processes_appending_at_once_leave_one_intact_chain(scheduler):
    import json
    import subprocess

    from .conftest import OCSCHED

    scheduler.add(shell_job(name="first"))

    def script(n: int) -> str:
        return " && ".join(
            f"{' '.join(OCSCHED)} jobs add '{json.dumps(shell_job(name=f'p{n}j{k}'))}'"
            for k in range(4)
        )

    children = [
        subprocess.Popen(
            ["bash", "-c", script(n)],
            env=scheduler.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for child in children:
        _, errors = child.communicate(timeout=120)
        assert child.returncode == 0, errors
    report = scheduler.ok("--json", "audit", "verify").json
    assert (report["intact"], report["checked"]) == (True, 17)


def test_events_saved_together_get_the_positions_they_are_stored_at(scheduler):
    """The events of one save are inserted in one statement; the positions the log reports
    for them (what the daemon's writer and the chain use) are the rows they landed in."""
    from datetime import UTC, datetime

    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job

    scheduler.add(shell_job(name="first"))
    log = open_event_log(Settings.from_environment(scheduler.env))
    meta = EventMeta(actor="tester", origin="test", correlation_id="c1")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    jobs = [new_job(shell_job(name=f"batch{n}"), f"batch-{n}", meta, now) for n in range(3)]
    recordings = log.events.put([event for job in jobs for event in job.collect_events()])
    log.close()
    positions = [recording.notification.id for recording in recordings]
    assert positions == [2, 3, 4]
    with contextlib.closing(sqlite3.connect(scheduler.db_path)) as connection:
        stored = connection.execute(
            "SELECT rowid, originator_id FROM stored_events WHERE rowid > 1 ORDER BY rowid"
        ).fetchall()
    assert stored == [(2, "batch-0"), (3, "batch-1"), (4, "batch-2")]
    report = scheduler.ok("--json", "audit", "verify").json
    assert (report["intact"], report["checked"]) == (True, 4)


def test_the_daemons_openssl_links_are_the_commands_links(monkeypatch):
    from ocsched.adapters import chain

    link = (chain.GENESIS, 7, b"run-1", 3, b"ocsched.domain.run:Run.Started", b"{}" * 300)
    small = chain.link_hash(*link)
    monkeypatch.setattr(chain, "_sha256", chain._sha256)  # restored after the test
    chain.hash_with_openssl()
    assert chain._sha256.__module__ != "_sha256"  # (OpenSSL's)
    assert chain.link_hash(*link) == small
