"""The post office's commands (spec §5.5): `msg`, `messages` and `queue`; the service
functions, and the CLI handlers over them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .context import Context
from .output import CommandError

if TYPE_CHECKING:
    from ocsched.domain.message import Message

Row = dict[str, Any]
UNREAD = ("pending", "delivered")


# Service functions: usable from Python, one per behaviour.


def send_message(ctx: Context, from_agent: Any, to_agent: Any, body: Any, **fields: Any) -> Row:
    """Post a message (spec §21.1); returns its row. `fields`: kind, subject, metadata (a
    JSON value or text), priority, channel, delivery_to, team_id, member_id, task_id,
    reply_to, expires_at, job_id, run_id, owner, ack_required."""
    import json

    from ocsched.domain.message import MessageError
    from ocsched.domain.message import send_message as new_message

    metadata = fields.pop("metadata", None)
    if metadata is not None and not isinstance(metadata, str):
        metadata = json.dumps(metadata, separators=(",", ":"))
    try:
        message = new_message(
            str(uuid.uuid4()),
            from_agent=from_agent,
            to_agent=to_agent,
            body=body,
            metadata=metadata,
            meta=ctx.meta(),
            at=ctx.now,
            **fields,
        )
    except MessageError as error:
        raise CommandError(str(error)) from None
    ctx.save(message)
    row = get_message(ctx, message.id)
    assert row is not None
    return row


def get_message(ctx: Context, message_id: str) -> Row | None:
    from ocsched.projections import message_views

    db = ctx.views()
    return None if db is None else message_views.message(db, message_id)


def inbox(ctx: Context, agent: str, limit: int, statuses: tuple[str, ...] = UNREAD) -> list[Row]:
    """Messages to the agent or broadcast, inbox order (spec §21.3)."""
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.inbox(db, agent, statuses, limit)


def team_inbox(
    ctx: Context, team: str, limit: int, member: str | None, task: str | None
) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.team_inbox(db, team, limit, member, task)


def outbox(ctx: Context, agent: str, limit: int) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.outbox(db, agent, limit)


def thread(ctx: Context, message_id: str) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.thread(db, message_id)


def receipts(ctx: Context, message_id: str, limit: int) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.receipts(db, message_id, limit)


def unread_count(ctx: Context, agent: str) -> int:
    from ocsched.projections import message_views

    db = ctx.views()
    return 0 if db is None else message_views.unread_count(db, agent)


def _load(ctx: Context, message_id: str) -> Message | None:
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.message import Message

    if get_message(ctx, message_id) is None:
        return None  # (never posted, or pruned)
    try:
        message: Any = ctx.log.repository.get(message_id)
    except AggregateNotFoundError:
        return None
    return message if isinstance(message, Message) else None


def acknowledge(ctx: Context, message_id: str, actor: str, note: str | None) -> Row:
    """Spec §21.4: any status; pending and delivered become read."""
    message = _load(ctx, message_id)
    if message is None:
        raise CommandError(f"Message not found: {message_id}")
    message.acknowledge(actor, note, ctx.meta(), ctx.now)
    ctx.save(message)
    row = get_message(ctx, message_id)
    assert row is not None
    return row


def mark_read(ctx: Context, message_id: str) -> None:
    """`msg read`: pending or delivered -> read with an `ack` receipt; anything else (an
    unknown id too) records nothing."""
    message = _load(ctx, message_id)
    if message is not None and message.read(ctx.meta(), ctx.now, receipt=True):
        ctx.save(message)


def read_all(ctx: Context, agent: str) -> int:
    """Every unread message to the agent or broadcast -> read, without receipts; returns
    how many (a broadcast read is read for everybody, as in the anchor)."""

    rows = inbox(ctx, agent, -1)
    changed = []
    for row in rows:
        message: Message = ctx.log.repository.get(row["id"])
        if message.read(ctx.meta(), ctx.now, receipt=False):
            changed.append(message)
    if changed:
        ctx.save(*changed)
    return len(changed)


def queue(ctx: Context, agent: str, limit: int) -> Row:
    """`queue list`: the unread count, and the newest `limit` unread in inbox order."""
    rows = inbox(ctx, agent, limit)
    delivered = sum(1 for row in rows if row["status"] == "delivered")
    return {
        "agent": agent,
        "pending": unread_count(ctx, agent),
        "delivered": delivered,
        "messages": rows,
    }


def prune_messages(ctx: Context) -> int:
    """Spec §26's message retention, now; returns how many messages it removed."""
    from datetime import timedelta

    from ocsched.domain.reactions import messages as reactions
    from ocsched.domain.schedule import to_ts
    from ocsched.projections import message_views

    db = ctx.views()
    if db is None:
        return 0
    rows = message_views.prune_candidates(db, to_ts(ctx.now - timedelta(days=3)))
    plan = reactions.prune(
        rows, owner="cli", now=ctx.now, load=ctx.log.repository.get, meta=ctx.meta()
    )
    if plan.records:
        ctx.save(*plan.records)
    return len(plan.records)
