"""Inter-agent messages, the post office (spec §21): one aggregate per message.

A message is sent once and then delivered (injected into an agent's prompt, or consumed
as a spawn request), read, acknowledged, given delivery attempts, expired or pruned; each
of those is an event, and every receipt of the anchor's `message_receipts` is one of them.
Events carry the values they leave behind (`read_at`, `ack_at`, the attempt number), so
the read model is a plain copy and a rebuild gives the same rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
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


class Message(Aggregate):
    class Sent(Aggregate.Created):
        """A message was posted. `metadata` is JSON text (objects serialized)."""

        from_agent: str
        to_agent: str
        kind: str
        subject: str | None
        body: str
        metadata: str | None
        priority: int
        channel: str | None
        delivery_to: str | None
        team_id: str | None
        member_id: str | None
        task_id: str | None
        reply_to: str | None
        expires_at: str | None
        job_id: str | None
        run_id: str | None
        owner: str | None
        ack_required: bool

    @event(Sent)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        from_agent: str,
        to_agent: str,
        kind: str,
        subject: str | None,
        body: str,
        metadata: str | None,
        priority: int,
        channel: str | None,
        delivery_to: str | None,
        team_id: str | None,
        member_id: str | None,
        task_id: str | None,
        reply_to: str | None,
        expires_at: str | None,
        job_id: str | None,
        run_id: str | None,
        owner: str | None,
        ack_required: bool,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.from_agent, self.to_agent, self.kind = from_agent, to_agent, kind
        self.body, self.job_id, self.expires_at = body, job_id, expires_at
        self.status = "pending"
        self.delivered_at: str | None = None
        self.read_at: str | None = None
        self.ack_at: str | None = None
        self.attempts = 0
        self.spawn_handled = False
        self.team_mapped = False
        self.pruned = False

    class Delivered(Aggregate.Event):
        """Injected into an agent's prompt, or consumed as a spawn request: pending ->
        delivered, with an `attempt` receipt."""

        attempt: int
        actor: str

    @event(Delivered)
    def _record_delivered(
        self, attempt: int, actor: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.status, self.delivered_at, self.attempts = "delivered", to_ts(timestamp), attempt

    class Read(Aggregate.Event):
        """Marked read (`msg read`: an `ack` receipt by `actor`; `readall`/`queue clear`:
        none)."""

        actor: str
        receipt: bool
        read_at: str
        ack_at: str

    @event(Read)
    def _record_read(
        self,
        actor: str,
        receipt: bool,
        read_at: str,
        ack_at: str,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.status, self.read_at, self.ack_at = "read", read_at, ack_at

    class Acknowledged(Aggregate.Event):
        """Acknowledged by `actor` (any status; pending and delivered become read)."""

        actor: str
        note: str | None
        status: str
        read_at: str
        ack_at: str

    @event(Acknowledged)
    def _record_acknowledged(
        self,
        actor: str,
        note: str | None,
        status: str,
        read_at: str,
        ack_at: str,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.status, self.read_at, self.ack_at = status, read_at, ack_at

    class AttemptRecorded(Aggregate.Event):
        """A send by the inbox consumer went out (`ok`) or failed (`error`)."""

        ok: bool
        attempt: int
        actor: str
        error: str | None

    @event(AttemptRecorded)
    def _record_attempt(
        self,
        ok: bool,
        attempt: int,
        actor: str,
        error: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.attempts = attempt

    class Expired(Aggregate.Event):
        pass

    @event(Expired)
    def _record_expired(self, meta: EventMeta, timestamp: datetime) -> None:
        self.status = "expired"

    class SpawnHandled(Aggregate.Event):
        """A spawn message was consumed (spec §21.7): the job it created, or why none."""

        job_id: str | None
        error: str | None

    @event(SpawnHandled)
    def _record_spawn(
        self, job_id: str | None, error: str | None, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.spawn_handled = True

    class TeamMapped(Aggregate.Event):
        """The team adapter (spec §23.5) projected it into its team's mailbox."""

    @event(TeamMapped)
    def _record_team_mapped(self, meta: EventMeta, timestamp: datetime) -> None:
        self.team_mapped = True

    class Pruned(Aggregate.Event):
        """Retention (spec §26) removed it from the read model; its events stay."""

        rule: str

    @event(Pruned)
    def _record_pruned(self, rule: str, meta: EventMeta, timestamp: datetime) -> None:
        self.pruned = True

    # Commands: each records nothing when it would change nothing.

    @property
    def unread(self) -> bool:
        return self.status in UNREAD

    def deliver(self, actor: str, meta: EventMeta, at: datetime) -> bool:
        if self.status != "pending":
            return False
        self._record_delivered(attempt=self.attempts + 1, actor=actor, meta=meta, timestamp=at)
        return True

    def read(self, meta: EventMeta, at: datetime, *, receipt: bool, actor: str = "agent") -> bool:
        if not self.unread:
            return False
        stamp = to_ts(at)
        self._record_read(
            actor=actor,
            receipt=receipt,
            read_at=stamp,
            ack_at=self.ack_at or stamp,
            meta=meta,
            timestamp=at,
        )
        return True

    def acknowledge(self, actor: str, note: str | None, meta: EventMeta, at: datetime) -> None:
        stamp = to_ts(at)
        self._record_acknowledged(
            actor=actor,
            note=note,
            status="read" if self.unread else self.status,
            read_at=self.read_at or stamp,
            ack_at=self.ack_at or stamp,
            meta=meta,
            timestamp=at,
        )

    def record_attempt(self, actor: str, error: str | None, meta: EventMeta, at: datetime) -> None:
        """A send went out (`error` None) or failed; the status stays as it is."""
        self._record_attempt(
            ok=error is None,
            attempt=self.attempts + 1,
            actor=actor,
            error=error,
            meta=meta,
            timestamp=at,
        )

    def expire(self, meta: EventMeta, at: datetime) -> bool:
        instant = expiry_instant(self.expires_at)
        if not self.unread or instant is None or at < instant:
            return False
        self._record_expired(meta=meta, timestamp=at)
        return True

    def handle_spawn(
        self, job_id: str | None, error: str | None, meta: EventMeta, at: datetime
    ) -> bool:
        """Consume a spawn request once: record its job (or the error) and mark it
        delivered, in one save with the job."""
        if self.kind != "spawn" or self.spawn_handled or self.delivered_at is not None:
            return False
        self._record_spawn(job_id=job_id, error=error, meta=meta, timestamp=at)
        self.deliver("dispatcher", meta, at)
        return True

    def map_to_team(self, meta: EventMeta, at: datetime) -> bool:
        if self.team_mapped:
            return False
        self._record_team_mapped(meta=meta, timestamp=at)
        return True

    def prune(self, rule: str, meta: EventMeta, at: datetime) -> bool:
        if self.pruned:
            return False
        self._record_pruned(rule=rule, meta=meta, timestamp=at)
        return True


