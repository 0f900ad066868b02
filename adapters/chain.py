"""Tamper evidence: every event linked to the one before it by a SHA-256 hash.

A link is one row of the chain table (`event_chain` on SQLite, `<app>_event_chain` on
PostgreSQL): `(position, previous, hash)`, where `position` is the event's notification id,
`previous` the position of the event linked before it (0 for the first) and

    hash = sha256(previous hash (32 zero bytes for the first)
                  || position, originator version (8 bytes each, big-endian)
                  || length of originator id, length of topic (4 bytes each)
                  || originator id, topic (UTF-8) || stored state (bytes as stored))

The recorders below write the links in the transaction that inserts the events, after the
insert, while the writer holds the log's write lock (SQLite: the one writer; PostgreSQL:
the library's `LOCK TABLE … IN EXCLUSIVE MODE`), so links follow commit order, which is
position order. `verify` walks events and links together and names the first event that
was edited, deleted, inserted or moved since it was written.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

GENESIS = bytes(32)
MMAP_BYTES = 1 << 30
SQLITE_CHAIN_TABLE = "event_chain"
_HEADER = struct.Struct(">QqII")


def _small_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (`_sha256`; `_sha2` from 3.12), for the few links a command
    writes: importing hashlib loads OpenSSL, ~4 ms of every `jobs add`. The same digest;
    `verify`, hashing the whole log, uses hashlib's (OpenSSL's, faster on long input)."""
    for name in ("_sha256", "_sha2"):
        try:
            return __import__(name).sha256
        except ImportError:  # pragma: no cover - a build without it
            continue
    from hashlib import sha256  # pragma: no cover

    return sha256  # pragma: no cover


_sha256 = _small_sha256()


def hash_with_openssl() -> None:
    """Link with hashlib's SHA-256 (OpenSSL's) from now on: the same digest, ~3x faster on
    an event's few hundred bytes. For a long-lived process (the daemon), to which loading
    OpenSSL once costs nothing that matters."""
    global _sha256
    from hashlib import sha256

    _sha256 = sha256


def link_hash(
    previous: bytes, position: int, originator_id: bytes, version: int, topic: bytes, state: bytes
) -> bytes:
    """The link of the event stored at `position` (its id and topic as UTF-8)."""
    header = _HEADER.pack(position, version, len(originator_id), len(topic))
    return _sha256(b"".join((previous, header, originator_id, topic, state))).digest()


def _new_links(
    head: tuple[int, bytes] | None, ids: Sequence[int], events: Sequence[StoredEvent]
) -> list[tuple[int, int, bytes]]:
    previous, digest = head or (0, GENESIS)
    links = []
    for position, event in sorted(zip(ids, events, strict=True), key=lambda pair: pair[0]):
        digest = link_hash(
            digest,
            position,
            str(event.originator_id).encode(),
            event.originator_version,
            event.topic.encode(),
            bytes(event.state),
        )
        links.append((position, previous, digest))
        previous = position
    return links


class ChainedSQLiteRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, writing each event's link in the same transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {SQLITE_CHAIN_TABLE} (position INTEGER PRIMARY KEY,"
            " previous INTEGER NOT NULL, hash BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = self._insert_rows(c.sqlite_cursor, stored_events)
        if ids:
            c.execute(
                f"SELECT position, hash FROM {SQLITE_CHAIN_TABLE} ORDER BY position DESC LIMIT 1"
            )
            row = c.fetchone()
            links = _new_links((row[0], row[1]) if row else None, ids, stored_events)
            c.executemany(f"INSERT INTO {SQLITE_CHAIN_TABLE} VALUES (?, ?, ?)", links)
        return ids

    def _insert_rows(
        self, cursor: sqlite3.Cursor, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """The library's insert of the events, in one statement rather than one each (it
        asks each insert for its rowid). Holding the write lock, with no event ever at the
        largest rowid, the batch gets the rowids after the last one inserted before it, in
        order; SQLite says which the last one is."""
        if not stored_events:
            return []
        cursor.executemany(
            self.insert_events_statement,
            [
                (_stored_id(s.originator_id), s.originator_version, s.topic, s.state)
                for s in stored_events
            ],
        )
        last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        return list(range(last - len(stored_events) + 1, last + 1))


def _stored_id(originator_id: Any) -> Any:
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


def _postgres_recorder_class() -> type:
    """Made on first use: psycopg is imported only for a PostgreSQL log."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from psycopg.sql import SQL, Identifier

    class ChainedPostgresRecorder(PostgresApplicationRecorder):
        """The library's PostgreSQL recorder, writing each event's link after the insert,
        in its transaction and under its table lock."""

        def __init__(self, datastore: Any, *, events_table_name: str = "stored_events"):
            super().__init__(datastore, events_table_name=events_table_name)
            self.chain_table_name = chain_table_name(events_table_name)
            table = (Identifier(datastore.schema), Identifier(self.chain_table_name))
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (position bigint PRIMARY KEY,"
                    " previous bigint NOT NULL, hash bytea NOT NULL)"
                ).format(*table)
            )
            self._select_head = SQL(
                "SELECT position, hash FROM {}.{} ORDER BY position DESC LIMIT 1"
            ).format(*table)
            # One statement of three arrays, not a statement per link.
            self._insert_links = SQL(
                "INSERT INTO {}.{} SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bytea[])"
            ).format(*table)

        def _fetch_ids_after_insert_events(
            self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
        ) -> Sequence[int] | None:
            ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            if ids:
                curs.execute(self._select_head)
                row = curs.fetchone()
                head = (row["position"], bytes(row["hash"])) if row else None
                links = _new_links(head, ids, stored_events)
                columns = [[link[n] for link in links] for n in range(3)]
                curs.execute(self._insert_links, columns)
            return ids

    return ChainedPostgresRecorder


def chain_table_name(events_table_name: str) -> str:
    return events_table_name.removesuffix("_events") + "_event_chain"


def __getattr__(name: str) -> Any:
    # `APPLICATION_RECORDER_TOPIC` names `ocsched.adapters.chain:ChainedPostgresRecorder`.
    if name == "ChainedPostgresRecorder":
        recorder_class = _postgres_recorder_class()
        globals()[name] = recorder_class
        return recorder_class
    raise AttributeError(name)


# Reading the log and its chain.

Row = tuple[int, bytes, int, bytes, bytes]
"""An event as stored: (position, originator id, version, topic, state); id and topic as
UTF-8 bytes, as they are hashed."""
Link = tuple[int, int, bytes]
"""(position, previous position, hash)."""


class ChainReader:
    """Events and links by position range, straight from the store (one read transaction
    per call). On SQLite through a connection of its own, memory-mapped (reading a large
    log that way is half again as fast), used by one thread at a time."""

    def __init__(self, recorder: Any, mapper: Any = None, owned: Any = None) -> None:
        self.recorder = recorder
        self.mapper = mapper
        """Decodes an event for a report (its time)."""
        self._owned = owned
        """An application to close with the reader."""
        self.sqlite = isinstance(recorder, SQLiteApplicationRecorder)
        self._connection: sqlite3.Connection | None = None
        if self.sqlite:
            events, chain = recorder.events_table_name, SQLITE_CHAIN_TABLE
            self._events_sql = (
                "SELECT rowid, CAST(originator_id AS BLOB), originator_version,"
                f" CAST(topic AS BLOB), state FROM {events}"
                " WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
            )
            self._head_sql = f"SELECT max(rowid) FROM {events}"
            mark = "?"
        else:
            schema = recorder.datastore.schema
            events = f'"{schema}"."{recorder.events_table_name}"'
            chain = f'"{schema}"."{chain_table_name(recorder.events_table_name)}"'
            self._events_sql = (
                "SELECT notification_id, convert_to(originator_id::text, 'UTF8'),"
                " originator_version, convert_to(topic, 'UTF8'), state"
                f" FROM {events} WHERE notification_id > %s AND notification_id <= %s"
                " ORDER BY notification_id"
            )
            self._head_sql = f"SELECT max(notification_id) FROM {events}"
            mark = "%s"
        self._links_sql = (
            f"SELECT position, previous, hash FROM {chain}"
            f" WHERE position > {mark} AND position <= {mark} ORDER BY position"
        )
        self._bounds_sql = f"SELECT min(position), max(position) FROM {chain}"
        self._link_before_sql = (
            f"SELECT position, previous, hash FROM {chain} WHERE position < {mark}"
            " ORDER BY position DESC LIMIT 1"
        )
        self._first_link_sql = (
            f"SELECT position, previous, hash FROM {chain} ORDER BY position LIMIT 1"
        )
        self._last_link_sql = (
            f"SELECT position, previous, hash FROM {chain} ORDER BY position DESC LIMIT 1"
        )

    def _query(self, *statements: tuple[str, tuple]) -> list[list[tuple]]:
        results = []
        if self.sqlite:
            connection = self._sqlite()
            connection.execute("BEGIN")
            try:
                for statement, params in statements:
                    results.append(connection.execute(statement, params).fetchall())
            finally:
                connection.execute("COMMIT")
            return results
        with self.recorder.datastore.get_connection() as conn:
            cursor = conn.cursor(row_factory=_tuple_row(), binary=True)
            for statement, params in statements:
                cursor.execute(statement, params)
                results.append(cursor.fetchall())
            return results

    def _sqlite(self) -> sqlite3.Connection:
        if self._connection is None:
            name = self.recorder.datastore.pool.db_name
            connection = sqlite3.connect(
                name, uri=True, isolation_level=None, check_same_thread=False, timeout=5
            )
            connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def has_chain(self) -> bool:
        try:
            self._query((self._first_link_sql, ()))
        except Exception:  # noqa: BLE001 - no table: a store this version never wrote to
            return False
        return True

    def head(self) -> int:
        return self._query((self._head_sql, ()))[0][0][0] or 0

    def bounds(self) -> tuple[int, Link | None, Link | None]:
        """(last event position, first link, last link)."""
        head, first, last = self._query(
            (self._head_sql, ()), (self._first_link_sql, ()), (self._last_link_sql, ())
        )
        return head[0][0] or 0, _one(first), _one(last)

    def link_before(self, position: int) -> Link | None:
        return _one(self._query((self._link_before_sql, (position,)))[0])

    def page(self, after: int, upto: int) -> tuple[list[Row], list[Link]]:
        events, links = self._query(
            (self._events_sql, (after, upto)), (self._links_sql, (after, upto))
        )
        return events, links

    def event_at(self, position: int) -> Row | None:
        events, _ = self.page(position - 1, position)
        return events[0] if events else None


def _one(rows: list[tuple]) -> Any:
    return tuple(rows[0]) if rows else None


def _tuple_row() -> Any:
    from psycopg.rows import tuple_row

    return tuple_row


# Verifying.

EDITED, DELETED, INSERTED, REORDERED, REWRITTEN = (
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "rewritten",
)


class Finding(msgspec.Struct, frozen=True):
    """The first break in the chain: `kind` (edited, deleted, inserted, reordered,
    rewritten: the chain no longer matches an anchor), the position it is at, what
    happened there, and `other` (the position an event was moved from, for reordered)."""

    kind: str
    position: int
    detail: str
    other: int | None = None


class Verdict(msgspec.Struct):
    """A walk's result. (Structs, not dataclasses: every command that opens the log imports
    this module, and a Struct is made ~30 times faster.)"""

    start: int
    """The first position walked."""
    end: int
    """The log's head when the walk began: the last position walked."""
    chain_start: int | None
    """The first chained position; events before it predate the chain (an upgrade)."""
    checked: int = 0
    """Events whose link was checked."""
    unchained: int = 0
    """Events walked that predate the chain."""
    head: tuple[int, bytes] | None = None
    """The last link verified: (position, hash)."""
    anchor_matched: bool | None = None
    finding: Finding | None = None
    stopped_at: int | None = None
    """Set when interrupted: the position to resume from."""


