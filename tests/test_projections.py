"""Projection wiring: every handler names a real event class; a page of row changes is
written as one statement per change would write it."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from unittest.mock import patch

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import resolve_topic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ocsched.projections import runs, store
from ocsched.projections.projection import Projection, topic_of
from ocsched.projections.rows import Delete, KeepNewest, Update, Upsert
from ocsched.projections.runner import all_projections


def test_every_handler_key_names_an_event_class_of_the_domain():
    for projection in all_projections():
        for topic in projection.topics:
            event_class = resolve_topic(topic)
            assert topic_of(object.__new__(event_class)) == topic, topic


def test_loading_the_projections_imports_no_aggregate():
    import subprocess
    import sys

    code = (
        "import sys; from ocsched.projections.runner import all_projections; all_projections();"
        "print(sorted(m for m in sys.modules if m.startswith('ocsched.domain.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    for aggregate in ("job", "run", "dispatch", "delivery", "approval", "label"):
        assert f"'ocsched.domain.{aggregate}'" not in loaded.stdout


# A page's row changes are merged (later changes of a row into an earlier statement) and
# batched; the tables must end exactly as one statement per change, in order, leaves them.

KEYS = st.sampled_from(("k0", "k1", "k2"))
GROUPS = st.sampled_from(("0", "1"))
COLUMNS = {
    "a": st.one_of(st.none(), st.integers(0, 2), st.lists(st.integers(0, 1), max_size=2)),
    "status": st.sampled_from(("done", "running", None)),
    "grp": GROUPS,
    "ord": st.integers(0, 2),
}


@st.composite
def _columns(draw) -> dict:
    names = draw(st.sets(st.sampled_from(sorted(COLUMNS)), min_size=1))
    return {name: draw(COLUMNS[name]) for name in sorted(names)}


ROW_CHANGES = st.one_of(
    st.builds(lambda key, row: Upsert("t", {"id": key, **row}), KEYS, _columns()),
    st.builds(lambda key, values: Update("t", key, values), KEYS, _columns()),
    st.builds(lambda group, values: Update("t", group, values, pk="grp"), GROUPS, _columns()),
    st.builds(lambda key: Delete("t", key), KEYS),
    st.builds(lambda group: Delete("t", group, pk="grp"), GROUPS),
    st.builds(lambda group: KeepNewest("t", "grp", group, "ord", 1), GROUPS),
    st.builds(lambda key, x: Upsert("u", {"id": key, "x": x}), KEYS, st.integers(0, 3)),
    st.builds(lambda key, x: Update("u", key, {"x": x}), KEYS, st.integers(0, 3)),
)


def _create(db) -> None:
    db["t"].create({"id": str, "a": int, "status": str, "grp": str, "ord": int}, pk="id")
    db["t"].create_index(["grp"])
    db["u"].create({"id": str, "x": int}, pk="id")
    db["u"].create_index(["x"], unique=True)


def _table_rows(connection: sqlite3.Connection) -> dict[str, list]:
    return {
        name: [
            tuple(row) for row in connection.execute(f"SELECT rowid, * FROM {name} ORDER BY rowid")
        ]
        for name in ("t", "u")
    }


def _one_statement(connection: sqlite3.Connection, change) -> None:
    """What a row change means, one plain statement for it."""
    if isinstance(change, Upsert):
        names, values = list(change.row), [_bound(v) for v in change.row.values()]
        marks = ", ".join("?" * len(names))
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != change.pk)
        connection.execute(
            f"INSERT INTO {change.table} ({', '.join(names)}) VALUES ({marks})"
            f" ON CONFLICT({change.pk}) DO UPDATE SET {updates}",
            values,
        )
    elif isinstance(change, Update):
        assignments = ", ".join(f"{n} = ?" for n in change.values)
        connection.execute(
            f"UPDATE {change.table} SET {assignments} WHERE {change.pk} = ?",
            [*map(_bound, change.values.values()), change.key],
        )
    elif isinstance(change, Delete):
        connection.execute(f"DELETE FROM {change.table} WHERE {change.pk} = ?", (change.key,))
    else:
        connection.execute(
            f"DELETE FROM {change.table} WHERE {change.group_column} = ?"
            " AND status NOT IN ('pending', 'queued', 'running') AND rowid NOT IN"
            f" (SELECT rowid FROM {change.table} WHERE {change.group_column} = ?"
            f" ORDER BY {change.order_column} DESC, rowid DESC LIMIT ?)",
            (change.group_value, change.group_value, change.keep),
        )


def _bound(value):
    return json.dumps(value) if isinstance(value, list | dict) else value


def _page(*changes) -> dict:
    """One page holding one event per change."""
    return {"events": [[c] for c in changes], "page_size": 50, "chunk": 7, "pending": 99}


DONE = {"status": "done", "grp": "0"}


def _rows_projection(name: str, tables: tuple[str, ...], create, events: list) -> tuple:
    """A projection whose events are lists of row changes, and a reader of `events` as
    its log (one event each)."""
    projection = Projection(
        name=name,
        version=1,
        tables=tables,
        create_tables=create,
        handlers={"rows:Rows.Changed": lambda changes: changes},
    )
    topic = next(iter(projection.topics))
    log = list(enumerate(events, start=1))

    def read(position: int, limit: int):
        return [(n, topic, changes) for n, changes in log[position : position + limit]]

    return projection, read


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.lists(ROW_CHANGES, min_size=1, max_size=2), max_size=25),
    page_size=st.integers(1, 30),
    chunk=st.integers(1, 7),
    pending=st.integers(1, 60),
)
@example(  # deleted in between: the second upsert inserts again
    **_page(Upsert("t", {"id": "k0", "a": 1}), Delete("t", "k0"), Upsert("t", {"id": "k0", "a": 2}))
)
@example(  # retention removed k0 before the update, which then matches nothing
    **_page(
        Upsert("t", {"id": "k0", "ord": 0, **DONE}),
        Upsert("t", {"id": "k1", "ord": 1, **DONE}),
        KeepNewest("t", "grp", "0", "ord", 1),
        Update("t", "k0", {"status": "running"}),
    )
)
@example(  # an update of a group matches k0 only after k0 moved into it
    **_page(
        Upsert("t", {"id": "k0", "grp": "1"}),
        Update("t", "0", {"a": 2}, pk="grp"),
        Update("t", "k0", {"grp": "0"}),
    )
)
@example(  # a row whose key changed is another row
    **_page(
        Upsert("t", {"id": "k0", "a": 0}),
        Update("t", "k0", {"id": "k1"}),
        Update("t", "k0", {"a": 1}),
    )
)
@example(  # moved earlier, k0's update would take x=2 while k1 still holds it
    events=[
        [Upsert("u", {"id": "k0", "x": 1}), Upsert("u", {"id": "k1", "x": 2})],
        [Update("u", "k0", {"x": 5}), Update("u", "k1", {"x": 3}), Update("u", "k0", {"x": 2})],
    ],
    page_size=50,
    chunk=1,
    pending=2,
)
@example(  # updated twice, then deleted: the updates are not written at all
    **_page(
        Upsert("t", {"id": "k0", "a": 0}),
        Update("t", "k0", {"a": 1}),
        Update("t", "k0", {"ord": 2}),
        Delete("t", "k0"),
        Upsert("t", {"id": "k1", "a": 3}),
    )
)
@example(  # an update, retention of another group, then the delete
    **_page(
        Update("t", "k0", {"a": 1}),
        KeepNewest("t", "grp", "1", "ord", 1),
        Update("t", "k1", {"a": 1}),
        Delete("t", "k1"),
        Delete("t", "k0"),
    )
)
@example(  # an update of a missing row, then an upsert: not one statement
    **_page(Update("t", "k0", {"a": 1}), Upsert("t", {"id": "k0", "ord": 2}))
)
def test_a_page_of_merged_row_changes_equals_one_statement_per_change(
    events, page_size, chunk, pending
):
    import sqlite_utils

    expected = sqlite3.connect(":memory:", isolation_level=None)
    _create(sqlite_utils.Database(expected))
    failed = None
    try:
        with expected:
            for changes in events:
                for change in changes:
                    _one_statement(expected, change)
    except sqlite3.IntegrityError as error:  # a unique index refused a change: so must we
        failed = type(error)

    projection, read = _rows_projection("rows", ("t", "u"), _create, events)
    read_models = store.ReadModelStore(":memory:")
    read_models.ensure_tables(projection)
    with patch.multiple(store, READ_CHUNK=chunk, MAX_PENDING_CHANGES=pending):
        try:
            while read_models.apply([projection], read, page_size) == page_size:
                pass
        except IntegrityError as error:
            assert failed, error
            return
    assert not failed
    with read_models.datastore.transaction(commit=False) as cursor:
        actual = _table_rows(cursor.sqlite_cursor.connection)
    assert actual == _table_rows(expected)
    assert read_models.position("rows") == len(events)


def test_an_update_of_a_row_deleted_later_in_the_page_is_written_where_a_trigger_sees_it():
    def create(db) -> None:
        db["t"].create({"id": str, "a": int}, pk="id")
        db["seen"].create({"a": int})
        db.execute(
            "CREATE TRIGGER t_au AFTER UPDATE ON t BEGIN INSERT INTO seen VALUES (new.a); END"
        )

    log = [[Upsert("t", {"id": "k0", "a": 0})], [Update("t", "k0", {"a": 1})], [Delete("t", "k0")]]
    projection, read = _rows_projection("watched", ("t", "seen"), create, log)
    read_models = store.ReadModelStore(":memory:")
    read_models.ensure_tables(projection)
    read_models.apply([projection], read, 1)  # the row exists before the page
    read_models.apply([projection], read, 50)
    with read_models.datastore.transaction(commit=False) as cursor:
        connection = cursor.sqlite_cursor.connection
        assert [tuple(row) for row in connection.execute("SELECT a FROM seen")] == [(1,)]
        assert connection.execute("SELECT count(*) FROM t").fetchone()[0] == 0


# A rebuild replays the whole log in large pages (merged, batched, events read as light
# records); the live read models were built a few events at a time as they were saved. Both
# must hold exactly the same rows, of every projection.

T0 = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)
SEEDED_TOPICS = {
    f"ocsched.domain.{topic}"
    for topic in (
        *(f"job:Job.{e}" for e in ("Created", "Updated", "Enabled", "Disabled", "Deleted")),
        *(f"run:Run.{e}" for e in ("Scheduled", "Queued", "Started", "Finished")),
        *(f"dispatch:Dispatch.{e}" for e in ("Requested", "Claimed", "Cancelled", "Held")),
        "dispatch:Dispatch.Released",
        *(f"delivery:Delivery.{e}" for e in ("Requested", "ChunkSent", "AttemptFailed")),
        *(f"delivery:Alias.{e}" for e in ("Added", "Changed", "Removed")),
        *(f"approval:Approval.{e}" for e in ("Requested", "Approved", "Rejected")),
        *(f"label:Label.{e}" for e in ("Enqueued", "Spawned", "MessageSent", "Done", "Failed")),
        *(f"label:Label.{e}" for e in ("ActivityObserved", "Verified", "Retried")),
    )
}


class _Clock:
    """Event times one second apart, mostly with microseconds, some on the whole second,
    one at another offset (the stored text then has no `Z`)."""

    def __init__(self) -> None:
        self.tick = 0

    def __call__(self) -> datetime:
        self.tick += 1
        moment = T0 + timedelta(seconds=self.tick, microseconds=(self.tick * 7919) % 10**6)
        if self.tick % 5 == 0:
            moment = moment.replace(microsecond=0)
        if self.tick == 7:
            moment = moment.astimezone(timezone(timedelta(hours=2)))
        return moment


def _seed_every_event_type(tmp_path) -> tuple:
    """A log with every event type the projections read (SEEDED_TOPICS), saved a few at a
    time, each save caught up as a command does."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.approval import Approval
    from ocsched.domain.delivery import Alias, Delivery
    from ocsched.domain.dispatch import Dispatch
    from ocsched.domain.job import new_job
    from ocsched.domain.label import Label
    from ocsched.domain.run import Run
    from ocsched.projections.runner import catch_up

    settings = Settings(home=tmp_path, database=str(tmp_path / "ocsched.db"))
    log = open_event_log(settings)
    read_models = store.ReadModelStore(settings.read_model_path)
    meta = EventMeta(actor="tester", origin="cli", correlation_id="c1", cause="slot")
    at = _Clock()

    def save(*aggregates) -> None:
        log.save(*aggregates)
        catch_up(log, read_models)

    spec = {"schedule_cron": "0 * * * *", "session_target": "shell", "run_timeout_ms": 1000}
    jobs = [
        new_job({**spec, "name": f"job {i}", "payload_message": "true"}, f"job-{i}", meta, at())
        for i in range(4)
    ]
    save(*jobs)
    jobs[0].update({"name": "renamed", "max_retries": 2, "schedule_tz": None}, meta, at())
    jobs[1].disable(meta, at())
    save(*jobs)
    jobs[1].enable(meta, at())
    jobs[3].delete(meta, at())
    save(*jobs)

    def run(job_id: str, dispatch_id: str | None = None) -> Run:
        return Run(
            id=f"run-{at.tick}",
            job_id=job_id,
            trigger="manual" if dispatch_id else "clock",
            slot=None if dispatch_id else "2026-12-05 09:00:00",
            dispatch_id=dispatch_id,
            retry_count=0,
            retry_of=None,
            triggered_by_run=None,
            replay_of=None,
            run_timeout_ms=1000,
            owner="host:1:1",
            job_changes={"next_run_at": "2026-12-05 10:00:00"},
            meta=meta,
            timestamp=at(),
        )

    finished = []  # more than the runs kept per job: retention deletes the oldest
    for _ in range(104):
        done = run("job-0")
        done.start(10, 10, meta, at(), job_changes={"last_status": "running"})
        outcome = {"summary": f"run {at.tick}", "shell_exit_code": 0, "duration_ms": at.tick}
        done.finish("ok", outcome, {"last_status": "ok", "consecutive_errors": 0}, meta, at())
        finished.append(done)
        if len(finished) % 25 == 0:
            save(*finished[-25:])
    save(*finished[-4:])
    running, waiting = run("job-1"), run("job-1")
    running.start(11, 11, meta, at(), session_key="agent:main:1")
    waiting.queue_behind(running.id, {"queued_count": 1}, meta, at())
    save(running, waiting)

    def dispatch(number: int, job_id: str, kind: str, source_run_id: str | None) -> Dispatch:
        return Dispatch(
            id=f"dispatch-{number}",
            job_id=job_id,
            kind=kind,
            scheduled_for="2026-12-05 08:00:00",
            source_run_id=source_run_id,
            retry_count=number - 1,
            meta=meta,
            timestamp=at(),
        )

    request = dispatch(1, "job-2", "manual", None)
    claimed = run("job-2", request.id)
    request.claim(claimed.id, meta, at())
    claimed.finish("error", {"error_message": "boom", "shell_exit_code": 1}, {}, meta, at())
    held = dispatch(2, "job-2", "chain", claimed.id)
    approvals = [
        Approval(
            id=f"approval-{i}",
            job_id="job-2",
            dispatch_id=held.id,
            source_run_id=claimed.id,
            meta=meta,
            timestamp=at(),
        )
        for i in range(3)
    ]
    held.hold(approvals[0].id, meta, at())
    save(request, claimed, held, *approvals)
    held.release(approvals[0].id, meta, at())
    approvals[0].approve("alice", meta, at())
    approvals[1].approve("timeout", meta, at(), automatic=True)
    approvals[2].reject("bob", "not now", meta, at())
    cancelled = dispatch(3, "job-1", "retry", None)
    cancelled.cancel("job disabled", meta, at())
    save(held, cancelled, *approvals)

    sent = Delivery(
        id="delivery-1",
        run_id=claimed.id,
        job_id="job-2",
        purpose="result",
        channel="telegram",
        target="12345",
        chunks=["one", "two"],
        meta=meta,
        timestamp=at(),
    )
    sent.record_failure(0, "gateway down", "2026-12-05 08:10:00", meta, at())
    sent.record_sent(0, meta, at())
    save(sent)
    sent.record_sent(1, meta, at())
    given_up = Delivery(
        id="delivery-2",
        run_id=claimed.id,
        job_id="job-2",
        purpose="approval",
        channel=None,
        target="ops",
        chunks=["please approve"],
        meta=meta,
        timestamp=at(),
    )
    given_up.record_failure(0, "unknown target", None, meta, at())
    aliases = [
        Alias(
            id=f"alias-{n}",
            name=n,
            channel="telegram",
            target="1",
            description=None,
            meta=meta,
            timestamp=at(),
        )
        for n in ("ops", "dev")
    ]
    aliases[0].change("ops", "slack", "#ops", "the ops room", meta, at())
    aliases[1].remove("dev", meta, at())
    save(sent, given_up, *aliases)

    def label(name: str, number: int) -> Label:
        return Label(
            id=f"label-{number}",
            label=name,
            session_key=f"agent:main:subagent:{number}",
            settings={"agent": "main", "mode": "fresh", "timeout_seconds": 60, "task_prompt": "x"},
            meta=meta,
            timestamp=at(),
        )

    first, again, other = label("fix-bug", 1), label("fix-bug", 2), label("docs", 3)
    first.spawned("run-a", meta, at())
    first.send("steer", "key-1", "faster", meta, at())
    save(first)
    first.observed("2026-12-05T08:30:00.000Z", 1200, meta, at())
    first.fail("error", "overloaded", "529", meta, at())
    first.retry("agent:main:subagent:1b", "overloaded", meta, at())
    first.done("fixed", None, "abc1234", {"status": "done"}, meta, at())
    first.verified(False, "tests failed", meta, at())
    save(first, again)  # the label's row now shows its newest dispatch: `again`
    again.spawned("run-b", meta, at())
    other.done("written", {"docs": True}, None, {"status": "done"}, meta, at(), forced=True)
    other.verified(True, None, meta, at())
    save(again, other)
    return log, read_models


