"""The dispatch queue read model (spec §17): what waits to run, and what became of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.dispatch import Dispatch
    from ocsched.domain.run import Run

TABLE = "dispatches"
COLUMNS: dict[str, type] = {
    "id": str,
    "job_id": str,
    "dispatch_kind": str,
    "status": str,
    "scheduled_for": str,
    "source_run_id": str,
    "retry_count": int,
    "run_id": str,
    "reason": str,
    "created_at": str,
    "claimed_at": str,
    "processed_at": str,
    "approval_id": str,
    "approved": int,
}


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="id")
    db[TABLE].create_index(["status", "scheduled_for"])
    db[TABLE].create_index(["job_id"])
    db[TABLE].create_index(["run_id"])


def requested(event: Dispatch.Requested):
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(
        id=event.originator_id,
        job_id=event.job_id,
        dispatch_kind=event.kind,
        status="pending",
        scheduled_for=event.scheduled_for,
        source_run_id=event.source_run_id,
        retry_count=event.retry_count,
        created_at=ts(event),
        approved=0,
    )
    yield Upsert(TABLE, row)


def claimed(event: Dispatch.Claimed):
    values = {"status": "claimed", "run_id": event.run_id, "claimed_at": ts(event)}
    yield Update(TABLE, event.originator_id, values)


def cancelled(event: Dispatch.Cancelled):
    values = {"status": "cancelled", "reason": event.reason, "processed_at": ts(event)}
    yield Update(TABLE, event.originator_id, values)


def held(event: Dispatch.Held):
    values = {"status": "awaiting_approval", "approval_id": event.approval_id}
    yield Update(TABLE, event.originator_id, values)


def released(event: Dispatch.Released):
    values = {"status": "pending", "approved": 1, "scheduled_for": ts(event)}
    yield Update(TABLE, event.originator_id, values)


def run_finished(event: Run.Finished):
    values = {"status": "done", "processed_at": ts(event)}
    yield Update(TABLE, event.originator_id, values, pk="run_id")


projection = Projection(
    name="dispatches",
    version=2,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "dispatch:Dispatch.Requested": requested,
        "dispatch:Dispatch.Claimed": claimed,
        "dispatch:Dispatch.Cancelled": cancelled,
        "dispatch:Dispatch.Held": held,
        "dispatch:Dispatch.Released": released,
        "run:Run.Finished": run_finished,
    },
)
