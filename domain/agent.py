"""The agents registry (spec §22): who the agents are, their status and capabilities.

An agent's id is chosen by the user (`agents register ops`), so its aggregate id is derived
from it (`agent_aggregate_id`), apart from job ids. Registering again replaces the values
given and resets the status to `idle`, as the anchor's upsert does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError
from .run import RUN_NAMESPACE

AGENT_STATUSES = ("idle", "busy", "offline")
MAIN_AGENT = "main"
"""Registered by the daemon when it starts (spec §22), as `Main Agent` with every capability."""


def agent_aggregate_id(agent_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"agent/{agent_id}"))


def check_agent_id(agent_id: object) -> str:
    if not isinstance(agent_id, str) or not agent_id:
        raise DomainError("Agent id must be a non-empty string")
    return agent_id


class Agent(Aggregate):
    class Registered(Aggregate.Created):
        """The first registration: `values` holds name, status, session_key and
        capabilities; `last_seen_at` stays empty until the next."""

        agent_id: str
        values: dict[str, Any]

    @event(Registered)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        agent_id: str,
        values: dict[str, Any],
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.agent_id = agent_id
        self.name: str | None = None
        self.status = "idle"
        self.session_key: str | None = None
        self.capabilities: list[str] | None = None
        self._take(values)

    class Updated(Aggregate.Event):
        """A later registration: `values` replace the old ones (those not given stay);
        the agent was seen."""

        agent_id: str
        values: dict[str, Any]

    @event(Updated)
    def _record_update(
        self, agent_id: str, values: dict[str, Any], meta: EventMeta, timestamp: datetime
    ) -> None:
        self._take(values)

    def _take(self, values: dict[str, Any]) -> None:
        for field in ("name", "status", "session_key", "capabilities"):
            if field in values:
                setattr(self, field, values[field])


def register(
    existing: Agent | None,
    agent_id: str,
    *,
    name: str | None = None,
    status: str = "idle",
    session_key: str | None = None,
    capabilities: list[str] | None = None,
    meta: EventMeta,
    at: datetime,
) -> Agent:
    """The anchor's upsert: a new agent, or the existing one with the values given (None
    keeps a value; the status is always given, so it goes back to idle)."""
    check_agent_id(agent_id)
    if status not in AGENT_STATUSES:
        raise DomainError(f"Invalid agent status '{status}'. Valid: {', '.join(AGENT_STATUSES)}")
    given: dict[str, Any] = {"name": name, "status": status, "session_key": session_key}
    given["capabilities"] = capabilities
    values = {key: value for key, value in given.items() if value is not None}
    if existing is None:
        return Agent(
            id=agent_aggregate_id(agent_id),
            agent_id=agent_id,
            values=values,
            meta=meta,
            timestamp=at,
        )
    existing._record_update(agent_id=agent_id, values=values, meta=meta, timestamp=at)
    return existing
