"""What a projection is: a name, its tables, and a mapping from event type to row changes.

Handlers are keyed by `<domain module>:<event class>` (e.g. `job:Job.Created`) rather
than by the classes themselves, so loading the projections imports no aggregate: a
command imports only the domain modules of the events it actually reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .rows import RowChange

Handler = Callable[[Any], Iterable[RowChange]]
DOMAIN_PACKAGE = "ocsched.domain"


def topic_of(event: Any) -> str:
    """The stored topic of an event's class (`module:QualName`, as the library writes it)."""
    kind = type(event)
    return f"{kind.__module__}:{kind.__qualname__}"


@dataclass(frozen=True)
class Projection:
    """`version` names the table layout; a new version makes the read model rebuild itself."""

    name: str
    version: int
    tables: tuple[str, ...]
    create_tables: Callable[[Any], None]
    """Creates the tables on a sqlite_utils.Database."""
    handlers: Mapping[str, Handler]
    """`<domain module>:<event class>` -> the row changes for one such event."""
    by_topic: dict[str, Handler] = field(init=False)
    topics: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        topics = {f"{DOMAIN_PACKAGE}.{key}": handler for key, handler in self.handlers.items()}
        object.__setattr__(self, "by_topic", topics)
        object.__setattr__(self, "topics", frozenset(topics))

    def handles(self, event: Any) -> bool:
        return topic_of(event) in self.by_topic

    def changes(self, event: Any) -> Iterable[RowChange]:
        return self.by_topic[topic_of(event)](event)
