"""What projections need from the event log, as a Protocol: the log's head and its events
after a position, decoded. The adapters' `EventLog` provides it; projections import no
adapter."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol


class EventSource(Protocol):
    def max_position(self) -> int:
        """The notification id of the newest event (0 for an empty log)."""
        ...

    def read_after(
        self, position: int, limit: int, topics: Collection[str]
    ) -> Sequence[tuple[int, str, Any]]:
        """Up to `limit` events after `position`, in log order, as (notification id, topic,
        event); the event is None, not decoded, when its topic is not in `topics`. An event
        may be a light record rather than the domain event: the same attributes, but its
        `timestamp` may be the stored RFC 3339 text (`stamps` reads either)."""
        ...
