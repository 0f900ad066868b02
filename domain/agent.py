"""The agents registry (spec §22): who the agents are, their status and capabilities.

An agent's id is chosen by the user (`agents register ops`), so its aggregate id is derived
from it (`agent_aggregate_id`), apart from job ids. Registering again replaces the values
given and resets the status to `idle`, as the anchor's upsert does.

An agent with a delivery target (`delivery_to`, on `delivery_channel`) has its inbox sent
there by the daemon (the anchor's inbox consumer, spec §26). The anchor sets these only in
its database; here `agents register --delivery-to …` records them, and `--no-delivery`
clears them.
"""

from __future__ import annotations

import re
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


DELIVERY_FIELDS = ("delivery_to", "delivery_channel")
"""What `register(..., clear_delivery=True)` clears: the inbox is no longer sent."""
TEXT_LIMITS = {"delivery_to": 256, "delivery_channel": 64, "brand_name": 200}
"""The agent's delivery texts and their longest length (a job's delivery_to, channel and
name)."""
_NOT_ONE_LINE = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
"""Control characters (C0, DEL, C1; tab and line breaks among them), the Unicode line and
paragraph separators, and lone surrogates."""


def check_agent_id(agent_id: object) -> str:
    if not isinstance(agent_id, str) or not agent_id:
        raise DomainError("Agent id must be a non-empty string")
    return agent_id


def check_text(field: str, value: object) -> str:
    """A delivery target, channel or brand: a non-empty single line of text."""
    if not isinstance(value, str):
        raise DomainError(f"{field} must be a string")
    if not value.strip():
        raise DomainError(f"{field} cannot be empty")
    if "\n" in value or "\r" in value:
        raise DomainError(f"{field} must be a single line")
    if re.search(_NOT_ONE_LINE, value):  # (compiled on first use, in re's cache)
        raise DomainError(f"{field} contains unsupported control characters")
    if len(value) > TEXT_LIMITS[field]:
        raise DomainError(f"{field} exceeds max length of {TEXT_LIMITS[field]}")
    return value


class Agent(Aggregate):
    class Registered(Aggregate.Created):
        """The first registration: `values` holds name, status, session_key,
        capabilities, and the delivery_to, delivery_channel and brand_name given;
        `last_seen_at` stays empty until the next."""

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
        self.delivery_to: str | None = None
        self.delivery_channel: str | None = None
        self.brand_name: str | None = None
        self._take(values)

    class Updated(Aggregate.Event):
        """A later registration: `values` replace the old ones (those not given stay; a
        None clears one, as `--no-delivery` does delivery_to and delivery_channel); the
        agent was seen."""

        agent_id: str
        values: dict[str, Any]

    @event(Updated)
    def _record_update(
        self, agent_id: str, values: dict[str, Any], meta: EventMeta, timestamp: datetime
    ) -> None:
        self._take(values)

    def _take(self, values: dict[str, Any]) -> None:
        for field in _FIELDS:
            if field in values:
                setattr(self, field, values[field])


_FIELDS = ("name", "status", "session_key", "capabilities", *TEXT_LIMITS)


def register(
    existing: Agent | None,
    agent_id: str,
    *,
    name: str | None = None,
    status: str = "idle",
    session_key: str | None = None,
    capabilities: list[str] | None = None,
    delivery_to: str | None = None,
    delivery_channel: str | None = None,
    brand_name: str | None = None,
    clear_delivery: bool = False,
    meta: EventMeta,
    at: datetime,
) -> Agent:
    """The anchor's upsert: a new agent, or the existing one with the values given (None
    keeps a value; the status is always given, so it goes back to idle).
    `clear_delivery` clears delivery_to and delivery_channel, so the daemon stops sending
    the agent's inbox; it cannot come with either of them."""
    check_agent_id(agent_id)
    if status not in AGENT_STATUSES:
        raise DomainError(f"Invalid agent status '{status}'. Valid: {', '.join(AGENT_STATUSES)}")
    texts = {"delivery_to": delivery_to, "delivery_channel": delivery_channel}
    texts["brand_name"] = brand_name
    for field, text in texts.items():
        if text is not None:
            check_text(field, text)
    if clear_delivery and (delivery_to is not None or delivery_channel is not None):
        raise DomainError(
            "Clearing the delivery cannot come with a delivery_to or delivery_channel"
        )
    given: dict[str, Any] = {"name": name, "status": status, "session_key": session_key}
    given["capabilities"] = capabilities
    given.update(texts)
    values = {key: value for key, value in given.items() if value is not None}
    if clear_delivery:
        values.update(dict.fromkeys(DELIVERY_FIELDS))
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
