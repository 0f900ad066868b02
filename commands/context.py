"""One CLI invocation: who is acting, when, and lazy access to the log and read models."""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocsched.adapters.settings import Settings
from ocsched.projections import views

from .output import CommandError, as_utf8

if TYPE_CHECKING:
    from ocsched.adapters.event_store import EventLog
    from ocsched.domain.aggregate import EventMeta
    from ocsched.projections.store import ReadModelStore


class ConcurrentChange(CommandError):
    """Another process recorded a change to the same aggregate first."""


class ReadOnlyStore(CommandError):
    """The store's SQLite file (or its folder) is not writable by this user: reads are
    answered from fresh read models, nothing can be recorded."""


def default_actor(settings: Settings) -> str:
    """`OCSCHED_ACTOR` (through the settings), else the OS user."""
    if settings.actor:
        return as_utf8(settings.actor)
    try:
        import getpass

        return as_utf8(getpass.getuser())
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


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

            self._secure()
            read_only_uri = None
            if self.read_only and not self.settings.uses_postgres:
                read_only_uri = views.read_only_uri(self.settings.database)
            self._log = open_event_log(self.settings, read_only_uri)
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
            prepare_private_file(self.settings.read_model_path)
            self._store = ReadModelStore(self.settings.read_model_path)
        return self._store

    def save(self, *aggregates: Any) -> None:
        """Append the aggregates' new events, then bring the read models up to date so
        the next command (in this process or another) sees them. Another writer that got
        there first (the same aggregate version) is a `ConcurrentChange`: nothing is
        written, and the command can be run again."""
        from eventsourcing.persistence import IntegrityError

        if self.read_only:
            raise self.refuse_read_only("nothing was recorded")
        try:
            self.log.save(*aggregates)
        except IntegrityError:
            names = ", ".join(str(a.id) for a in aggregates)
            raise ConcurrentChange(
                f"{names} changed while this command ran; nothing was saved, run it again"
            ) from None
        self.catch_up()

    def catch_up(self) -> int:
        from ocsched.projections.runner import catch_up

        self._close_views()
        return catch_up(self.log, self.store)

    def views(self) -> sqlite3.Connection | None:
        """A read-only connection to fresh read models; None when nothing exists yet."""
        if self._views is None:
            self._secure()
            path = self.settings.read_model_path
            same_file = not self.settings.uses_postgres
            self._views = views.open_views(path, event_table=same_file)
            if self._views is None or not same_file:
                if not os.path.exists(self.settings.database) and same_file:
                    return None
                if self.read_only:
                    if self._views is not None:  # PostgreSQL: this host's, as they are
                        return self._views
                    raise self.refuse_read_only(
                        "its read models are behind the log and cannot be brought up to date"
                    )
                self.catch_up()
                self._views = views.open_views(path, event_table=False)
        return self._views

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
