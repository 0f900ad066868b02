"""Storage faults (issue 9, items 1 and 2): the start-up race on a new database, commands
that retry a lock or a full disk for a bounded time and then say what to do, a daemon
writer that retries until the storage is back, an outcome recorded again when its save
failed; then the chaos script's small versions (`scripts/chaos/storage_faults.py`)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from ocsched.adapters import storage_errors
from ocsched.adapters.event_store import open_event_log
from ocsched.adapters.settings import Settings
from ocsched.adapters.storage_errors import BUSY, CONNECTION, FULL, IO, storage_fault
from ocsched.commands.reactor import handlers as handlers_module
from ocsched.commands.reactor.handlers import Handlers
from ocsched.commands.reactor.writer import EventWriter
from ocsched.domain.reactions.outcome import Outcome
from ocsched.projections import views
from ocsched.projections.runner import all_projections
from ocsched.projections.store import ReadModelStore

from .conftest import load_script, shell_job
from .test_reactions import OWNER, Store, due_job, fire, started


def sqlite_error(name: str, message: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorname = name  # type: ignore[attr-defined]
    return error


def disk_full() -> OperationalError:
    """What the event store raises when SQLite finds the disk full."""
    try:
        raise sqlite_error("SQLITE_FULL", "database or disk is full")
    except sqlite3.OperationalError as error:
        try:
            raise OperationalError(error) from error
        except OperationalError as wrapped:
            return wrapped


def hold_write_lock(database: str, seconds: float) -> threading.Thread:
    """Another connection holds SQLite's write lock (`BEGIN IMMEDIATE`) for `seconds`."""
    locked = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(database, isolation_level=None, timeout=30)
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return thread


# Which errors are transient


