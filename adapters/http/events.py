"""The log's events for `/api/v1/events` and its stream: `events tail`'s filters and
records (commands/events.py), read forward from a position or backward from one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from ocsched.commands.context import Context
from ocsched.commands.events import EventFilter, Stored, parse_moment, record_of, stored_events

WINDOW = 2000
"""Positions read at a time when paging back through the log."""


class MultiMapping(Protocol):
    def getall(self, key: str, default: list[str]) -> list[str]: ...


def event_filter(query: MultiMapping, now: datetime) -> EventFilter:
    """`events tail`'s filters from a query string; each may be repeated (any of them)."""
    since, until = query.getall("since", []), query.getall("until", [])
    return EventFilter(
        types=tuple(query.getall("type", [])),
        actors=tuple(query.getall("actor", [])),
        origins=tuple(query.getall("origin", [])),
        aggregates=tuple(query.getall("aggregate", [])),
        correlations=tuple(query.getall("correlation", [])),
        since=parse_moment(since[-1], "since", now) if since else None,
        until=parse_moment(until[-1], "until", now) if until else None,
    )


def events_after(
    ctx: Context, after: int, chosen: EventFilter, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` matching events after position `after`, in log order, and the
    position read up to (the last match's once `limit` are found, else the head's)."""
    records: list[dict[str, Any]] = []
    position = after
    for stored in stored_events(ctx, after):
        position = stored.position
        if chosen.matches(stored):
            records.append(record_of(ctx, stored))
            if len(records) >= limit:
                break
    return records, position


def events_before(
    ctx: Context, before: int | None, chosen: EventFilter, limit: int
) -> list[dict[str, Any]]:
    """The newest `limit` matching events before position `before` (the head's next
    without), in log order."""
    end = ctx.log.max_position() + 1 if before is None else before
    kept: list[Stored] = []
    while end > 1 and len(kept) < limit:
        start = max(end - WINDOW - 1, 0)
        kept[:0] = [s for s in _between(ctx, start, end) if chosen.matches(s)]
        end = start + 1
    return [record_of(ctx, stored) for stored in kept[-limit:]]


def _between(ctx: Context, start: int, end: int) -> Iterator[Stored]:
    """Stored events with `start` < position < `end`."""
    for stored in stored_events(ctx, start):
        if stored.position >= end:
            return
        yield stored


def position_of(query: Mapping[str, str], name: str) -> int | None:
    """A position parameter (a whole number), or None when absent; ValueError when bad."""
    text = query.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"{name} must be a log position (a whole number), got: {text}")
    return int(text)