PAGE = 20_000
LOOKAHEAD = 2_000


def verify(
    reader: ChainReader,
    start: int | None = None,
    anchor: tuple[int | None, bytes] | None = None,
    advance: Callable[[int], None] | None = None,
    page: int = PAGE,
) -> Verdict:
    """Walk events and links from `start` (default: the first) to the head as it is now.
    From the first link, hashes are recomputed from nothing but the events, so a chain
    that was recomputed after an edit still differs from an `anchor` (position, hash)
    taken before it. From a later `start`, the link before it is taken as it is stored."""
    end, first, last = reader.bounds()
    end = max(end, last[0] if last else 0)
    chain_start = first[0] if first else None
    lo = max((start or 1) - 1, 0)
    verdict = Verdict(start=lo + 1, end=end, chain_start=chain_start)
    previous, digest = 0, GENESIS
    if lo and chain_start is not None and lo >= chain_start:
        before = reader.link_before(lo + 1)
        if before is not None:
            previous, digest = before[0], before[2]
    try:
        for hi, (events, links) in _pages(reader, lo, end, page):
            previous, digest, found = _walk(verdict, events, links, previous, digest, anchor)
            if found is not None:
                verdict.finding = _diagnose(reader, found, previous, digest)
                return verdict
            lo = hi
            if advance is not None:
                advance(lo - verdict.start + 1)
    except KeyboardInterrupt:
        verdict.stopped_at = lo + 1
        raise InterruptedVerify(verdict) from None
    if previous:
        verdict.head = (previous, digest)
    if anchor is not None and not verdict.anchor_matched:
        verdict.anchor_matched = False
        where = f"position {anchor[0]}" if anchor[0] else "any position"
        verdict.finding = Finding(
            REWRITTEN,
            anchor[0] or end,
            f"the chain does not reach the anchor's hash at {where}: events up to it were"
            " rewritten and their chain recomputed, or deleted, since the anchor was taken",
        )
    return verdict


