"""One CLI invocation: who is acting, when, and lazy access to the log and read models."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ocsched.adapters.settings import Settings, login_name
from ocsched.projections import views

from .output import CommandError, as_utf8

if TYPE_CHECKING:
    from ocsched.adapters.event_store import EventLog
    from ocsched.adapters.storage_errors import StorageFault
    from ocsched.domain.aggregate import EventMeta
    from ocsched.projections.store import ReadModelStore


class ConcurrentChange(CommandError):
    """Another process recorded a change to the same aggregate first."""


class StorageUnavailable(CommandError):
    """A transient storage error (a lock held by another process, a full disk, a lost
    connection) lasted longer than the command retries (`OCSCHED_STORAGE_RETRY_S`)."""


SAVE_ATTEMPTS = 10
"""How many times `save_fresh` builds and saves before a lost race is the user's error."""
NOTHING_RECORDED = "nothing was recorded"
RECORDED_NOT_PROJECTED = (
    "the change was recorded (do not run the command again), but the read models could not"
    " be brought up to date: the next command or the daemon does it"
)

T = TypeVar("T")

MIN_PREFIX = 4
"""The shortest id prefix taken for a whole id (a shorter one too easily names another)."""
ID_TABLES = {
    "job": ("jobs",),
    "run": ("runs",),
    "delivery": ("deliveries",),
    "group": ("task_tracker",),
    "message": ("messages",),
    "any": ("jobs", "runs", "dispatches", "deliveries", "approvals", "messages"),
}


class ReadOnlyStore(CommandError):
    """The store's SQLite file (or its folder) is not writable by this user: reads are
    answered from fresh read models, nothing can be recorded."""


def default_actor(settings: Settings) -> str:
    """`OCSCHED_ACTOR` (through the settings), else the OS user."""
    if settings.actor:
        return as_utf8(settings.actor)
    try:
        return as_utf8(login_name())
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


POSTGRES_EXTRA_MISSING = (
    "SCHEDULER_DB is a PostgreSQL URL but the PostgreSQL driver is not installed: run"
    " `pip install 'ocsched[postgres]'` (in a checkout, ./scripts/run installs it when"
    " SCHEDULER_DB is set, or run ./scripts/setup-venv postgres)"
)