def send_message(
    message_id: str,
    *,
    from_agent: Any,
    to_agent: Any,
    body: Any,
    meta: EventMeta,
    at: datetime,
    kind: str | None = None,
    subject: str | None = None,
    metadata: str | None = None,
    priority: int | None = None,
    channel: str | None = None,
    delivery_to: str | None = None,
    team_id: str | None = None,
    member_id: str | None = None,
    task_id: str | None = None,
    reply_to: str | None = None,
    expires_at: str | None = None,
    job_id: str | None = None,
    run_id: str | None = None,
    owner: str | None = None,
    ack_required: bool = False,
) -> Message:
    """A new message after spec §21.1's checks (empty optional text counts as none)."""
    checked_kind = check_message(from_agent, to_agent, body, kind)
    return Message(
        id=message_id,
        from_agent=str(from_agent),
        to_agent=str(to_agent),
        kind=checked_kind,
        subject=subject or None,
        body=str(body),
        metadata=metadata or None,
        priority=priority or 0,
        channel=channel or None,
        delivery_to=delivery_to or None,
        team_id=team_id or None,
        member_id=member_id or None,
        task_id=task_id or None,
        reply_to=reply_to or None,
        expires_at=expires_at or None,
        job_id=job_id or None,
        run_id=run_id or None,
        owner=owner or None,
        ack_required=bool(ack_required),
        meta=meta,
        timestamp=at,
    )


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
