"""Bring read models up to date with the event log: catch up, rebuild, report lag."""

from __future__ import annotations

from dataclasses import dataclass

from ..adapters.event_store import EventLog
from .projection import Projection
from .store import ReadModelStore

PAGE_SIZE = 1000


def all_projections() -> tuple[Projection, ...]:
    from . import approvals, deliveries, dispatches, jobs, labels, runs

    return (
        jobs.projection,
        runs.projection,
        dispatches.projection,
        deliveries.projection,
        approvals.projection,
        labels.projection,
    )


def by_name(name: str) -> Projection:
    for projection in all_projections():
        if projection.name == name:
            return projection
    names = ", ".join(p.name for p in all_projections())
    raise KeyError(f"Unknown projection: {name}. Known: {names}")


def catch_up(log: EventLog, store: ReadModelStore, projections=None) -> int:
    """Apply every event not yet applied; returns how many events were read. Each page of
    the log is read once and applied to all projections in one transaction."""
    chosen = list(projections or all_projections())
    for projection in chosen:
        store.ensure_tables(projection)
    read_page = _page_reader(log, frozenset().union(*(p.topics for p in chosen)))
    consumed = 0
    while applied := store.apply(chosen, read_page):
        consumed += applied
        if applied < PAGE_SIZE:
            break
    return consumed


def rebuild(log: EventLog, store: ReadModelStore, projection: Projection) -> int:
    """Drop the projection's tables and replay the whole log into fresh ones."""
    store.drop(projection)
    return catch_up(log, store, [projection])


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return self.head - self.position


def status(log: EventLog, store: ReadModelStore) -> list[ProjectionStatus]:
    head = log.recorder.max_notification_id() or 0
    return [ProjectionStatus(p.name, store.position(p.name), head) for p in all_projections()]


def _page_reader(log: EventLog, topics: frozenset[str]):
    def read_page(position: int) -> list:
        notifications = log.recorder.select_notifications(
            start=position, limit=PAGE_SIZE, inclusive_of_start=False
        )
        return [
            (n.id, log.mapper.to_domain_event(n) if n.topic in topics else None)
            for n in notifications
        ]

    return read_page
