"""What a reaction returns: events to record, then effects to perform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ocsched.domain.aggregate import EventMeta

REACTOR_ACTOR = "reactor"

Row = dict[str, Any]


def reactor_meta(owner: str, cause: str | None) -> EventMeta:
    """Metadata of a reactor decision: the daemon is the origin, the cause correlates."""
    return EventMeta(actor=REACTOR_ACTOR, origin=owner, correlation_id=cause or "", cause=cause)


class Appended:
    """A record of events decided for an aggregate without loading it (its version was
    enough): saved like an aggregate's pending events."""

    def __init__(self, aggregate_id: str, events: list[Any]) -> None:
        self.id = aggregate_id
        self.pending_events = events

    def collect_events(self) -> list[Any]:
        events, self.pending_events = self.pending_events, []
        return events


@dataclass(frozen=True)
class StartRun:
    """Execute a run whose `Run.Scheduled` (or `Queued`) is saved; `start_changes` go on
    its `Run.Started`."""

    run: Any
    job: Row
    start_changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Defer:
    """Do not fire this timer again before `seconds` (the gateway is down)."""

    timer: str
    seconds: float


Effect = StartRun | Defer


@dataclass
class Plan:
    """`records`: aggregates with new events, saved in one transaction. `effects`: what
    to do once (and only if) that save succeeded. `notes`: log lines for that moment."""

    records: list[Any] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records or self.effects or self.notes)
