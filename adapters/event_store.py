"""The append-only event log: an eventsourcing Application on SQLite or PostgreSQL."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from eventsourcing.application import Application

from .settings import Settings, prepare_private_file

MAPPER_TOPIC = "ocsched.adapters.msgspec_mapper:MsgspecMapper"


class EventLog(Application):
    """Saves aggregates' events and reads them back; the only writer of the log."""

    name = "ocsched"


def persistence_env(settings: Settings) -> dict[str, str]:
    env = {"MAPPER_TOPIC": MAPPER_TOPIC, "ORIGINATOR_ID_TYPE": "text"}
    if settings.uses_postgres:
        env.update(postgres_env(settings.database))
    else:
        env.update(PERSISTENCE_MODULE="eventsourcing.sqlite", SQLITE_DBNAME=settings.database)
    return env


def postgres_env(url: str) -> dict[str, str]:
    """`postgresql://user:password@host:port/dbname` as the library's POSTGRES_* settings."""
    parts = urlsplit(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
    }
    return env


def open_event_log(settings: Settings) -> EventLog:
    if not settings.uses_postgres:
        prepare_private_file(settings.database)
    return EventLog(env=persistence_env(settings))