def _read_model_rows(path) -> dict[str, list[tuple]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return {
            table: connection.execute(f"SELECT rowid, * FROM [{table}] ORDER BY rowid").fetchall()
            for projection in all_projections()
            for table in projection.tables
        }


def test_a_rebuild_gives_exactly_the_rows_the_live_projections_built(tmp_path):
    from ocsched.projections.runner import rebuild, rebuild_together

    log, read_models = _seed_every_event_type(tmp_path)
    log_events = _query(tmp_path, "SELECT rowid FROM stored_events")
    stored_topics = {row[0] for row in _query(tmp_path, "SELECT DISTINCT topic FROM stored_events")}
    assert stored_topics == SEEDED_TOPICS
    assert set().union(*(p.topics for p in all_projections())) >= SEEDED_TOPICS
    live = _read_model_rows(tmp_path / "ocsched.db")
    assert len(live["runs"]) == 100 + 3 and len(live["jobs"]) == 3  # retention; a deletion
    assert rebuild_together(log, read_models, all_projections()) == len(log_events)
    assert _read_model_rows(tmp_path / "ocsched.db") == live
    for projection in all_projections():
        assert rebuild(log, read_models, projection) == len(log_events)
    assert _read_model_rows(tmp_path / "ocsched.db") == live
    log.close()


def _query(tmp_path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "ocsched.db")) as connection:
        return connection.execute(sql).fetchall()


