"""The daemon's read models' process: asked to catch up, it projects what the daemon wrote;
it outlives the signals a terminal sends the group and is replaced when it dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

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
    """A store, and a read models' process on it that has said it is ready."""
    store = Store(tmp_path)
    projector = Projector(store.ctx.settings, in_process=not_in_the_daemon)
    ready(projector)
    yield store, projector
    projector.close()
    store.ctx.close()


def not_in_the_daemon() -> int:
    raise AssertionError("caught up in the daemon's process, not in the read models' process")


def ready(projector: Projector) -> None:
    deadline = time.monotonic() + 30
    while not (projector._process and projector._child_ready(projector._process)):
        assert time.monotonic() < deadline, "the read models' process never said it was ready"
        time.sleep(0.01)


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


def test_it_is_ready_only_once_it_has_caught_up(tmp_path):
    """Its first catch-up opens the connections (~0.2 s): done before `ready`, none the
    daemon waits for pays for it."""
    store = Store(tmp_path)
    run_id = decided(store)
    projector = Projector(store.ctx.settings, in_process=lambda: 0)
    try:
        ready(projector)
        assert views.run(store.db(), run_id)["status"] == "pending"
        assert projector.catch_up_once() == 0
    finally:
        projector.close()
        store.ctx.close()


@pytest.mark.parametrize("gone", ["before it is ready", "while it catches up"])
def test_a_daemon_killed_meanwhile_ends_it_quietly(tmp_path, gone):
    """A killed daemon reads no more answers: the child's next one ends it, with no
    traceback in the daemon's log (the child's stderr is the daemon's)."""
    store = Store(tmp_path)
    environment = {**os.environ, **projector_module._store_environment(store.ctx.settings)}
    child = subprocess.Popen(
        [sys.executable, "-m", projector_module.MODULE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    try:
        if gone == "while it catches up":
            assert child.stdout.readline() == projector_module.READY
        child.stdout.close()
        child.stdin.write(b"catch-up\n")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        assert child.stderr.read() == b""
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
        store.ctx.close()


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


def test_a_process_that_died_is_replaced_and_meanwhile_the_daemon_catches_up(home, caplog):
    store, projector = home
    projector.catch_up_once()
    first = projector.pid
    os.kill(first, signal.SIGKILL)
    projector._process.wait()
    run_id = decided(store)
    projector._in_process = store.ctx.catch_up_once
    with caplog.at_level(logging.WARNING, logger="ocsched"):
        assert projector.catch_up_once() == 1  # in the daemon's process, not waiting
    assert views.run(store.db(), run_id) is not None
    assert "the read models' process ended" in caplog.text
    projector._in_process = not_in_the_daemon
    ready(projector)
    assert projector.pid != first
    second = decided(store)
    assert projector.catch_up_once() == 1
    assert views.run(store.db(), second) is not None


def test_until_the_process_is_ready_the_daemon_catches_up_itself(home):
    store, _ = home
    projector = Projector(store.ctx.settings, in_process=store.ctx.catch_up_once)
    try:
        run_id = decided(store)
        assert projector.catch_up_once() == 1  # at once: the child is still importing
        assert not projector._ready
        assert views.run(store.db(), run_id) is not None
    finally:
        projector.close()


def test_its_transient_storage_errors_are_retried_by_the_daemon_as_its_own():
    import sqlite3

    reply = _reply_to(sqlite3.OperationalError("database is locked"))
    with pytest.raises(Exception) as raised:
        _read_count(reply)
    assert storage_fault(raised.value) == StorageFault(BUSY, "database is locked")


def test_its_other_errors_fail_the_catch_up_with_their_words():
    with pytest.raises(ProjectorFailed, match="ValueError: no such projection"):
        _read_count(_reply_to(ValueError("no such projection")))


def test_a_process_that_cannot_run_leaves_catching_up_to_the_daemon(home, monkeypatch, caplog):
    store, _ = home
    monkeypatch.setattr(projector_module, "MODULE", "ocsched.no_such_module")
    projector = Projector(store.ctx.settings, in_process=store.ctx.catch_up_once)
    try:
        run_id = decided(store)
        read = 0
        deadline = time.monotonic() + 30
        with caplog.at_level(logging.WARNING, logger="ocsched"):
            while projector.pid is not None:  # started, ended, started again, ended
                assert time.monotonic() < deadline
                read += projector.catch_up_once()
                time.sleep(0.01)
        assert read == 1  # each catch-up in the daemon's own process meanwhile
        assert views.run(store.db(), run_id) is not None
        assert "ended as it started" in caplog.text
        assert "cannot run" in caplog.text
        assert projector.catch_up_once() == 0
    finally:
        projector.close()
