"""What a projection is: a name, its tables, and a mapping from event type to row changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.utils import get_topic

from .rows import RowChange

Handler = Callable[[Any], Iterable[RowChange]]


@dataclass(frozen=True)
class Projection:
    """`version` names the table layout; a new version makes the read model rebuild itself."""

    name: str
    version: int
    tables: tuple[str, ...]
    create_tables: Callable[[Any], None]
    """Creates the tables on a sqlite_utils.Database."""
    handlers: Mapping[type, Handler]
    topics: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", frozenset(map(get_topic, self.handlers)))

    def changes(self, event: Any) -> Iterable[RowChange]:
        return self.handlers[type(event)](event)
