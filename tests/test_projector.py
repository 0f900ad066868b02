"""The daemon's read models' process: asked to catch up, it projects what the daemon wrote;
it outlives the signals a terminal sends the group and is replaced when it dies."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from ocsched.adapters.storage_errors import BUSY, StorageFault, storage_fault
from ocsched.commands.reactor import projector as projector_module
from ocsched.commands.reactor.projector import (
    Projector,
    ProjectorFailed,
    _read_count,
    _reply_to,
)
from ocsched.projections import views

from .test_reactions import Store, due_job, fire


@pytest.fixture
def home(tmp_path):
    """A store, and a read models' process on it."""
    store = Store(tmp_path)
    projector = Projector(store.ctx.settings, store.ctx.catch_up_once)
    yield store, projector
    projector.close()
    store.ctx.close()


def decided(store: Store) -> str:
    """A run decided and written, not yet in the read models (as the daemon's writer does)."""
    (run,) = fire(store, due_job(store)).records
    store.ctx.log.events.put(run.collect_events())
    return run.id


def test_the_read_models_process_projects_what_the_daemon_wrote(home):
    store, projector = home
    run_id = decided(store)
    assert views.run(store.db(), run_id) is None
    assert projector.catch_up_once() == 1
    assert views.run(store.db(), run_id)["status"] == "pending"
    assert projector.catch_up_once() == 0  # exactly once


def test_it_ends_with_the_daemons_pipe(home):
    _, projector = home
    process = projector._process
    projector.close()
    assert process.returncode == 0


def test_a_terminals_signals_do_not_stop_it(home):
    store, projector = home
    projector.catch_up_once()  # (started and ready)
    pid = projector.pid
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    run_id = decided(store)
    assert projector.catch_up_once() == 1
    assert projector.pid == pid
    assert views.run(store.db(), run_id) is not None


def test_a_process_that_died_is_replaced_at_the_next_catch_up(home, caplog):
    store, projector = home
    projector.catch_up_once()
    first = projector.pid
    os.kill(first, signal.SIGKILL)
    projector._process.wait()
    run_id = decided(store)
    with caplog.at_level(logging.WARNING, logger="ocsched"):
        assert projector.catch_up_once() == 1
    assert projector.pid != first
    assert views.run(store.db(), run_id) is not None
    assert "the read models' process ended" in caplog.text


def test_its_transient_storage_errors_are_retried_by_the_daemon_as_its_own():
    import sqlite3

    reply = _reply_to(sqlite3.OperationalError("database is locked"))
    with pytest.raises(Exception) as raised:
        _read_count(reply)
    assert storage_fault(raised.value) == StorageFault(BUSY, "database is locked")


def test_its_other_errors_fail_the_catch_up_with_their_words():
    with pytest.raises(ProjectorFailed, match="ValueError: no such projection"):
        _read_count(_reply_to(ValueError("no such projection")))


def test_a_process_that_cannot_run_leaves_catching_up_to_the_daemon(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(projector_module, "MODULE", "ocsched.no_such_module")
    store = Store(tmp_path)
    projector = Projector(store.ctx.settings, store.ctx.catch_up_once)
    try:
        run_id = decided(store)
        with caplog.at_level(logging.WARNING, logger="ocsched"):
            assert projector.catch_up_once() == 1  # in the daemon's own process
        assert projector.pid is None
        assert views.run(store.db(), run_id) is not None
        assert "cannot run" in caplog.text
        assert projector.catch_up_once() == 0
    finally:
        projector.close()
        store.ctx.close()
