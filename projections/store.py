"""The SQLite file that holds read models and their tracking positions.

Rows and the tracking position of a page of events are written in one transaction
(the library's single-row tracking refuses a position that does not move forward), so
each event is applied exactly once even with several processes catching up at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)

from .projection import Projection
from .rows import Delete, KeepNewest, RowChange, Update, Upsert

VERSIONS_TABLE = "read_model_versions"


class ReadModelConnectionPool(SQLiteConnectionPool):
    """The library's pool, with a real statement cache and a larger page cache.

    The library connects with `cached_statements=True`, a cache of one statement, so a
    projection's handful of alternating statements would be recompiled on every event.
    """

    def _create_connection(self) -> SQLiteConnection:
        connection = sqlite3.connect(
            self.db_name,
            uri=True,
            check_same_thread=False,
            isolation_level=None,
            cached_statements=256,
            timeout=self.lock_timeout or 5,
        )
        if not self.is_sqlite_memory_mode:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA cache_size=-65536")
        # Read models can be rebuilt from the log, and the tracking position commits with
        # the rows, so losing the newest commit in a power cut loses nothing: skip the fsync.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)


class ReadModelStore(SQLiteTrackingRecorder):
    def __init__(self, path: str) -> None:
        datastore = SQLiteDatastore(db_name=path, originator_id_type="text")
        datastore.pool.close()
        datastore.pool = ReadModelConnectionPool(db_name=path)
        super().__init__(datastore)
        self.create_table()
        self._ensured: set[str] = set()

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (name TEXT PRIMARY KEY, version INTEGER)",
        ]

    def ensure_tables(self, projection: Projection) -> None:
        """Create the projection's tables; drop and recreate them when their layout changed.
        Checked once per store (a process), not on every catch-up."""
        if projection.name in self._ensured:
            return
        self._ensured.add(projection.name)
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"SELECT version FROM {VERSIONS_TABLE} WHERE name = ?", (projection.name,)
            )
            row = cursor.fetchone()
            if row and row[0] == projection.version:
                return
            self._drop(cursor, projection)
            import sqlite_utils

            projection.create_tables(_sqlite_utils_view(cursor, sqlite_utils))
            cursor.execute(
                f"INSERT OR REPLACE INTO {VERSIONS_TABLE} VALUES (?, ?)",
                (projection.name, projection.version),
            )

    def drop(self, projection: Projection) -> None:
        """Drop the projection's tables and forget its position and layout version."""
        self._ensured.discard(projection.name)
        with self.datastore.transaction(commit=True) as cursor:
            self._drop(cursor, projection)
            cursor.execute(f"DELETE FROM {VERSIONS_TABLE} WHERE name = ?", (projection.name,))

    def _drop(self, cursor: SQLiteCursor, projection: Projection) -> None:
        for table in projection.tables:
            cursor.execute(f"DROP TABLE IF EXISTS [{table}]")
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (projection.name,))

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0

    def apply(self, projections: list[Projection], read_page: Any) -> int:
        """Apply the next page of events to every projection behind the log, rows and new
        positions in one transaction. `read_page(position)` returns (notification_id,
        event or None) pairs after `position`; None marks an event no projection handles.
        Returns how many events were read (0 when all are up to date)."""
        names = [p.name for p in projections]
        with self.datastore.transaction(commit=True) as cursor:
            # Writing first takes the write lock, so the positions read next are current.
            cursor.executemany(
                "INSERT INTO tracking VALUES (?, 0) ON CONFLICT DO NOTHING", [(n,) for n in names]
            )
            marks = ",".join("?" for _ in names)
            cursor.execute(
                "SELECT application_name, notification_id FROM tracking"
                f" WHERE application_name IN ({marks})",
                names,
            )
            positions = {row[0]: row[1] for row in cursor.fetchall()}
            page = read_page(min(positions.values()))
            if not page:
                return 0
            for notification_id, event in page:
                if event is None:
                    continue
                for projection in projections:
                    if notification_id > positions[projection.name] and projection.handles(event):
                        for change in projection.changes(event):
                            _write(cursor, change)
            last = page[-1][0]
            for name in names:
                if last > positions[name]:
                    self._insert_tracking(cursor, Tracking(name, last))
            return len(page)


def _sqlite_utils_view(cursor: SQLiteCursor, sqlite_utils: Any) -> Any:
    return sqlite_utils.Database(
        cursor.sqlite_cursor.connection, recursive_triggers=False, execute_plugins=False
    )


def _write(cursor: SQLiteCursor, change: RowChange) -> None:
    if isinstance(change, Upsert):
        sql = _upsert_sql(change.table, change.pk, tuple(change.row))
        cursor.execute(sql, _values(change.row.values()))
    elif isinstance(change, Update):
        sql = _update_sql(change.table, change.pk, tuple(change.values))
        cursor.execute(sql, [*_values(change.values.values()), change.key])
    elif isinstance(change, Delete):
        cursor.execute(f"DELETE FROM [{change.table}] WHERE [{change.pk}] = ?", (change.key,))
    elif isinstance(change, KeepNewest):
        group, order = change.group_column, change.order_column
        cursor.execute(
            f"DELETE FROM [{change.table}] WHERE [{group}] = ?"
            " AND status NOT IN ('pending', 'queued', 'running') AND rowid NOT IN"
            f" (SELECT rowid FROM [{change.table}] WHERE [{group}] = ?"
            f" ORDER BY [{order}] DESC, rowid DESC LIMIT ?)",
            (change.group_value, change.group_value, change.keep),
        )


@lru_cache(maxsize=512)
def _upsert_sql(table: str, pk: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(f"[{c}]" for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c != pk)
    return (
        f"INSERT INTO [{table}] ({names}) VALUES ({marks}) "
        f"ON CONFLICT([{pk}]) DO UPDATE SET {updates}"
    )


@lru_cache(maxsize=512)
def _update_sql(table: str, pk: str, columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"[{c}] = ?" for c in columns)
    return f"UPDATE [{table}] SET {assignments} WHERE [{pk}] = ?"


def _values(values: Iterable[Any]) -> list[Any]:
    return [json.dumps(v) if isinstance(v, (dict, list)) else v for v in values]
