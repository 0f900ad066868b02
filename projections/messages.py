"""The post office's read models (spec §21): `messages` in the anchor's columns, their
`message_receipts`, and `message_timers` (when the daemon next has something to do for a
message: consume a spawn request, expire it, try a failed send again)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ocsched.domain.message_rules import expiry_instant, receipt_id
from ocsched.domain.schedule import to_ts

from .projection import Projection
from .rows import Delete, Update, Upsert
from .stamps import moment, ts

if TYPE_CHECKING:
    from ocsched.domain.message import Message

MESSAGES = "messages"
RECEIPTS = "message_receipts"
TIMERS = "message_timers"

COLUMNS: dict[str, type] = {
    "id": str,
    "from_agent": str,
    "to_agent": str,
    "team_id": str,
    "member_id": str,
    "task_id": str,
    "reply_to": str,
    "kind": str,
    "subject": str,
    "body": str,
    "metadata": str,
    "priority": int,
    "channel": str,
    "delivery_to": str,
    "status": str,
    "delivered_at": str,
    "read_at": str,
    "ack_required": int,
    "ack_at": str,
    "delivery_attempts": int,
    "last_error": str,
    "team_mapped_at": str,
    "expires_at": str,
    "created_at": str,
    "job_id": str,
    "run_id": str,
    "owner": str,
}
RECEIPT_COLUMNS: dict[str, type] = {
    "id": str,
    "message_id": str,
    "event_type": str,
    "attempt": int,
    "actor": str,
    "detail": str,
    "created_at": str,
}
TIMER_COLUMNS: dict[str, type] = {
    "id": str,
    "spawn_due": str,
    "expires_due": str,
    "retry_due": str,
    "spawn_job_id": str,
    "spawn_error": str,
}
SEND_RETRY_S = (15, 60, 300)
"""After a failed send, the daemon tries again after these waits (the last repeats)."""


def create_tables(db: Any) -> None:
    db[MESSAGES].create(COLUMNS, pk="id")
    db[MESSAGES].create_index(["to_agent", "status"])
    db[MESSAGES].create_index(["from_agent", "created_at"])
    db[MESSAGES].create_index(["reply_to"])
    db[MESSAGES].create_index(["team_id", "created_at"])
    db[RECEIPTS].create(RECEIPT_COLUMNS, pk="id")
    db[RECEIPTS].create_index(["message_id", "created_at"])
    db[TIMERS].create(TIMER_COLUMNS, pk="id")
    db[TIMERS].create_index(["spawn_due"])
    db[TIMERS].create_index(["expires_due"])
    db[TIMERS].create_index(["retry_due"])


def sent(event: Message.Sent):
    stamp = ts(event)
    yield Upsert(
        MESSAGES,
        {
            "id": event.originator_id,
            "from_agent": event.from_agent,
            "to_agent": event.to_agent,
            "team_id": event.team_id,
            "member_id": event.member_id,
            "task_id": event.task_id,
            "reply_to": event.reply_to,
            "kind": event.kind,
            "subject": event.subject,
            "body": event.body,
            "metadata": event.metadata,
            "priority": event.priority,
            "channel": event.channel,
            "delivery_to": event.delivery_to,
            "status": "pending",
            "delivered_at": None,
            "read_at": None,
            "ack_required": int(event.ack_required),
            "ack_at": None,
            "delivery_attempts": 0,
            "last_error": None,
            "team_mapped_at": None,
            "expires_at": event.expires_at,
            "created_at": stamp,
            "job_id": event.job_id,
            "run_id": event.run_id,
            "owner": event.owner,
        },
    )
    expires = expiry_instant(event.expires_at) if event.expires_at else None
    if event.kind == "spawn" or expires:  # (most messages never need the daemon)
        yield Upsert(
            TIMERS,
            {
                "id": event.originator_id,
                "spawn_due": stamp if event.kind == "spawn" else None,
                "expires_due": to_ts(expires) if expires else None,
                "retry_due": None,
                "spawn_job_id": None,
                "spawn_error": None,
            },
        )


def _receipt(event: Any, kind: str, attempt: int | None, actor: str, detail: str | None):
    message_id = event.originator_id
    return Upsert(
        RECEIPTS,
        {
            "id": receipt_id(message_id, event.originator_version),
            "message_id": message_id,
            "event_type": kind,
            "attempt": attempt,
            "actor": actor,
            "detail": detail,
            "created_at": ts(event),
        },
    )


def delivered(event: Message.Delivered):
    values = {
        "status": "delivered",
        "delivered_at": ts(event),
        "delivery_attempts": event.attempt,
        "last_error": None,
    }
    yield Update(MESSAGES, event.originator_id, values)
    yield Update(TIMERS, event.originator_id, {"spawn_due": None})
    yield _receipt(event, "attempt", event.attempt, event.actor, None)


def read(event: Message.Read):
    values = {"status": "read", "read_at": event.read_at, "ack_at": event.ack_at}
    yield Update(MESSAGES, event.originator_id, values)
    yield Update(TIMERS, event.originator_id, {"expires_due": None, "retry_due": None})
    if event.receipt:
        yield _receipt(event, "ack", None, event.actor, None)


def acknowledged(event: Message.Acknowledged):
    values = {"status": event.status, "read_at": event.read_at, "ack_at": event.ack_at}
    yield Update(MESSAGES, event.originator_id, values)
    yield Update(TIMERS, event.originator_id, {"expires_due": None, "retry_due": None})
    yield _receipt(event, "ack", None, event.actor, event.note)


def attempt_recorded(event: Message.AttemptRecorded):
    values = {"delivery_attempts": event.attempt, "last_error": event.error}
    yield Update(MESSAGES, event.originator_id, values)
    if event.ok:
        yield Update(TIMERS, event.originator_id, {"retry_due": None})
    else:
        wait = SEND_RETRY_S[min(event.attempt, len(SEND_RETRY_S)) - 1]
        retry = to_ts(moment(event) + timedelta(seconds=wait))
        yield Upsert(TIMERS, {"id": event.originator_id, "retry_due": retry})
    kind = "attempt" if event.ok else "error"
    yield _receipt(event, kind, event.attempt, event.actor, event.error)


def expired(event: Message.Expired):
    yield Update(MESSAGES, event.originator_id, {"status": "expired"})
    yield Update(TIMERS, event.originator_id, {"expires_due": None, "retry_due": None})


def spawn_handled(event: Message.SpawnHandled):
    values = {"spawn_due": None, "spawn_job_id": event.job_id, "spawn_error": event.error}
    yield Update(TIMERS, event.originator_id, values)


def team_mapped(event: Message.TeamMapped):
    yield Update(MESSAGES, event.originator_id, {"team_mapped_at": ts(event)})


def pruned(event: Message.Pruned):
    message_id = event.originator_id
    yield Delete(RECEIPTS, message_id, pk="message_id")
    yield Update(MESSAGES, message_id, {"reply_to": None}, pk="reply_to")
    yield Delete(MESSAGES, message_id)
    yield Delete(TIMERS, message_id)


projection = Projection(
    name="messages",
    version=2,
    tables=(MESSAGES, RECEIPTS, TIMERS),
    create_tables=create_tables,
    handlers={
        "message:Message.Sent": sent,
        "message:Message.Delivered": delivered,
        "message:Message.Read": read,
        "message:Message.Acknowledged": acknowledged,
        "message:Message.AttemptRecorded": attempt_recorded,
        "message:Message.Expired": expired,
        "message:Message.SpawnHandled": spawn_handled,
        "message:Message.TeamMapped": team_mapped,
        "message:Message.Pruned": pruned,
    },
)