def test_transient_storage_errors_are_told_from_the_rest():
    assert storage_fault(disk_full()) == storage_errors.StorageFault(
        FULL, "database or disk is full"
    )
    kinds = {
        "SQLITE_BUSY": BUSY,
        "SQLITE_BUSY_SNAPSHOT": BUSY,
        "SQLITE_LOCKED": BUSY,
        "SQLITE_IOERR_WRITE": IO,
    }
    for name, kind in kinds.items():
        fault = storage_fault(sqlite_error(name, "x"))
        assert fault is not None and fault.kind == kind
    for name in ("SQLITE_CORRUPT", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_ERROR"):
        assert storage_fault(sqlite_error(name, "x")) is None
    assert storage_fault(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert storage_fault(OSError(28, "No space left on device")).kind == FULL  # type: ignore[union-attr]
    assert storage_fault(ValueError("database is locked")) is None


def test_postgres_errors_lost_connections_and_locks_are_transient_a_refused_login_is_not():
    psycopg = pytest.importorskip("psycopg")
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    try:
        raise OperationalError(str(lost)) from lost
    except OperationalError as wrapped:
        fault = storage_fault(wrapped)
    assert fault is not None and (fault.kind, fault.postgres) == (CONNECTION, True)
    assert storage_fault(psycopg.errors.LockNotAvailable("lock")).kind == BUSY  # type: ignore[union-attr]
    assert storage_fault(psycopg.errors.DiskFull("full")).kind == FULL  # type: ignore[union-attr]
    assert storage_fault(psycopg.errors.InvalidPassword("no")) is None
    where = storage_errors.location("postgresql://u:secret@db.example:5433/ocs", "rm.db", fault)
    assert where == "PostgreSQL at db.example:5433/ocs"


# Item 1: the start-up race on a new database


def test_creating_read_model_tables_waits_for_a_lock_held_elsewhere(tmp_path):
    """A new database, its write lock held by another process for a moment: the tables are
    created once it is free. (They were created in a transaction that read first: in WAL
    mode such a transaction cannot wait for the lock, and failed at once with "database is
    locked", which stopped a daemon starting beside a command.)"""
    database = str(tmp_path / "ocsched.db")
    open_event_log(Settings(home=tmp_path, database=database)).close()
    store = ReadModelStore(database)
    holder = hold_write_lock(database, 0.5)
    started_at = time.monotonic()
    try:
        for projection in all_projections():
            store.ensure_tables(projection)
    finally:
        holder.join()
    assert time.monotonic() - started_at > 0.3  # it waited for the lock
    connection = sqlite3.connect(database)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "runs", "labels"} <= tables
    store.datastore.close()


def test_an_empty_log_whose_read_models_are_not_made_yet_is_not_fresh(tmp_path):
    """A command reading while a new daemon creates the tables: it catches up itself
    instead of querying a table that is not there yet ("no such table: labels")."""
    database = str(tmp_path / "ocsched.db")
    open_event_log(Settings(home=tmp_path, database=database)).close()
    assert views.open_views(database) is None
    store = ReadModelStore(database)
    for projection in all_projections()[:2]:
        store.ensure_tables(projection)
    assert views.open_views(database) is None
    from ocsched.projections.runner import catch_up

    log = open_event_log(Settings(home=tmp_path, database=database))
    catch_up(log, store)
    connection = views.open_views(database)
    assert connection is not None
    assert connection.execute("SELECT count(*) AS n FROM labels").fetchone()["n"] == 0
    connection.close()
    log.close()
    store.datastore.close()


# Commands: retried for a bounded time, then one line


def test_a_command_waits_out_a_lock_longer_than_sqlites_busy_timeout(scheduler):
    first = scheduler.add(shell_job(name="before the lock"))
    holder = hold_write_lock(str(scheduler.db_path), 2.5)
    try:
        started_at = time.monotonic()
        spec = json.dumps(shell_job(name="after the lock"))
        env = {"SQLITE_LOCK_TIMEOUT": "1"}  # the event store's busy timeout: 1 s an attempt
        job = scheduler.ok("--json", "jobs", "add", spec, env=env).json["job"]
        waited = time.monotonic() - started_at
    finally:
        holder.join()
    assert waited > 1.5
    listed = {j["id"] for j in scheduler.ok("jobs", "list", "--json").json}
    assert listed == {first["id"], job["id"]}


def test_a_command_retries_a_full_disk_and_records_once(scheduler, monkeypatch):
    from eventsourcing.persistence import EventStore

    first = scheduler.add(shell_job(name="before the disk filled"))
    put = EventStore.put
    failures = [disk_full(), disk_full()]

    def flaky_put(self: Any, events: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return put(self, events, **kwargs)

    monkeypatch.setattr(EventStore, "put", flaky_put)
    job = scheduler.add(shell_job(name="after the disk"))
    assert failures == []
    listed = {j["id"] for j in scheduler.ok("jobs", "list", "--json").json}
    assert listed == {first["id"], job["id"]}


def test_a_command_gives_up_after_its_retry_time_with_what_where_and_what_to_do(
    scheduler, monkeypatch
):
    from eventsourcing.persistence import EventStore

    first = scheduler.add(shell_job(name="before the disk filled"))

    def full_put(self: Any, events: Any, **kwargs: Any) -> Any:
        raise disk_full()

    monkeypatch.setattr(EventStore, "put", full_put)
    env = {"OCSCHED_STORAGE_RETRY_S": "0.5"}
    started_at = time.monotonic()
    result = scheduler.run("jobs", "add", json.dumps(shell_job(name="x")), env=env)
    assert 0.1 < time.monotonic() - started_at < 3
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Storage unavailable: no space left for {scheduler.db_path}")
    assert "nothing was recorded" in line and "free space on its filesystem" in line
    as_json = scheduler.run("--json", "jobs", "add", json.dumps(shell_job(name="x")), env=env)
    assert json.loads(as_json.stdout)["error"].startswith("Storage unavailable: no space")
    monkeypatch.undo()
    assert [j["id"] for j in scheduler.ok("jobs", "list", "--json").json] == [first["id"]]


# The daemon's writer and outcomes


def test_the_daemon_writer_retries_a_transient_failure_until_the_storage_is_back(tmp_path, caplog):
    store = Store(tmp_path)
    job = due_job(store)
    plan = fire(store, job)
    writer = EventWriter(store.ctx)
    put = writer._put
    failures = [disk_full() for _ in range(4)]

    def flaky_put(events: list[Any]) -> tuple[int, int]:
        if failures:
            raise failures.pop()
        return put(events)

    writer._put = flaky_put  # type: ignore[method-assign]

    async def scenario() -> None:
        await writer.save(*plan.records)
        await writer.settled()

    store.ctx._close_views()  # (opened on this thread; the writer catches up on another)
    with caplog.at_level(logging.INFO, logger="ocsched"):
        asyncio.run(scenario())
    assert failures == []
    (run,) = plan.records
    assert store.ctx.log.repository.get(run.id).version == 1  # written once, whole
    assert views.run(store.db(), run.id)["status"] == "pending"
    messages = [record.getMessage() for record in caplog.records]
    assert sum("storage unavailable" in m for m in messages) == 1, messages
    assert any("storage available again" in m for m in messages), messages
    store.ctx.close()


def test_a_stopping_daemon_gives_up_on_a_save_that_keeps_failing(tmp_path):
    store = Store(tmp_path)
    plan = fire(store, due_job(store))
    writer = EventWriter(store.ctx)

    def full_put(events: list[Any]) -> tuple[int, int]:
        raise disk_full()

    writer._put = full_put  # type: ignore[method-assign]

    async def scenario() -> BaseException | None:
        writer.give_up_after(0.3)
        try:
            await writer.save(*plan.records)
        except Exception as error:  # noqa: BLE001
            return error
        return None

    assert storage_fault(asyncio.run(scenario())) is not None
    store.ctx.close()


def test_an_outcome_whose_save_failed_is_recorded_again_not_left_active(tmp_path, monkeypatch):
    """A run's `Run.Finished` that could not be saved (here an error the writer does not
    retry) is made again from the log: the run is never left active while its daemon
    lives, which would skip every later slot of its job as busy."""
    monkeypatch.setattr(handlers_module, "RECORD_AGAIN_S", 0.05)
    store = Store(tmp_path)
    job = due_job(store)
    run = started(store, fire(store, job))
    writer = EventWriter(store.ctx)
    put = writer._put
    failures = [RuntimeError("not a storage fault")]

    def failing_once(events: list[Any]) -> tuple[int, int]:
        if failures:
            raise failures.pop()
        return put(events)

    writer._put = failing_once  # type: ignore[method-assign]
    store.ctx._close_views()  # (opened on this thread; the writer catches up on another)
    read_models = views.open_views(store.ctx.settings.database, event_table=False)
    assert read_models is not None

    async def scenario() -> None:
        handlers = Handlers(
            writer=writer,
            load=store.ctx.log.repository.get,
            db=lambda: read_models,
            owner=OWNER,
            settings=store.ctx.settings.reactor,
            executors={},
            sender=None,  # type: ignore[arg-type]
            gateway_up=lambda: True,
            watch_group=lambda group, running: None,
            on_defer=lambda timer, seconds: None,
            on_change=lambda: None,
            stopping=asyncio.Event(),
        )
        await handlers.conclude(run, job, Outcome("ok", {}, "done"))
        await writer.settled()

    asyncio.run(scenario())
    read_models.close()
    assert failures == []
    assert store.ctx.log.repository.get(run.id).is_finished
    assert views.run(store.db(), run.id)["status"] == "ok"
    store.ctx.close()


# The chaos script, small


def chaos_script():
    return load_script("scripts/chaos/storage_faults.py")


def test_the_chaos_start_up_race_10_daemon_starts_with_concurrent_commands():
    chaos = chaos_script()
    result = chaos.startup_race(10, seed=3, max_offset=1.0)
    assert chaos.failures("race", result) == [], result["examples"]


def test_the_chaos_lock_held_3_s_while_jobs_are_due_every_second():
    chaos = chaos_script()
    result = chaos.lock_fault(3.0, jobs=3, observe_s=2.5, busy_timeout_s=1)
    assert chaos.failures("lock", result) == [], result


def test_the_chaos_full_disk_for_3_s_while_jobs_are_due_every_second():
    chaos = chaos_script()
    result = chaos.disk_fault(3.0, jobs=3, observe_s=2.5)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert chaos.failures("disk", result) == [], result