def _pages(
    reader: ChainReader, lo: int, end: int, size: int
) -> Iterator[tuple[int, tuple[list[Row], list[Link]]]]:
    """(upper bound, page) from `lo` to `end`, the next page read by a thread while this
    one is hashed (SQLite and the hash of a large state release the interpreter lock)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        hi = min(lo + size, end)
        pending = pool.submit(reader.page, lo, hi) if lo < end else None
        while pending is not None:
            page = pending.result()
            upper = hi
            pending = None
            if hi < end:
                lo, hi = hi, min(hi + size, end)
                pending = pool.submit(reader.page, lo, hi)
            yield upper, page


class InterruptedVerify(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"interrupted at position {verdict.stopped_at}")
        self.verdict = verdict


def _walk(
    verdict: Verdict,
    events: list[Row],
    links: list[Link],
    previous: int,
    digest: bytes,
    anchor: tuple[int | None, bytes] | None,
) -> tuple[int, bytes, Finding | None]:
    """The hot loop: merge one page of events and links by position, hashing as it goes.
    Returns the last verified (position, hash) and, at a break, a raw Finding for
    `_diagnose`."""
    from hashlib import sha256

    chain_start = verdict.chain_start
    pack, join = _HEADER.pack, b"".join
    i = j = 0
    n_events, n_links = len(events), len(links)
    checked = unchained = 0
    try:
        while i < n_events or j < n_links:
            event = events[i] if i < n_events else None
            link = links[j] if j < n_links else None
            if event is not None and (link is None or event[0] < link[0]):
                if chain_start is None or event[0] < chain_start:
                    unchained += 1
                    i += 1
                    continue
                return previous, digest, Finding(INSERTED, event[0], "")
            if event is None or link is not None and link[0] < event[0]:
                assert link is not None
                return previous, digest, Finding(DELETED, link[0], "")
            assert link is not None
            position, oid, version, topic, state = event
            header = pack(position, version, len(oid), len(topic))
            computed = sha256(join((digest, header, oid, topic, state))).digest()
            if computed != link[2] or link[1] != previous:
                return previous, digest, Finding(EDITED, position, "")
            previous, digest = position, computed
            checked += 1
            if anchor is not None and anchor[1] == computed and anchor[0] in (None, position):
                verdict.anchor_matched = True
            i += 1
            j += 1
    finally:
        verdict.checked += checked
        verdict.unchained += unchained
    return previous, digest, None


def _diagnose(reader: ChainReader, raw: Finding, previous: int, digest: bytes) -> Finding:
    """What the first break is, from the events and links around it hashed a few ways;
    (`previous`, `digest`) is the last link verified before it."""
    position = raw.position
    events, links = reader.page(position - 1, position + LOOKAHEAD)
    link_at = {link[0]: link for link in links}
    if raw.kind == INSERTED:
        return Finding(
            INSERTED,
            position,
            "an event without a chain link, after the chain began: inserted with plain SQL"
            " (or written by an ocsched that does not chain events)",
        )
    link = link_at[position]
    for other in events:
        if other[0] != position and link_hash(digest, position, *other[1:]) == link[2]:
            return Finding(
                REORDERED,
                position,
                f"the event written at position {position} is now at position {other[0]}",
                other=other[0],
            )
    if raw.kind == DELETED:
        return Finding(DELETED, position, "its chain link remains, the event is gone")
    if link[1] != previous:
        if link[1] > previous:
            gone = "its chain link is" if reader.event_at(link[1]) else "it and its chain link are"
            return Finding(
                DELETED,
                link[1],
                f"{gone} gone (the link at {position} follows position {link[1]}; the last"
                f" intact event is at {previous or '-'})",
            )
        return Finding(
            INSERTED,
            previous,
            f"the event at position {previous} is not in the chain (the link at {position}"
            f" follows position {link[1]})",
        )
    later = [e for e in events if e[0] > position and e[0] in link_at]
    if later:
        following = later[0]
        if link_hash(digest, following[0], *following[1:]) == link_at[following[0]][2]:
            return Finding(
                INSERTED,
                position,
                "not in the chain: the next event's link follows the event before it",
            )
        if link_hash(link[2], following[0], *following[1:]) == link_at[following[0]][2]:
            return Finding(EDITED, position, "its stored bytes no longer match its chain link")
    return Finding(
        EDITED,
        position,
        "its stored bytes, or its chain link, no longer match (and the chain after it differs)",
    )
