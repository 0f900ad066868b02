"""The Dispatch aggregate: a durable request to run a job later (spec §17).

Manual (`jobs run`), chain (a parent finished), retry (a run failed) and replay (a run
crashed under at-least-once) requests wait here until due. The run a dispatch causes has
an id derived from the dispatch, so a dispatch is executed at most once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError
from .run import RUN_NAMESPACE

DispatchKind = Literal["manual", "chain", "retry", "replay"]
DISPATCH_STATUSES = ("pending", "awaiting_approval", "claimed", "done", "cancelled")


def chain_dispatch_id(parent_run_id: str, child_job_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"chain/{parent_run_id}/{child_job_id}"))


def retry_dispatch_id(failed_run_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"retry/{failed_run_id}"))


def replay_dispatch_id(crashed_run_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"replay/{crashed_run_id}"))


class Dispatch(Aggregate):
    class Requested(Aggregate.Created):
        job_id: str
        kind: DispatchKind
        scheduled_for: str
        source_run_id: str | None
        retry_count: int

    @event(Requested)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        job_id: str,
        kind: DispatchKind,
        scheduled_for: str,
        source_run_id: str | None,
        retry_count: int,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.job_id = job_id
        self.kind = kind
        self.scheduled_for = scheduled_for
        self.source_run_id = source_run_id
        self.retry_count = retry_count
        self.status = "pending"
        self.approved = False

    class Claimed(Aggregate.Event):
        run_id: str

    @event(Claimed)
    def _record_claimed(self, run_id: str, meta: EventMeta, timestamp: datetime) -> None:
        self.status = "claimed"

    class Cancelled(Aggregate.Event):
        reason: str

    @event(Cancelled)
    def _record_cancelled(self, reason: str, meta: EventMeta, timestamp: datetime) -> None:
        self.status = "cancelled"

    class Held(Aggregate.Event):
        """Waiting for approval `approval_id` (spec §16)."""

        approval_id: str

    @event(Held)
    def _record_held(self, approval_id: str, meta: EventMeta, timestamp: datetime) -> None:
        self.status = "awaiting_approval"

    class Released(Aggregate.Event):
        """Approved: due again, and past the gate."""

        approval_id: str

    @event(Released)
    def _record_released(self, approval_id: str, meta: EventMeta, timestamp: datetime) -> None:
        self.status = "pending"
        self.approved = True

    def hold(self, approval_id: str, meta: EventMeta, at: datetime) -> None:
        self._require_pending()
        self._record_held(approval_id=approval_id, meta=meta, timestamp=at)

    def release(self, approval_id: str, meta: EventMeta, at: datetime) -> None:
        if self.status != "awaiting_approval":
            raise DomainError(f"Dispatch {self.id} is {self.status}")
        self._record_released(approval_id=approval_id, meta=meta, timestamp=at)

    def claim(self, run_id: str, meta: EventMeta, at: datetime) -> None:
        self._require_pending()
        self._record_claimed(run_id=run_id, meta=meta, timestamp=at)

    def cancel(self, reason: str, meta: EventMeta, at: datetime) -> None:
        if self.status not in ("pending", "awaiting_approval"):
            raise DomainError(f"Dispatch {self.id} is {self.status}")
        self._record_cancelled(reason=reason, meta=meta, timestamp=at)

    def _require_pending(self) -> None:
        if self.status != "pending":
            raise DomainError(f"Dispatch {self.id} is {self.status}")
