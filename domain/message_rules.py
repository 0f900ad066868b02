"""The post office's rules (spec §21, §26) that need no aggregate: the kinds and their
inbox order, a message's checks, expiry, retention, receipt ids. Read models import this
module; `message.py` holds the aggregate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .dispatch_rules.values import time_ms
from .errors import DomainError
from .schedule import to_ts

KINDS = (
    "text",
    "task",
    "result",
    "status",
    "system",
    "spawn",
    "decision",
    "constraint",
    "fact",
    "preference",
)
STATUSES = ("pending", "delivered", "read", "expired", "failed")
KIND_RANK = {"constraint": 0, "decision": 1, "fact": 2, "task": 3, "preference": 4}
"""Spec §21.3: an inbox lists these kinds first, in this order; every other kind ranks 5."""
OTHER_KIND_RANK = 5
BROADCAST = "broadcast"
UNREAD = ("pending", "delivered")
MESSAGE_NAMESPACE = uuid.UUID("6f1c3c52-8d55-4d0b-9a43-6b2f1b1f0c21")


class MessageError(DomainError):
    """A message the post office refuses (spec §21.1's messages)."""


def inbox_rank(kind: str | None) -> int:
    return KIND_RANK.get(kind or "", OTHER_KIND_RANK)


def check_message(from_agent: Any, to_agent: Any, body: Any, kind: str | None) -> str:
    """Spec §21.1's checks in the anchor's order; returns the kind (default `text`)."""
    if not from_agent:
        raise MessageError("from_agent is required")
    if not to_agent:
        raise MessageError("to_agent is required")
    if body is None:
        raise MessageError("body is required")
    kind = kind or "text"
    if kind not in KINDS:
        raise MessageError(f"Invalid message kind '{kind}'. Valid: {', '.join(KINDS)}")
    return kind


def receipt_id(message_id: str, version: int) -> str:
    """A receipt's id, derived from the event that records it (a rebuild gives the same)."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"receipt/{message_id}/{version}"))


def expiry_instant(expires_at: str | None) -> datetime | None:
    """When a message with this `expires_at` (stored verbatim) expires: TS text or ISO 8601
    (no offset: UTC), compared at the anchor's one-second precision; None for no value or
    one that names no moment."""
    ms = time_ms(expires_at) if isinstance(expires_at, str) else None
    if ms is None:
        return None
    # `expires_at < now` at whole seconds: expired from the second after it.
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(seconds=1)


def prune_rule(row: dict[str, Any], now: datetime) -> str | None:
    """Spec §26's message retention, by `created_at`: read/expired/failed after 30 days,
    delivered after 3, kinds system and result after 3 whatever their status."""
    created = row["created_at"] or ""
    if row["kind"] in ("system", "result") and created < to_ts(now - timedelta(days=3)):
        return "system-result"
    if row["status"] == "delivered" and created < to_ts(now - timedelta(days=3)):
        return "delivered"
    if row["status"] in ("read", "expired", "failed") and created < to_ts(now - timedelta(days=30)):
        return "read-expired-failed"
    return None