def test_events_read_in_bulk_are_records_of_the_same_values_and_times(tmp_path):
    """Projections get light records (the stored timestamp text, no library event): each
    must carry the domain event's values, and its time must give the texts `to_ts` and
    ISO-with-milliseconds give for the datetime (UTC with or without microseconds, and
    another offset)."""
    import msgspec

    from ocsched.domain.schedule import to_ts
    from ocsched.projections.stamps import iso_ms, ts

    log, _ = _seed_every_event_type(tmp_path)
    records = log.read_after(0, 10_000, SEEDED_TOPICS)
    stored = log.recorder.select_notifications(start=1, limit=10_000)
    assert len(records) == len(stored) > 200
    offsets = set()
    for (_, topic, record), notification in zip(records, stored, strict=True):
        event = log.mapper.to_domain_event(notification)
        assert topic == notification.topic
        values = msgspec.structs.asdict(record)
        moment = event.timestamp
        offsets.add((moment.utcoffset(), moment.microsecond == 0))
        assert msgspec.convert(values.pop("timestamp"), datetime) == moment
        assert values == {k: v for k, v in vars(event).items() if k != "timestamp"}
        assert ts(record) == ts(event) == to_ts(moment)
        ms = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert iso_ms(record) == iso_ms(event) == ms
    assert offsets == {
        (timedelta(0), True),
        (timedelta(0), False),
        (timedelta(hours=2), False),
    }
    log.close()


