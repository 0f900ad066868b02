"""Storage errors that pass: which they are, how long to wait before trying again, what
to tell the user.

A transient storage error is one that a later attempt of the same work can get past with
nothing changed on our side: the SQLite file locked by another process (SQLITE_BUSY,
SQLITE_LOCKED), a full disk (SQLITE_FULL, ENOSPC), an I/O error (SQLITE_IOERR, EIO), a
PostgreSQL connection lost or refused, a PostgreSQL lock or serialization failure. A failed
transaction wrote nothing, so the same events can be written again. The CLI retries for a
few seconds and then prints `describe`'s one line; the daemon retries until the storage is
back, and says so in its log (`Outage`).
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

BUSY, FULL, IO, CONNECTION = "busy", "full", "io", "connection"

_SQLITE_KINDS = (
    ("SQLITE_BUSY", BUSY),
    ("SQLITE_LOCKED", BUSY),
    ("SQLITE_PROTOCOL", BUSY),
    ("SQLITE_FULL", FULL),
    ("SQLITE_IOERR", IO),
)
_SQLITE_MESSAGES = (
    ("database is locked", BUSY),
    ("database table is locked", BUSY),
    ("database or disk is full", FULL),
    ("disk i/o error", IO),
)
_ERRNO_KINDS = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EIO: IO}

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0


@dataclass(frozen=True)
class StorageFault:
    """A transient storage error: `kind` (busy, full, io, connection), the driver's own
    words, and whether it came from PostgreSQL (else from a SQLite file)."""

    kind: str
    detail: str
    postgres: bool = False


class ReportedFault(Exception):
    """A transient storage error that another process met and reported (the daemon's read
    models' process)."""

    def __init__(self, fault: StorageFault) -> None:
        super().__init__(fault.detail)
        self.fault = fault


def storage_fault(error: BaseException | None) -> StorageFault | None:
    """The transient storage error behind `error` (itself, or what the event store wrapped),
    or None when it is not one."""
    seen: set[int] = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ReportedFault):
            return current.fault
        if isinstance(current, sqlite3.Error):
            return _sqlite_fault(current)
        if isinstance(current, OSError) and current.errno in _ERRNO_KINDS:
            return StorageFault(_ERRNO_KINDS[current.errno], str(current))
        psycopg = sys.modules.get("psycopg")
        if psycopg is not None and isinstance(current, psycopg.Error):
            return _postgres_fault(current, psycopg)
        current = current.__cause__ or current.__context__
    return None


def _sqlite_fault(error: sqlite3.Error) -> StorageFault | None:
    name = getattr(error, "sqlite_errorname", "") or ""
    for prefix, kind in _SQLITE_KINDS:
        if name.startswith(prefix):
            return StorageFault(kind, str(error))
    if not name:  # raised by the module itself, with SQLite's message
        text = str(error).lower()
        for message, kind in _SQLITE_MESSAGES:
            if message in text:
                return StorageFault(kind, str(error))
    return None


def _postgres_fault(error: BaseException, psycopg: object) -> StorageFault | None:
    """PostgreSQL: a full disk or out of resources (SQLSTATE class 53), a lock not granted
    or a transaction rolled back by the server (55P03, class 40), a connection refused, lost
    or timed out (psycopg's OperationalError otherwise); not a refused login (class 28) or
    a missing database (3D000), which waiting does not cure."""
    state = getattr(error, "sqlstate", None) or ""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if state.startswith("53"):
        return StorageFault(FULL, detail, postgres=True)
    if state == "55P03" or state.startswith("40"):
        return StorageFault(BUSY, detail, postgres=True)
    if state.startswith("28") or state == "3D000":
        return None
    if isinstance(error, psycopg.OperationalError):  # type: ignore[attr-defined]
        return StorageFault(CONNECTION, detail, postgres=True)
    return None


def backoff(first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> Iterator[float]:
    """Delays before each next attempt: doubling from `first` up to `cap`, each with up to
    half of it taken off at random, so processes that failed together do not retry
    together."""
    import random  # only a retry needs it; every command imports this module

    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(cap, delay * 2)


def location(database: str, read_models: str, fault: StorageFault) -> str:
    """Where the fault is: PostgreSQL's host, port and database (never its password), else
    the SQLite file."""
    if not fault.postgres:
        return read_models
    from urllib.parse import urlsplit

    parts = urlsplit(database)
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL at {parts.hostname or '127.0.0.1'}{port}{parts.path or '/postgres'}"


_WHAT = {
    BUSY: "{where} is locked by another process",
    FULL: "no space left for {where}",
    IO: "I/O error on {where}",
    CONNECTION: "cannot reach {where}",
}
_TODO = {
    BUSY: "wait for the other process to finish (`fuser {where}` names it), then try again",
    FULL: "free space on its filesystem (`df {where}`), then try again",
    IO: "check the disk (`dmesg`), then try again",
    CONNECTION: "check that the server is up and reachable (SCHEDULER_DB), then try again",
}


def describe(fault: StorageFault, where: str, outcome: str, waited_s: float | None = None) -> str:
    """One line: what failed and where, for how long it was retried, what became of the
    command (`outcome`), what to do."""
    what = _WHAT[fault.kind].format(where=where)
    todo = _TODO[fault.kind].format(where=where)
    if fault.postgres and fault.kind == BUSY:
        what, todo = f"{where} refused a lock", "try again"
    waited = f", still after {waited_s:.0f} s of retries" if waited_s is not None else ""
    return f"Storage unavailable: {what} ({fault.detail}){waited}; {outcome}; {todo}"


class Outage:
    """A storage outage as the daemon's log tells it: a warning when it starts (or its
    kind changes), a reminder every `remind_s` while it lasts, a line when it ends."""

    def __init__(self, log: logging.Logger, doing: str, remind_s: float = 60.0) -> None:
        self.log = log
        self.doing = doing
        self.remind_s = remind_s
        self.began: float | None = None
        self._told_at = 0.0
        self._told: StorageFault | None = None

    def fault(self, fault: StorageFault, waiting: str = "", since: float | None = None) -> None:
        """`since`: when the failed attempt began (monotonic), if it waited for a lock."""
        now = time.monotonic()
        if self.began is None:
            self.began = now if since is None else since
        kind_changed = self._told is None or self._told.kind != fault.kind
        if not kind_changed and now - self._told_at < self.remind_s:
            return
        lasted = f" for {now - self.began:.0f} s" if now - self.began >= 1 else ""
        self.log.warning(
            "%s: storage unavailable%s (%s: %s)%s; retrying",
            self.doing,
            lasted,
            fault.kind,
            fault.detail,
            f", {waiting}" if waiting else "",
        )
        self._told, self._told_at = fault, now

    def ended(self) -> None:
        if self.began is not None:
            self.log.info(
                "%s: storage available again after %.1f s",
                self.doing,
                time.monotonic() - self.began,
            )
        self.began, self._told = None, None
