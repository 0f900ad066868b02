"""The read models as they stood at a moment: the log's events up to that time, applied
by the same projections into a scratch store, so every query answers as it did then.

`UpTo` is an `EventSource` that hides the events stamped after the moment (their place is
passed over, so positions still move); `build` catches a scratch store up through it. A
store built for a moment stays right for that moment: a later catch-up applies only the
events appended since, with the same cut."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from .runner import REBUILD_PAGE_SIZE, catch_up
from .source import EventSource
from .stamps import moment as event_moment
from .store import ReadModelStore

LATER = ""
"""The topic an event after the moment is passed as: no projection reads it."""


class UpTo:
    """`source` without the events whose time is after `moment`."""

    def __init__(self, source: EventSource, moment: datetime) -> None:
        self.source = source
        self.moment = moment.astimezone(UTC)
        self._second = self.moment.strftime("%Y-%m-%dT%H:%M:%S")

    def max_position(self) -> int:
        return self.source.max_position()

    def read_after(
        self, position: int, limit: int, topics: Collection[str]
    ) -> Sequence[tuple[int, str, Any]]:
        page = self.source.read_after(position, limit, topics)
        included = self.included
        return [
            entry if entry[2] is None or included(entry[2]) else (entry[0], LATER, None)
            for entry in page
        ]

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


def build(
    source: EventSource,
    path: str,
    moment: datetime,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Bring the scratch store at `path` to the read models as of `moment`; returns how
    many events were read (0 when it was already up to date)."""
    store = ReadModelStore(path)
    try:
        return catch_up(UpTo(source, moment), store, page_size=REBUILD_PAGE_SIZE, progress=progress)
    finally:
        store.datastore.close()