def test_a_tracking_position_that_does_not_move_forward_is_refused_with_its_page():
    """Exactly once: the positions of a page are written in one statement that refuses a
    position not ahead of the stored one, and the whole transaction goes with it."""
    read_models = store.ReadModelStore(":memory:")
    with read_models.datastore.transaction(commit=True) as cursor:
        read_models._advance(cursor, ["a", "b"], 5)
    try:
        with read_models.datastore.transaction(commit=True) as cursor:
            read_models._advance(cursor, ["c"], 9)
            read_models._advance(cursor, ["a", "d"], 5)
    except IntegrityError as error:
        assert str(error) == "Failed to record tracking for a, d 5"
    else:
        raise AssertionError("a position that did not move forward was recorded")
    positions = [read_models.position(name) for name in "abcd"]
    assert positions == [5, 5, 0, 0]


def _create_runs_of_version_7(db) -> None:
    """The runs layout up to version 7: the table, and an FTS5 index over the summaries
    kept by sqlite-utils' triggers (`runs_ai`, `runs_ad`, `runs_au`)."""
    db["runs"].create(runs.COLUMNS, pk="id", defaults={"shell_timed_out": 0})
    db["runs"].enable_fts(["summary"], create_triggers=True, tokenize="porter")


def test_a_store_with_the_old_runs_index_is_rebuilt_without_it_or_its_triggers(tmp_path):
    old_path, new_path = str(tmp_path / "old.db"), str(tmp_path / "new.db")
    old = Projection("runs", 7, ("runs", "runs_fts"), _create_runs_of_version_7, {})
    _ensure_tables(old_path, old)
    with contextlib.closing(sqlite3.connect(old_path)) as connection, connection:
        connection.execute("INSERT INTO runs (id, job_id, summary) VALUES ('run-0', 'j', 'ok')")
    assert {"runs_fts", "runs_ai", "runs_ad", "runs_au"} <= {
        name for _, name, _ in _schema(old_path)
    }

    _ensure_tables(old_path, runs.projection)
    _ensure_tables(new_path, runs.projection)
    assert _schema(old_path) == _schema(new_path)  # no FTS table, shadow table or trigger left
    with contextlib.closing(sqlite3.connect(old_path)) as connection, connection:
        connection.execute("INSERT INTO runs (id, job_id) VALUES ('run-1', 'job-1')")
        connection.execute("UPDATE runs SET summary = 'done' WHERE id = 'run-1'")
        connection.execute("DELETE FROM runs")


def _ensure_tables(path: str, projection: Projection) -> None:
    read_models = store.ReadModelStore(path)
    read_models.ensure_tables(projection)
    read_models.datastore.close()


def _schema(path: str) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY name"
        ).fetchall()