def require_postgres_driver() -> None:
    """One clear line instead of the library's InfrastructureFactoryError when the
    `postgres` extra (psycopg) is missing (the log imports it next anyway)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise CommandError(POSTGRES_EXTRA_MISSING) from None


@dataclass
class Context:
    json: bool = False
    actor: str = ""
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    settings: Settings = field(default_factory=Settings.from_environment)
    _log: EventLog | None = None
    _store: ReadModelStore | None = None
    _views: sqlite3.Connection | None = None
    _secured: bool = False
    _read_only: bool | None = None
    storage_retry_s: float | None = None
    """How long transient storage errors are retried: None, the settings' bound (a
    command); `math.inf` until the storage is back (the daemon)."""
    on_storage_fault: Callable[[StorageFault], None] | None = None
    """Told of each transient storage error before the wait that follows it."""
    _fault_since: float | None = None
    _saved: bool = False

    def __post_init__(self) -> None:
        if not self.actor:
            self.actor = default_actor(self.settings)

    def meta(self, origin: str | None = None, cause: str | None = None) -> EventMeta:
        from ocsched.domain.aggregate import EventMeta

        return EventMeta(
            actor=self.actor,
            origin=origin or "cli",
            correlation_id=self.correlation_id,
            cause=cause,
        )

    def _secure(self) -> None:
        """Modes are enforced on every open of the store, by a read as by a write: once
        per invocation, before the first file is opened (`secure_store`)."""
        if not self._secured:
            from ocsched.adapters.settings import secure_store

            self._secured = True
            secure_store(self.settings)

    @property
    def log(self) -> EventLog:
        if self._log is None:
            from ocsched.adapters.event_store import open_event_log

            if self.settings.uses_postgres:
                require_postgres_driver()
            self._secure()
            read_only_uri = None
            if self.read_only and not self.settings.uses_postgres:
                read_only_uri = views.read_only_uri(self.settings.database)
            self._log = self._retrying(
                lambda: open_event_log(self.settings, read_only_uri), self._outcome()
            )
        return self._log

    @property
    def read_only(self) -> bool:
        """The SQLite file that holds the read models (and, without PostgreSQL, the log)
        exists and this user may not write it or its folder (a permission, a read-only
        mount). Root may write whatever the modes say, so for root it is read-only only on
        a read-only mount."""
        if self._read_only is None:
            path = self.settings.read_model_path
            folder = os.path.dirname(os.path.abspath(path))
            self._read_only = os.path.exists(path) and not (
                os.access(path, os.W_OK) and os.access(folder, os.W_OK)
            )
        return self._read_only

    def refuse_read_only(self, why: str) -> ReadOnlyStore:
        return ReadOnlyStore(
            f"{self.settings.read_model_path} is read-only for this user (the file or its"
            f" folder is not writable): {why}; make both writable, or run the command as the"
            " store's owner"
        )

    @property
    def store(self) -> ReadModelStore:
        if self._store is None:
            from ocsched.adapters.settings import prepare_private_file
            from ocsched.projections.store import ReadModelStore

            self._secure()
            path = self.settings.read_model_path

            def open_store() -> ReadModelStore:
                prepare_private_file(path)
                return ReadModelStore(path)

            self._store = self._retrying(open_store, self._outcome())
        return self._store

    def save(self, *aggregates: Any) -> None:
        """Append the aggregates' new events, then bring the read models up to date so
        the next command (in this process or another) sees them. Another writer that got
        there first (the same aggregate version) is a `ConcurrentChange`: nothing is
        written, and the command can be run again. A transient storage error is retried
        (`_retrying`): the events are taken from the aggregates once, and each attempt
        writes all of them in one transaction or none."""
        from eventsourcing.persistence import IntegrityError

        if self.read_only:
            raise self.refuse_read_only(NOTHING_RECORDED)
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        try:
            self._retrying(lambda: self.log.events.put(events), NOTHING_RECORDED)
        except IntegrityError:
            names = ", ".join(str(a.id) for a in aggregates)
            raise ConcurrentChange(
                f"{names} changed while this command ran; nothing was saved, run it again"
            ) from None
        self._saved = True
        self.catch_up()

    def save_fresh(self, build: Callable[[], list[Any]]) -> None:
        """Save what `build()` makes from the log and read models as they are now; when
        another process changed one of its aggregates first (a daemon starting the run a
        command cancels, the members of a team reporting at the same moment), build again
        from the newer state, a few times."""
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            records = build()
            if not records:
                return
            try:
                self.save(*records)
                return
            except ConcurrentChange:
                if attempt == SAVE_ATTEMPTS:
                    raise
                import random

                time.sleep(random.uniform(0, 0.01 * attempt))  # (apart from the other writers)

    def catch_up(self) -> int:
        """Bring the read models up to date, retrying transient storage errors."""
        return self._retrying(self.catch_up_once, self._outcome())

    def catch_up_once(self) -> int:
        """One attempt of `catch_up` (the daemon's writer retries on its own)."""
        from ocsched.projections.runner import catch_up

        self._close_views()
        return catch_up(self.log, self.store)

    def _outcome(self) -> str:
        return RECORDED_NOT_PROJECTED if self._saved else NOTHING_RECORDED

    def _retrying(self, action: Callable[[], T], outcome: str) -> T:
        """`action()`, tried again with backoff after each transient storage error (a lock
        held by another process, a full disk, an I/O error, a lost PostgreSQL connection)
        for `storage_retry_s` from the invocation's first such error; then one line: what
        failed and where, what became of the command (`outcome`), what to do. Any other
        error is raised at once."""
        delays: Iterator[float] | None = None
        while True:
            started = time.monotonic()
            try:
                return action()
            except StorageUnavailable:
                raise  # (from a nested attempt: the invocation's time is spent)
            except Exception as error:
                from ocsched.adapters import storage_errors  # (only when something failed)

                fault = storage_errors.storage_fault(error)
                if fault is None:
                    raise
                if delays is None:
                    delays = storage_errors.backoff()
                now = time.monotonic()
                if self._fault_since is None:
                    self._fault_since = started  # (a lock is waited for within an attempt)
                bound = self.settings.storage_retry_s
                if self.storage_retry_s is not None:
                    bound = self.storage_retry_s
                delay = next(delays)
                if now + delay > self._fault_since + bound:
                    where = storage_errors.location(
                        self.settings.database, self.settings.read_model_path, fault
                    )
                    waited = now - self._fault_since
                    line = storage_errors.describe(fault, where, outcome, waited)
                    raise StorageUnavailable(line) from error
                if self.on_storage_fault is not None:
                    self.on_storage_fault(fault)
                time.sleep(delay)

    def views(self) -> sqlite3.Connection | None:
        """A read-only connection to fresh read models; None when nothing exists yet."""
        if self._views is None:
            self._secure()
            path = self.settings.read_model_path
            same_file = path == self.settings.database
            self._views = self._retrying(
                lambda: views.open_views(path, event_table=same_file), self._outcome()
            )
            if self._views is None or not same_file:
                if not os.path.exists(self.settings.database) and same_file:
                    return None
                if self.read_only:
                    if self._views is not None:  # PostgreSQL: this host's, as they are
                        return self._views
                    raise self.refuse_read_only(
                        "its read models are behind the log and cannot be brought up to date"
                    )
                if self._views is not None and self._pushed():
                    return self._views
                self.catch_up()
                self._views = views.open_views(path, event_table=False)
        return self._views

    def _pushed(self) -> bool:
        """PostgreSQL, and a daemon on this home keeps the read models current (it
        listens to the log): reading them needs neither the driver nor a catch-up."""
        if not self.settings.uses_postgres:
            return False
        from ocsched.adapters.pg_notify import pushed

        return pushed(self.settings.home)

    def resolve_id(self, text: str, kind: str = "job") -> str:
        """The id `text` names: itself when it is one, else the one id of `kind` (job,
        run, delivery, or any: every read model with ids) it is a prefix of (at least
        `MIN_PREFIX` characters; a trailing `..`, as tables shorten ids, is dropped). An
        ambiguous prefix is an error naming the matches; no match returns `text`, so the
        caller's "not found" names what the user typed."""
        tables = ID_TABLES[kind]
        prefix = text[:-2] if text.endswith("..") else text
        connection = self.views() if len(prefix) >= MIN_PREFIX else None
        if connection is None:
            return text
        matches: list[str] = []
        for table in tables:
            # A range over the primary key's index (BINARY order), not a scan.
            rows = connection.execute(
                f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
            matches += [row["id"] for row in rows]
        if prefix in matches:
            return prefix
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
            raise CommandError(f"Ambiguous id prefix {text}: matches {shown}; give more characters")
        return text

    def _close_views(self) -> None:
        if self._views is not None:
            self._views.close()
            self._views = None

    def close(self) -> None:
        self._close_views()
        if self._log is not None:
            self._log.close()
        if self._store is not None:
            self._store.datastore.close()
