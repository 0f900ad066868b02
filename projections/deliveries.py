"""Deliveries and delivery aliases read models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import Delete, Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.delivery import Alias, Delivery

DELIVERIES = "deliveries"
ALIASES = "delivery_aliases"

DELIVERY_COLUMNS: dict[str, type] = {
    "id": str,
    "run_id": str,
    "job_id": str,
    "purpose": str,
    "channel": str,
    "target": str,
    "text": str,
    "chunks": int,
    "chunks_sent": int,
    "attempts": int,
    "status": str,
    "last_error": str,
    "next_attempt_at": str,
    "created_at": str,
    "delivered_at": str,
}


def create_tables(db: Any) -> None:
    db[DELIVERIES].create(DELIVERY_COLUMNS, pk="id")
    db[DELIVERIES].create_index(["run_id"])
    db[DELIVERIES].create_index(["status", "next_attempt_at"])
    db[ALIASES].create(
        {"alias": str, "channel": str, "target": str, "description": str, "created_at": str},
        pk="alias",
    )


def requested(event: Delivery.Requested):
    stamp = ts(event)
    row: dict[str, Any] = {name: None for name in DELIVERY_COLUMNS}
    row.update(
        id=event.originator_id,
        run_id=event.run_id,
        job_id=event.job_id,
        purpose=event.purpose,
        channel=event.channel,
        target=event.target,
        text="\n".join(event.chunks),
        chunks=len(event.chunks),
        chunks_sent=0,
        attempts=0,
        status="pending",
        next_attempt_at=stamp,
        created_at=stamp,
    )
    yield Upsert(DELIVERIES, row)


def chunk_sent(event: Delivery.ChunkSent):
    # Chunks go out in order, so index + 1 of them are out.
    values: dict[str, Any] = {
        "chunks_sent": event.index + 1,
        "attempts": event.attempt,
        "last_error": None,
    }
    if event.complete:
        values.update(status="delivered", delivered_at=ts(event), next_attempt_at=None)
    yield Update(DELIVERIES, event.originator_id, values)


def attempt_failed(event: Delivery.AttemptFailed):
    values = {
        "attempts": event.attempt,
        "last_error": event.error,
        "next_attempt_at": event.retry_at,
        "status": "pending" if event.retry_at else "failed",
    }
    yield Update(DELIVERIES, event.originator_id, values)


def alias_added(event: Alias.Added | Alias.Changed):
    yield Upsert(
        ALIASES,
        {
            "alias": event.name,
            "channel": event.channel,
            "target": event.target,
            "description": event.description,
            "created_at": ts(event),
        },
        pk="alias",
    )


def alias_removed(event: Alias.Removed):
    yield Delete(ALIASES, event.name, pk="alias")


projection = Projection(
    name="deliveries",
    version=1,
    tables=(DELIVERIES, ALIASES),
    create_tables=create_tables,
    handlers={
        "delivery:Delivery.Requested": requested,
        "delivery:Delivery.ChunkSent": chunk_sent,
        "delivery:Delivery.AttemptFailed": attempt_failed,
        "delivery:Alias.Added": alias_added,
        "delivery:Alias.Changed": alias_added,
        "delivery:Alias.Removed": alias_removed,
    },
)
