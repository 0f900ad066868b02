"""The SQLite file that holds read models and their tracking positions.

Rows and the tracking position of a page of events are written in one transaction
(the library's single-row tracking refuses a position that does not move forward), so
each event is applied exactly once even with several processes catching up at once.

Within a page, later changes of a row are merged into its earlier statement where that
cannot change the result (`_RowWriter`), runs of one statement go to `executemany`, and
None is written as a NULL literal (`_row_statement`); what that gives a rebuild is in
README's Performance table (scripts/bench/cli.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from operator import itemgetter
from types import NoneType
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)

from .projection import Handler, Projection
from .rows import Delete, KeepNewest, RowChange, Update, Upsert

VERSIONS_TABLE = "read_model_versions"
READ_CHUNK = 5000
"""Events decoded at a time within a page."""
MAX_PENDING_CHANGES = 20_000
"""Row changes held (merged) before they are written, within a page."""


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
        self._key_columns: dict[str, str | None] = {}
        """table -> its primary key column if changes of a row may be merged (see _RowWriter)."""
        self._untriggered: dict[str, bool] = {}
        """table -> whether it has no trigger (an update of a row it then deletes may go)."""
        self._shared_routes: dict[tuple[int, ...], tuple[tuple, dict[str, list]]] = {}

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (name TEXT PRIMARY KEY, version INTEGER)",
        ]

    def create_table(self) -> None:
        """The tracking and layout-version tables, created once per store by whichever
        process comes first. The library's version reads first and writes after in one
        deferred transaction; with another process writing meanwhile (a daemon and a command
        starting on a new database) SQLite refuses the write at once ("database is locked":
        a read transaction in WAL mode cannot wait to become a write one), or the second
        process's migration mark collides with the first's. Here they are looked for with a
        plain read, and created, when missing, in a transaction that takes the write lock
        first and looks again."""
        if self._tables_exist():
            self.tracking_table_exists = True
            self.tracking_migration_current = self.tracking_migration_previous = 1
            return
        with self.write_transaction() as cursor:
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tracking'"
            )
            self.tracking_table_exists = bool(cursor.fetchone()[0])
            migration = None
            if self.tracking_table_exists:
                cursor.execute(self.select_max_tracking_id_statement, ("__migration__",))
                migration = cursor.fetchone()[0]
            self.tracking_migration_current = self.tracking_migration_previous = migration
            self._create_table(cursor)

    def _tables_exist(self) -> bool:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                ("tracking", VERSIONS_TABLE),
            )
            if cursor.fetchone()[0] != 2:
                return False
            cursor.execute(self.select_max_tracking_id_statement, ("__migration__",))
            return bool(cursor.fetchone()[0])

    @contextmanager
    def write_transaction(self) -> Iterator[SQLiteCursor]:
        """A transaction that takes SQLite's write lock before its first statement (`BEGIN
        IMMEDIATE`), waiting for it as long as the busy timeout allows: for work that reads
        before it writes. The library's transactions begin deferred, and in WAL mode a
        deferred transaction that has read cannot wait for the lock when it comes to write:
        it fails at once with SQLITE_BUSY if another connection holds the lock or has
        committed since its read."""
        with self.datastore.get_connection(commit=True) as connection:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def ensure_tables(self, projection: Projection) -> None:
        """Create the projection's tables; drop and recreate them when their layout changed.
        Checked once per store (a process), not on every catch-up: a plain read when the
        layout is current, else a write transaction (`write_transaction`) that looks again
        (another process may have just done it)."""
        if projection.name in self._ensured:
            return
        if self._layout_version(projection.name) != projection.version:
            with self.write_transaction() as cursor:
                cursor.execute(
                    f"SELECT version FROM {VERSIONS_TABLE} WHERE name = ?", (projection.name,)
                )
                row = cursor.fetchone()
                if not (row and row[0] == projection.version):
                    self._drop(cursor, projection)
                    import sqlite_utils

                    projection.create_tables(_sqlite_utils_view(cursor, sqlite_utils))
                    cursor.execute(
                        f"INSERT OR REPLACE INTO {VERSIONS_TABLE} VALUES (?, ?)",
                        (projection.name, projection.version),
                    )
        self._ensured.add(projection.name)

    def _layout_version(self, name: str) -> int | None:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT version FROM {VERSIONS_TABLE} WHERE name = ?", (name,))
            row = cursor.fetchone()
            return row[0] if row else None

    def drop(self, projection: Projection) -> None:
        """Drop the projection's tables and forget its position and layout version."""
        self._ensured.discard(projection.name)
        with self.write_transaction() as cursor:
            self._drop(cursor, projection)
            cursor.execute(f"DELETE FROM {VERSIONS_TABLE} WHERE name = ?", (projection.name,))

    def _drop(self, cursor: SQLiteCursor, projection: Projection) -> None:
        self._key_columns.clear()
        self._untriggered.clear()
        for table in projection.tables:
            cursor.execute(f"DROP TABLE IF EXISTS [{table}]")
        cursor.execute("DELETE FROM tracking WHERE application_name = ?", (projection.name,))

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0

    def apply(
        self,
        projections: list[Projection],
        read: Callable[[int, int], Sequence[tuple[int, str, Any]]],
        page_size: int,
    ) -> int:
        """Apply the next page of up to `page_size` events to every projection behind the
        log, rows and new positions in one transaction. `read(position, limit)` returns
        (notification_id, topic, event or None) triples after `position`; None marks an
        event no projection handles. Returns how many events were read (0 when all are up
        to date). A large page is read in chunks, so its decoded events need not all be in
        memory at once."""
        names = [p.name for p in projections]
        with self.datastore.transaction(commit=True) as cursor:
            # Writing first takes the write lock, so the positions read next are current.
            # (One statement per catch-up, not one per projection: a daemon catches up
            # after every write, mostly a few events, and statements were most of its cost.)
            marks = ", ".join("(?, 0)" for _ in names)
            cursor.execute(f"INSERT INTO tracking VALUES {marks} ON CONFLICT DO NOTHING", names)
            cursor.execute("SELECT application_name, notification_id FROM tracking")
            chosen = set(names)
            positions = {name: at for name, at in cursor.fetchall() if name in chosen}
            last = min(positions.values())
            routes = self._routes(projections, positions)
            rows = _RowWriter(cursor.sqlite_cursor, self._key_columns, self._untriggered)
            consumed = 0
            while consumed < page_size:
                limit = min(READ_CHUNK, page_size - consumed)
                chunk = read(last, limit)
                changes: list[RowChange] = []
                extend = changes.extend
                for notification_id, topic, event in chunk:
                    for after, handler in routes.get(topic, ()):
                        if notification_id > after:
                            extend(handler(event))
                rows.write(changes)
                if chunk:
                    consumed += len(chunk)
                    last = chunk[-1][0]
                if len(chunk) < limit:
                    break
                if len(rows.entries) >= MAX_PENDING_CHANGES:
                    rows.flush()
            rows.flush()
            self._advance(cursor, [name for name in names if last > positions[name]], last)
            return consumed

    def _routes(
        self, projections: list[Projection], positions: dict[str, int]
    ) -> dict[str, list[tuple[int, Handler]]]:
        """`_routes`; made once per set of projections when they are all at one position
        (as they mostly are): every event read is then new to each of them."""
        if len(set(positions.values())) != 1:
            return _routes(projections, positions)
        key = tuple(map(id, projections))
        shared = self._shared_routes.get(key)
        if shared is None:  # (the projections are kept with their routes: their ids stay theirs)
            every = dict.fromkeys(positions, -1)
            shared = self._shared_routes[key] = (tuple(projections), _routes(projections, every))
        return shared[1]

    def _advance(self, cursor: SQLiteCursor, names: list[str], position: int) -> None:
        """Record that these projections have applied the log up to `position`, in one
        statement; as the library's single-row tracking does, a position that does not move
        forward is refused (IntegrityError, and the transaction is rolled back)."""
        if not names:
            return
        if not self.datastore.single_row_tracking:
            for name in names:
                self._insert_tracking(cursor, Tracking(name, position))
            return
        marks = ", ".join("(?, ?)" for _ in names)
        cursor.execute(
            f"INSERT INTO tracking VALUES {marks} ON CONFLICT (application_name)"
            " DO UPDATE SET notification_id = excluded.notification_id"
            " WHERE tracking.notification_id < excluded.notification_id"
            " RETURNING application_name",
            [value for name in names for value in (name, position)],
        )
        if len(cursor.fetchall()) != len(names):
            raise IntegrityError(f"Failed to record tracking for {', '.join(names)} {position}")


def _routes(
    projections: list[Projection], positions: dict[str, int]
) -> dict[str, list[tuple[int, Handler]]]:
    """topic -> (position, handler) of each projection that reads it, in projection order."""
    routes: dict[str, list[tuple[int, Handler]]] = {}
    for projection in projections:
        position = positions[projection.name]
        for topic, handler in projection.by_topic.items():
            routes.setdefault(topic, []).append((position, handler))
    return routes


class _Pending:
    """An Upsert or Update of one row (by its primary key) that later changes of the same
    row may still be merged into."""

    __slots__ = ("kind", "table", "pk", "key", "values", "dropped")

    def __init__(self, kind: type, table: str, pk: str, key: Any, values: dict):
        self.kind, self.table, self.pk, self.key = kind, table, pk, key
        self.values = values
        self.dropped = False

    def statement(self) -> tuple[str, Sequence[Any]]:
        return _row_statement(self.kind, self.table, self.pk, self.key, self.values)


class _RowWriter:
    """The row changes of one page, written in order when the page ends, with later changes
    of a row merged into an earlier Upsert or Update of the same row: a job updated nine
    times in a page is written once. A run of statements with the same SQL goes to SQLite
    as one `executemany`.

    Merging moves an Update earlier, past changes of other rows, so it is done only where
    that cannot matter: keyed by the table's primary key, in a table with no other unique
    index, and never across a change that reads or matches other rows of the table
    (`KeepNewest`, or an Update or Delete keyed by another column): such a change starts a
    new epoch of its table, and merges stay within one. Inserts and deletes keep their
    order, so rowids are the ones one statement per change would give.

    A row deleted by its key drops the pending Update of it in the same epoch: nothing read
    the row in between, and in a table without triggers an update of a row that goes leaves
    no trace (a one-shot job's row is moved as its run starts and ends, then deleted)."""

    def __init__(
        self,
        cursor: sqlite3.Cursor,
        key_columns: dict[str, str | None],
        untriggered: dict[str, bool] | None = None,
    ) -> None:
        self.cursor = cursor
        self.key_columns = key_columns
        self.untriggered = {} if untriggered is None else untriggered
        self.entries: list[_Pending | RowChange] = []
        self.latest: dict[str, dict[Any, _Pending]] = {}
        """table -> key -> the row's pending change that later changes may merge into; a
        new epoch of the table starts with an empty one."""

    def write(self, changes: Iterable[RowChange]) -> None:
        key_columns, latest, entries = self.key_columns, self.latest, self.entries
        change: Any  # one of RowChange, told apart by `kind`
        for change in changes:
            table = change.table
            try:
                key_column = key_columns[table]
            except KeyError:
                key_column = key_columns[table] = _mergeable_key(self.cursor.connection, table)
            kind = type(change)
            if kind is KeepNewest or key_column is None or change.pk != key_column:
                pass  # reads or matches rows by something other than their key: below
            elif kind is Update:
                values = change.values
                if key_column not in values:  # (an Update that changes the key is not merged)
                    key = change.key
                    pending = latest.setdefault(table, {})
                    earlier = pending.get(key)
                    if earlier is not None:
                        earlier.values.update(values)  # Upsert or Update, then Update
                    else:
                        self._add(pending, Update, table, key_column, key, values)
                    continue
            elif kind is Upsert:
                values = change.row
                key = values.get(key_column)
                if key is not None:
                    pending = latest.setdefault(table, {})
                    earlier = pending.get(key)
                    if earlier is not None and earlier.kind is Upsert:
                        earlier.values.update(values)  # Upsert, then Upsert
                    else:  # (Update, then Upsert is not one statement: a missing row differs)
                        self._add(pending, Upsert, table, key_column, key, values)
                    continue
            else:  # a Delete by key
                dropped = latest.get(table, {}).pop(change.key, None)
                if dropped is not None and dropped.kind is Update and self._untriggered(table):
                    dropped.dropped = True
                entries.append(change)
                continue
            latest[table] = {}  # a new epoch: no merge reaches past this change
            entries.append(change)

    def _untriggered(self, table: str) -> bool:
        known = self.untriggered.get(table)
        if known is None:
            query = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?"
            found = self.cursor.connection.execute(query, (table,)).fetchone()
            known = self.untriggered[table] = found is None
        return known

    def _add(
        self, pending: dict[Any, _Pending], kind: type, table: str, pk: str, key: Any, values: dict
    ) -> None:
        pending[key] = entry = _Pending(kind, table, pk, key, dict(values))
        self.entries.append(entry)

    def flush(self) -> None:
        """Write the page's changes (merged) in order; the writer is then empty."""
        sql = ""
        batch: list[Sequence[Any]] = []
        for entry in self.entries:
            if type(entry) is _Pending:
                if entry.dropped:
                    continue
                statement, parameters = entry.statement()
            else:
                statement, parameters = _STATEMENTS[type(entry)](entry)
            if statement != sql:
                self._execute(sql, batch)
                sql, batch = statement, []
            batch.append(parameters)
        self._execute(sql, batch)
        self.entries, self.latest = [], {}

    def _execute(self, sql: str, batch: list[Sequence[Any]]) -> None:
        if len(batch) == 1:
            self.cursor.execute(sql, batch[0])
        elif batch:
            self.cursor.executemany(sql, batch)


def _mergeable_key(connection: sqlite3.Connection, table: str) -> str | None:
    """The table's primary key column, if it has a one-column key and no other unique
    index; else None."""
    key = [row[1] for row in connection.execute(f"PRAGMA table_info([{table}])") if row[5]]
    unique = [row for row in connection.execute(f"PRAGMA index_list([{table}])") if row[2]]
    if len(key) != 1 or any(row[3] != "pk" for row in unique):
        return None
    return key[0]


def _sqlite_utils_view(cursor: SQLiteCursor, sqlite_utils: Any) -> Any:
    return sqlite_utils.Database(
        cursor.sqlite_cursor.connection, recursive_triggers=False, execute_plugins=False
    )


def _upsert(change: Upsert) -> tuple[str, Sequence[Any]]:
    return _row_statement(Upsert, change.table, change.pk, None, change.row)


def _update(change: Update) -> tuple[str, Sequence[Any]]:
    return _row_statement(Update, change.table, change.pk, change.key, change.values)


def _row_statement(
    kind: type, table: str, pk: str, key: Any, row: dict[str, Any]
) -> tuple[str, Sequence[Any]]:
    """The SQL and parameters of an Upsert of `row`, or an Update of `row` where pk = key.

    A None is written as a NULL literal rather than bound: binding None costs the sqlite3
    module an adapter lookup, three times a text value (most of the time of writing a jobs
    row, half of whose columns are null). The statement, and which of the row's values it
    binds, are made once per pattern of value types (`_Shape.form`), looked up by the tuple
    of the row's value types, which is made in C: looking at each value in Python took as
    long as SQLite took to write the row. A shape of row gets at most MAX_FORMS of them;
    beyond those, None is bound."""
    columns = tuple(row)
    shape = _shapes.get((kind, table, pk, columns))
    if shape is None:
        if len(_shapes) >= 1024:
            _shapes.clear()
        shape = _shapes[kind, table, pk, columns] = _Shape(kind, table, pk, columns)
    types = tuple(map(type, row.values()))
    sql, pick, encoded = shape.forms.get(types) or shape.form(types)
    parameters = pick(row)
    if encoded:
        parameters = list(parameters)
        for index in encoded:
            parameters[index] = json.dumps(parameters[index])
    if kind is Update:
        return sql, (*parameters, key)
    return sql, parameters


MAX_FORMS = 64

_Form = tuple[str, Callable[[dict[str, Any]], Sequence[Any]], tuple[int, ...]]
"""A statement, what takes its parameters from the row, and which of them are JSON text."""


class _Shape:
    """The statements of an Upsert or Update of one set of columns."""

    __slots__ = ("kind", "table", "pk", "columns", "forms")

    def __init__(self, kind: type, table: str, pk: str, columns: tuple[str, ...]) -> None:
        self.kind, self.table, self.pk, self.columns = kind, table, pk, columns
        self.forms: dict[tuple[type, ...], _Form] = {}

    def form(self, types: tuple[type, ...]) -> _Form:
        """The statement for values of these types: NULL for each None (beyond MAX_FORMS
        forms, every value bound), dicts and lists bound as JSON text."""
        bound = self.columns
        if len(self.forms) < MAX_FORMS:
            bound = tuple(c for c, t in zip(self.columns, types, strict=True) if t is not NoneType)
        kinds = dict(zip(self.columns, types, strict=True))
        encoded = tuple(i for i, c in enumerate(bound) if issubclass(kinds[c], (dict, list)))
        form = (self._sql(frozenset(bound)), _picker(bound), encoded)
        if len(self.forms) < MAX_FORMS:
            self.forms[types] = form
        return form

    def _sql(self, bound: frozenset[str]) -> str:
        table, pk, columns = self.table, self.pk, self.columns
        marks = ["?" if c in bound else "NULL" for c in columns]
        if self.kind is Update:
            assignments = ", ".join(f"[{c}] = {m}" for c, m in zip(columns, marks, strict=True))
            return f"UPDATE [{table}] SET {assignments} WHERE [{pk}] = ?"
        names = ", ".join(f"[{c}]" for c in columns)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c != pk)
        return (
            f"INSERT INTO [{table}] ({names}) VALUES ({', '.join(marks)}) "
            f"ON CONFLICT([{pk}]) DO UPDATE SET {updates}"
        )


def _picker(columns: tuple[str, ...]) -> Callable[[dict[str, Any]], Sequence[Any]]:
    """The values of these columns of a row, as a tuple (in C: an itemgetter)."""
    if len(columns) > 1:
        return itemgetter(*columns)
    if columns:
        (column,) = columns
        return lambda row: (row[column],)
    return lambda row: ()


_shapes: dict[tuple, _Shape] = {}


def _delete(change: Delete) -> tuple[str, tuple[Any, ...]]:
    return _delete_sql(change.table, change.pk), (change.key,)


def _keep_newest(change: KeepNewest) -> tuple[str, tuple[Any, ...]]:
    sql = _keep_newest_sql(change.table, change.group_column, change.order_column)
    return sql, (change.group_value, change.keep)


_STATEMENTS: dict[type, Callable[[Any], tuple[str, Sequence[Any]]]] = {
    Upsert: _upsert,
    Update: _update,
    Delete: _delete,
    KeepNewest: _keep_newest,
}


@lru_cache(maxsize=128)
def _delete_sql(table: str, pk: str) -> str:
    return f"DELETE FROM [{table}] WHERE [{pk}] = ?"


@lru_cache(maxsize=128)
def _keep_newest_sql(table: str, group: str, order: str) -> str:
    """The group's rows past the newest `keep` (in SQLite's own order), if finished. Asking
    for the rows past them, not for the rows kept, gives SQLite a list of the one or two
    rows a new run pushes out, where it listed the hundred kept and then read every row of
    the group to test it against them (most of the cost of a run's row in a long history)."""
    return (
        f"DELETE FROM [{table}] WHERE rowid IN (SELECT rowid FROM [{table}] WHERE [{group}] = ?"
        f" ORDER BY [{order}] DESC, rowid DESC LIMIT -1 OFFSET ?)"
        " AND status NOT IN ('pending', 'queued', 'running')"
    )
