"""The base every ocsched aggregate and event builds on.

Aggregates have text ids (a job id may be chosen by the user), and every event carries
`meta`: who caused it, from where, in which invocation, and why.
"""

from __future__ import annotations

import dataclasses
import inspect
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


class _EventType(MetaDomainEvent):
    """The library's event metaclass (every event class a frozen dataclass) with less code
    generated per class, which every process pays for each event class as it starts:

    * a class declaring no field of its own whose fields, in order, are those of the
      generated `__init__` it inherits, takes that base's methods instead of generating
      the same again: the library defines two such classes for most events (a
      redefinition per aggregate, a caller per `@event` method);
    * the others generate `__init__` and the frozen `__setattr__`/`__delattr__` only;
      `__repr__`, `__eq__` and `__hash__`, the same for every event, are written once
      below and behave as the generated ones."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        event_cls: Any = type.__new__(mcs, name, bases, namespace)
        if namespace.get("__annotations__") or not _inherits_its_init(event_cls):
            event_cls = dataclasses.dataclass(frozen=True, repr=False, eq=False)(event_cls)
            for method in (_event_repr, _event_eq, _event_hash):
                if method.__name__ not in namespace:
                    setattr(event_cls, method.__name__, method)
        event_cls.__signature__ = inspect.signature(event_cls.__init__)
        return event_cls


def _inherits_its_init(event_cls: type) -> bool:
    """Whether the `__init__` the class inherits takes exactly its fields, in order."""
    fields: dict[str, dataclasses.Field] = {}
    for base in event_cls.__mro__[-1:0:-1]:  # the order dataclasses collects them in
        fields.update(getattr(base, "__dataclass_fields__", None) or {})
    donor = next(base for base in event_cls.__mro__ if "__init__" in base.__dict__)
    own = donor.__dict__.get("__dataclass_fields__")
    return own == fields and list(own) == list(fields)


def _compared(event: Any) -> tuple:
    return tuple(getattr(event, field.name) for field in dataclasses.fields(event) if field.compare)


def _event_repr(self: Any) -> str:
    shown = (f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr)
    return f"{type(self).__qualname__}({', '.join(shown)})"


_event_repr.__name__ = "__repr__"


def _event_eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


_event_eq.__name__ = "__eq__"


def _event_hash(self: Any) -> int:
    return hash(_compared(self))


_event_hash.__name__ = "__hash__"


@dataclass(frozen=True)
class Event(CanMutateAggregate[str], metaclass=_EventType):
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
