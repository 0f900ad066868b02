"""Approval gates (spec §16): a chain-triggered run of an `approval_required` job waits
for a person. The request, each decision and who made it are events; a rejection cancels
the waiting dispatch, so nothing is left stuck (the anchor's placeholder run and stuck
queue row are not copied)."""

from __future__ import annotations

import uuid
from datetime import datetime

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError
from .run import RUN_NAMESPACE

APPROVAL_STATUSES = ("pending", "approved", "rejected", "timed_out")


def approval_id(dispatch_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"approval/{dispatch_id}"))


def approval_request_text(job: dict) -> str:
    return (
        f"⚠️ Job '{job['name']}' requires approval.\n"
        f"Approve: openclaw-scheduler jobs approve {job['id']}\n"
        f"Reject: openclaw-scheduler jobs reject {job['id']}"
    )


class Approval(Aggregate):
    class Requested(Aggregate.Created):
        job_id: str
        dispatch_id: str
        source_run_id: str | None

    @event(Requested)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        job_id: str,
        dispatch_id: str,
        source_run_id: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.job_id = job_id
        self.dispatch_id = dispatch_id
        self.status = "pending"

    class Approved(Aggregate.Event):
        dispatch_id: str
        by: str
        automatic: bool

    @event(Approved)
    def _record_approved(
        self, dispatch_id: str, by: str, automatic: bool, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.status = "timed_out" if automatic else "approved"

    class Rejected(Aggregate.Event):
        dispatch_id: str
        by: str
        reason: str | None
        automatic: bool

    @event(Rejected)
    def _record_rejected(
        self,
        dispatch_id: str,
        by: str,
        reason: str | None,
        automatic: bool,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.status = "timed_out" if automatic else "rejected"

    def approve(self, by: str, meta: EventMeta, at: datetime, *, automatic=False) -> None:
        self._require_pending()
        self._record_approved(
            dispatch_id=self.dispatch_id, by=by, automatic=automatic, meta=meta, timestamp=at
        )

    def reject(self, by: str, reason: str | None, meta, at: datetime, *, automatic=False):
        self._require_pending()
        self._record_rejected(
            dispatch_id=self.dispatch_id,
            by=by,
            reason=reason,
            automatic=automatic,
            meta=meta,
            timestamp=at,
        )

    def _require_pending(self) -> None:
        if self.status != "pending":
            raise DomainError(f"Approval {self.id} is already {self.status}")
