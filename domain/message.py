"""Inter-agent messages, the post office (spec §21): one aggregate per message.

A message is sent once and then delivered (injected into an agent's prompt, or consumed
as a spawn request), read, acknowledged, given delivery attempts, expired or pruned; each
of those is an event, and every receipt of the anchor's `message_receipts` is one of them.
Events carry the values they leave behind (`read_at`, `ack_at`, the attempt number), so
the read model is a plain copy and a rebuild gives the same rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .message_rules import UNREAD, check_message, expiry_instant
from .schedule import to_ts


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
