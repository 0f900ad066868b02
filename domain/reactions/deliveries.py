"""Deliveries as decisions (spec §13): what to record for a text to a target, and for a
failed send."""

from __future__ import annotations

from datetime import datetime, timedelta

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.delivery import (
    Delivery,
    delivery_id,
    resolve_target,
    retry_backoff_seconds,
    split_message,
)
from ocsched.domain.schedule import to_ts

from .facts import Facts
from .plan import Plan, Row


def new_delivery(
    source_id: str,
    job: Row,
    purpose: str,
    text: str,
    *,
    meta: EventMeta,
    now: datetime,
    facts: Facts,
) -> list[Delivery]:
    """The delivery of `text` to the job's target (an alias resolved), split for its
    channel; none when the job has no target. `job` may be any row with `id`,
    `delivery_channel` and `delivery_to` (a dispatch label's, for instance)."""
    target = resolve_target(job, facts.alias)
    if target is None:
        return []
    channel, to = target
    return [
        Delivery(
            id=delivery_id(source_id, purpose),
            run_id=source_id,
            job_id=job["id"],
            purpose=purpose,
            channel=channel,
            target=to,
            chunks=split_message(text, channel),
            meta=meta,
            timestamp=now,
        )
    ]


def label_target(row: Row) -> Row:
    """A dispatch label's row in the shape `new_delivery` reads."""
    return {
        "id": row["label"],
        "delivery_channel": row["deliver_channel"],
        "delivery_to": row["deliver_to"],
    }


def send_failed(
    delivery: Delivery, index: int, error: str, *, meta: EventMeta, now: datetime
) -> Plan:
    """A chunk's send failed: record the attempt and when to try again (2, 4, 8 … s)."""
    attempt = delivery.attempts.get(index, 0) + 1
    retry_at = to_ts(now + timedelta(seconds=retry_backoff_seconds(attempt)))
    delivery.record_failure(index, error, retry_at, meta, now)
    return Plan([delivery])
