"""The approvals read model (spec §16)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.approval import Approval

TABLE = "approvals"
COLUMNS: dict[str, type] = {
    "id": str,
    "job_id": str,
    "dispatch_id": str,
    "run_id": str,
    "status": str,
    "requested_at": str,
    "resolved_at": str,
    "resolved_by": str,
    "notes": str,
}


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="id")
    db[TABLE].create_index(["job_id", "status"])


def requested(event: Approval.Requested):
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(
        id=event.originator_id,
        job_id=event.job_id,
        dispatch_id=event.dispatch_id,
        run_id=event.source_run_id,
        status="pending",
        requested_at=ts(event),
    )
    yield Upsert(TABLE, row)


def approved(event: Approval.Approved):
    yield Update(TABLE, event.originator_id, _resolution(event, "approved", None))


def rejected(event: Approval.Rejected):
    yield Update(TABLE, event.originator_id, _resolution(event, "rejected", event.reason))


def _resolution(event: Any, status: str, notes: str | None) -> dict[str, Any]:
    if event.automatic:
        status, notes = "timed_out", f"approval timed out: auto-{status.removesuffix('d')}"
    return {
        "status": status,
        "resolved_at": ts(event),
        "resolved_by": "timeout" if event.automatic else event.by,
        "notes": notes,
    }


projection = Projection(
    name="approvals",
    version=1,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "approval:Approval.Requested": requested,
        "approval:Approval.Approved": approved,
        "approval:Approval.Rejected": rejected,
    },
)
