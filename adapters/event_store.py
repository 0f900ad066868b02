"""The append-only event log: an eventsourcing Application on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, InternalError, ProgrammingError

from .settings import Settings, prepare_private_file

MAPPER_TOPIC = "ocsched.adapters.msgspec_mapper:MsgspecMapper"


class EventLog(Application):
    """Saves aggregates' events and reads them back; the only writer of the log.

    `max_position` and `read_after` are what projections read (their `EventSource`)."""

    name = "ocsched"

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def read_after(
        self, position: int, limit: int, topics: Collection[str]
    ) -> list[tuple[int, str, Any]]:
        """Up to `limit` events after `position`, in log order, as (notification id, topic,
        event). An event whose topic is not in `topics` is not decoded: its event is None."""
        decoders: dict[str, Any] = {}
        decoder = self.mapper.decoder  # type: ignore[attr-defined]  # MsgspecMapper
        page = []
        for notification_id, topic, originator_id, version, state in self._stored_after(
            position, limit
        ):
            decode = decoders.get(topic)
            if decode is None:
                decode = decoders[topic] = decoder(topic) if topic in topics else _not_decoded
            page.append((notification_id, topic, decode(originator_id, version, state)))
        return page

    def _stored_after(self, position: int, limit: int) -> list[tuple]:
        """(notification id, topic, originator id, version, state) rows after `position`.
        On SQLite as plain rows, without building the library's `Notification` objects
        (a third of the cost of reading)."""
        from eventsourcing.sqlite import SQLiteApplicationRecorder

        recorder = self.recorder
        if (
            isinstance(recorder, SQLiteApplicationRecorder)
            and recorder.datastore.originator_id_type == "text"
        ):
            statement = (
                "SELECT rowid, topic, originator_id, originator_version, state"
                f" FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.sqlite_cursor.row_factory = None
                cursor.execute(statement, (position, limit))
                return cursor.fetchall()
        notifications = recorder.select_notifications(
            start=position, limit=limit, inclusive_of_start=False
        )
        return [
            (n.id, n.topic, n.originator_id, n.originator_version, n.state) for n in notifications
        ]


def _not_decoded(originator_id: Any, version: int, state: bytes) -> None:
    return None


def persistence_env(settings: Settings) -> dict[str, str]:
    from .cipher import cipher_env

    env = {"MAPPER_TOPIC": MAPPER_TOPIC, "ORIGINATOR_ID_TYPE": "text"}
    if settings.uses_postgres:
        env.update(postgres_env(settings.database))
    else:
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=settings.database)
    # Audit (issue 14): each event's hash link written with it (chain.py); states
    # encrypted when a key is set (cipher.py).
    recorder = "ChainedPostgresRecorder" if settings.uses_postgres else "ChainedSQLiteRecorder"
    env["APPLICATION_RECORDER_TOPIC"] = f"ocsched.adapters.chain:{recorder}"
    env.update(cipher_env(settings.cipher_key, settings.cipher_old_keys))
    return env


def postgres_env(url: str) -> dict[str, str]:
    """`postgresql://user:password@host:port/dbname` as the library's POSTGRES_* settings."""
    from urllib.parse import unquote, urlsplit  # (~3 ms: not for SQLite)

    parts = urlsplit(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # One connection, opened on first use and reused by every statement; more only
        # while the daemon's threads need them at once (the library opens 5 by default,
        # a server process each, for every command).
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "9",
    }
    return env


def open_event_log(
    settings: Settings, read_only_uri: str | None = None, *, check_key: bool = True
) -> EventLog:
    """The log of `settings.database`; with `read_only_uri` (SQLite), opened through that
    URI without creating tables: a store this user may read but not write. `check_key`:
    refuse a log whose newest event is encrypted when no cipher key is set."""
    if read_only_uri is not None and not settings.uses_postgres:
        env = persistence_env(settings)
        env.update(SQLITE_DBNAME=read_only_uri, CREATE_TABLE="false")
        return EventLog(env=env)
    if not settings.uses_postgres:
        prepare_private_file(settings.database)
    log = _made(settings)
    if check_key and not settings.cipher_key:
        from .cipher import require_key

        try:
            require_key(log)  # encrypted events and no key: one clear error now
        except Exception:
            log.close()
            raise
    return log


def _made(settings: Settings, attempts: int = 8) -> EventLog:
    """The log, its tables made if missing. Hosts making a new PostgreSQL log's tables at
    once collide in the catalog (CREATE ... IF NOT EXISTS is not atomic there: a unique
    violation, "tuple concurrently updated", "relation already exists"): the next
    attempt finds them made."""
    import random
    import time

    for _ in range(attempts - 1):
        try:
            return EventLog(env=persistence_env(settings))
        except (IntegrityError, InternalError, ProgrammingError):
            if not settings.uses_postgres:
                raise
            time.sleep(random.uniform(0.01, 0.1))
    return EventLog(env=persistence_env(settings))
