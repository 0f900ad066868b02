"""Approval gates (spec §16) as decisions: holding a dispatch, and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.approval import Approval, approval_id, approval_request_text
from ocsched.domain.dispatch import Dispatch
from ocsched.domain.schedule import from_ts

from .deliveries import new_delivery
from .facts import Facts
from .plan import Plan, Row, reactor_meta

DEFAULT_APPROVAL_TIMEOUT_S = 3600


def request_approval(
    dispatch: Dispatch, job: Row, *, meta: EventMeta, now: datetime, facts: Facts
) -> Plan:
    """Hold a chain dispatch for a person's decision and tell the job's target."""
    approval = Approval(
        id=approval_id(dispatch.id),
        job_id=job["id"],
        dispatch_id=dispatch.id,
        source_run_id=dispatch.source_run_id,
        meta=meta,
        timestamp=now,
    )
    dispatch.hold(approval.id, meta, now)
    text = approval_request_text(job)
    notice = new_delivery(approval.id, job, "approval", text, meta=meta, now=now, facts=facts)
    return Plan(
        [approval, dispatch, *notice],
        notes=[f"job {job['id']}: waiting for approval {approval.id}"],
    )


def approval_expired(row: Row, now: datetime) -> bool:
    waited = now - from_ts(row["requested_at"])
    return waited > timedelta(seconds=row["approval_timeout_s"] or DEFAULT_APPROVAL_TIMEOUT_S)


def expire_approval(
    row: Row, approval: Approval, dispatch: Dispatch, *, owner: str, now: datetime
) -> Plan:
    """A pending approval older than the job's `approval_timeout_s` takes `approval_auto`:
    approve releases the dispatch, anything else rejects it and cancels the dispatch."""
    if not approval_expired(row, now):
        return Plan()
    meta = reactor_meta(owner, f"approval-timeout/{row['id']}")
    if row["approval_auto"] == "approve":
        approval.approve("timeout", meta, now, automatic=True)
        dispatch.release(approval.id, meta, now)
    else:
        approval.reject("timeout", "approval timed out", meta, now, automatic=True)
        dispatch.cancel("approval timed out", meta, now)
    return Plan([approval, dispatch])
