"""The read models as they stood at a moment: the log's events up to that time, applied
by the same projections into a scratch store, so every query answers as it did then.

`UpTo` is an `EventSource` that hides the events stamped after the moment (their place is
passed over, so positions still move); `build` catches a scratch store up through it. A
store built for a moment stays right for that moment: a later catch-up applies only the
events appended since, with the same cut.

A store also records its cut (`as_of_cut`): whether it holds exactly the log's first
events up to a position (`prefix_end`, `clean`), as it does whenever the events' times
run in log order up to the moment. Such a store is a starting point for any later moment:
a copy of it, set back to that position, needs only the events after it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .runner import REBUILD_PAGE_SIZE, all_projections, catch_up
from .source import EventSource
from .stamps import moment as event_moment
from .store import ReadModelStore

LATER = ""
"""The topic an event after the moment is passed as: no projection reads it."""
CUT_TABLE = "as_of_cut"


class UpTo:
    """`source` without the events whose time is after `moment`. While it reads on from
    `position` it follows the prefix it let through whole: `prefix_end`, the last position
    before the first event it held back (from `prefix_end` given, or None: not a prefix)."""

    def __init__(
        self,
        source: EventSource,
        moment: datetime,
        position: int = 0,
        prefix_end: int | None = 0,
    ) -> None:
        self.source = source
        self.moment = moment.astimezone(UTC)
        self._second = self.moment.strftime("%Y-%m-%dT%H:%M:%S")
        self.prefix_end = prefix_end
        self.held_back = prefix_end is None or prefix_end < position
        self.read_to = position
        self.in_order = True
        """Pages were asked for one after the other (none read twice, none skipped)."""

    def max_position(self) -> int:
        return self.source.max_position()

    def read_after(
        self, position: int, limit: int, topics: Collection[str]
    ) -> Sequence[tuple[int, str, Any]]:
        if position != self.read_to:
            self.in_order = False
        page = self.source.read_after(position, limit, topics)
        included = self.included
        passed = []
        for entry in page:
            event = entry[2]
            if event is None or included(event):
                passed.append(entry)
                if event is not None and self.held_back:
                    self.prefix_end = None  # an event after one held back: not a prefix
                elif self.prefix_end is not None and not self.held_back:
                    self.prefix_end = entry[0]
            else:
                passed.append((entry[0], LATER, None))
                self.held_back = True
        if page:
            self.read_to = page[-1][0]
        return passed

    def included(self, event: Any) -> bool:
        stamp = event.timestamp
        if type(stamp) is str and stamp[-1] == "Z" and stamp[10] == "T":
            second = stamp[:19]  # RFC 3339 text in UTC: its whole seconds compare as text
            if second != self._second:
                return second < self._second
        return event_moment(event) <= self.moment


class Through:
    """`source` up to and including position `last`."""

    def __init__(self, source: EventSource, last: int) -> None:
        self.source = source
        self.last = last

    def max_position(self) -> int:
        return min(self.source.max_position(), self.last)

    def read_after(
        self, position: int, limit: int, topics: Collection[str]
    ) -> Sequence[tuple[int, str, Any]]:
        page = self.source.read_after(position, limit, topics)
        return [entry for entry in page if entry[0] <= self.last]


@dataclass(frozen=True)
class Cut:
    moment: datetime
    prefix_end: int | None
    """The store holds exactly the log's events up to this position; None: it does not."""


def build(
    source: EventSource,
    path: str,
    moment: datetime,
    progress: Callable[[int], None] | None = None,
    bases: Iterable[str] = (),
) -> int:
    """Bring the scratch store at `path` to the read models as of `moment`; returns how
    many events were read (0 when it was already up to date). A new store starts from a
    copy of the base (another moment's scratch store) that holds the longest prefix of the
    log before `moment`, if there is one."""
    if not _has_tables(path):
        _start_from_base(path, moment, bases)
    names = [p.name for p in all_projections()]
    store = ReadModelStore(path)
    try:
        position = min(store.position(name) for name in names)
        earlier = cut_of(path)
        prefix_end = earlier.prefix_end if earlier else (0 if position == 0 else None)
        _record_cut(path, moment, None)  # (until this build has finished)
        up_to = UpTo(source, moment, position, prefix_end)
        read = catch_up(up_to, store, page_size=REBUILD_PAGE_SIZE, progress=progress)
        reached = min(store.position(name) for name in names)
    finally:
        store.datastore.close()
    whole = up_to.in_order and (up_to.read_to == reached or not read)
    _record_cut(path, moment, up_to.prefix_end if whole else None)
    return read


def cut_of(path: str) -> Cut | None:
    try:
        with closing(sqlite3.connect(path)) as db:
            row = db.execute(f"SELECT moment, prefix_end FROM {CUT_TABLE}").fetchone()
    except sqlite3.Error:
        return None
    return Cut(datetime.fromisoformat(row[0]), row[1]) if row else None


def _record_cut(path: str, moment: datetime, prefix_end: int | None) -> None:
    with closing(sqlite3.connect(path, timeout=30)) as db, db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {CUT_TABLE} (moment TEXT, prefix_end INTEGER)")
        db.execute(f"DELETE FROM {CUT_TABLE}")
        db.execute(f"INSERT INTO {CUT_TABLE} VALUES (?, ?)", (moment.isoformat(), prefix_end))


def _has_tables(path: str) -> bool:
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return False
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0


def _start_from_base(path: str, moment: datetime, bases: Iterable[str]) -> None:
    """Copy into `path` the base whose whole prefix is longest among those cut before
    `moment`, its tracking set back to the end of that prefix."""
    best: tuple[int, str] | None = None
    for base in bases:
        cut = cut_of(base)
        usable = cut is not None and cut.prefix_end and cut.moment <= moment
        if usable and cut and (best is None or (cut.prefix_end or 0) > best[0]):
            best = (cut.prefix_end or 0, base)
    if best is None:
        return
    prefix_end, base = best
    names = [p.name for p in all_projections()]
    marks = ",".join("?" for _ in names)
    with (
        closing(sqlite3.connect(base, timeout=30)) as source,
        closing(sqlite3.connect(path)) as copy,
    ):
        source.backup(copy)
        with copy:
            copy.execute(
                f"UPDATE tracking SET notification_id = ? WHERE application_name IN ({marks})",
                (prefix_end, *names),
            )
