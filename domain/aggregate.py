"""The base every ocsched aggregate and event builds on.

Aggregates have text ids (a job id may be chosen by the user), and every event carries
`meta`: who caused it, from where, in which invocation, and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)


class EventMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Who and what caused an event.

    actor: the person or component (`--actor`, `OCSCHED_ACTOR`, the OS user, `reactor`).
    origin: where the request came from (the job's `origin`, else `cli`).
    correlation_id: one per CLI invocation or reactor decision; groups its events.
    cause: the id of what made this happen (a timer slot, a parent run, …), if any.
    """

    actor: str
    origin: str
    correlation_id: str
    cause: str | None = None


@dataclass(frozen=True)
class Event(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    originator_id: str
    originator_version: int
    timestamp: datetime
    meta: EventMeta


@dataclass(frozen=True)
class Created(CanInitAggregate[str], Event):
    originator_topic: str


class Aggregate(BaseAggregate[str]):
    """An aggregate with a text id and events that carry `meta`."""

    class Event(Event):
        pass

    class Created(Event, Created):
        pass

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads this method's signature; the inherited `object.__init__` is a
        # builtin, whose signature costs the first tokenize regex (~5 ms) of every start.
        super().__init__()

    def __init_subclass__(cls, *, created_event_name: str = "") -> None:
        # Without its own `Event`, the library defines one per aggregate and then redefines
        # every event class declared on it as a subclass of that one: two generated
        # dataclasses per event, paid by every process that imports the aggregate.
        for name in ("Event", "Created"):
            if name not in cls.__dict__:
                setattr(cls, name, getattr(Aggregate, name))
        super().__init_subclass__(created_event_name=created_event_name)
