"""The Run aggregate: one execution of a job, from the decision to run it to its outcome.

A run's id is derived from what caused it (the job's clock slot, or the dispatch), so a
cause can produce at most one run: a second daemon deciding the same thing fails to save.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError

RUN_NAMESPACE = uuid.UUID("6f1c1d0e-8f57-4c5e-9f0b-4b7e3c1a9d21")

Trigger = Literal["clock", "manual", "chain", "retry", "replay"]
TERMINAL = frozenset({"ok", "error", "timeout", "skipped", "cancelled", "crashed"})
RUN_STATUSES = (
    "pending",
    "queued",
    "running",
    "ok",
    "error",
    "timeout",
    "skipped",
    "awaiting_approval",
    "approved",
    "cancelled",
    "crashed",
)


def clock_run_id(job_id: str, slot: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"clock/{job_id}/{slot}"))


def dispatch_run_id(dispatch_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"dispatch/{dispatch_id}"))


class Run(Aggregate):
    class Scheduled(Aggregate.Created):
        """The reactor decided to run a job. `owner` names the daemon that runs it
        (`host:pid:start`); `job_changes` are the job's scheduling fields that moved with
        this decision (a clock fire moves `next_run_at`)."""

        job_id: str
        trigger: Trigger
        slot: str | None
        dispatch_id: str | None
        retry_count: int
        retry_of: str | None
        triggered_by_run: str | None
        replay_of: str | None
        run_timeout_ms: int
        owner: str
        job_changes: dict[str, Any]

    @event(Scheduled)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        job_id: str,
        trigger: Trigger,
        slot: str | None,
        dispatch_id: str | None,
        retry_count: int,
        retry_of: str | None,
        triggered_by_run: str | None,
        replay_of: str | None,
        run_timeout_ms: int,
        owner: str,
        job_changes: dict[str, Any],
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.triggered_by_run = triggered_by_run
        self.trigger = trigger
        self.retry_count = retry_count
        self.status = "pending"
        self.process_group: int | None = None
        self.started_at: datetime | None = None
        self.session_key: str | None = None
        self.gates: list[str] = []
        self.idempotency_key = meta.cause
        """The run's key (spec §19): its cause, which its id is derived from."""
        self.key_released = False

    # The events below are applied by their own `apply`, and recorded with the library's
    # `trigger_event`: a run records thousands of them in a burst, and an `@event` method
    # costs three times as much per call (its arguments matched to the event's fields on
    # the way in and again on the way out).

    class Queued(Aggregate.Event):
        """Held back until `behind` finishes: by the job's `queue` overlap policy, or by
        the job's busy resource pool."""

        job_id: str
        behind: str
        job_changes: dict[str, Any]

        def apply(self, run: Run) -> None:
            run.status = "queued"

    class Gated(Aggregate.Event):
        """A dispatch-time gate (spec §8.3) decided before the run may start: `gate`
        (identity, credential_handoff, child_credentials, trust, proof, authorization,
        contracts), `decision` (permit, warn, deny, escalate), why, and the gate's record
        (`detail`, what the run record's column for that gate shows)."""

        job_id: str
        gate: str
        decision: str
        reason: str
        detail: dict[str, Any] | None

        def apply(self, run: Run) -> None:
            run.gates.append(self.gate)

    class KeyReleased(Aggregate.Event):
        """`idem release`: the run's idempotency key is shown released (spec §5.6). The
        cause still made its one run; running the job again is `jobs run`."""

        job_id: str

        def apply(self, run: Run) -> None:
            run.key_released = True

    class Started(Aggregate.Event):
        """The run's process started; `process_group` is killed if the run is abandoned."""

        job_id: str
        process_id: int | None
        process_group: int | None
        job_changes: dict[str, Any]
        session_key: str | None = None

        def apply(self, run: Run) -> None:
            run.status = "running"
            run.session_key = self.session_key
            run.process_group = self.process_group
            run.started_at = self.timestamp

    class Finished(Aggregate.Event):
        """The run ended: `status` is ok, error, timeout, skipped, cancelled or crashed.
        `outcome` holds the run record's result fields (summary, shell columns, …);
        `job_changes` the job's scheduling fields this outcome moved."""

        job_id: str
        status: str
        outcome: dict[str, Any]
        job_changes: dict[str, Any]

        def apply(self, run: Run) -> None:
            run.status = self.status

    # Commands

    def queue_behind(self, run_id: str, job_changes: dict, meta: EventMeta, at: datetime):
        self._require("pending")
        self._record(self.Queued, meta, at, behind=run_id, job_changes=job_changes)

    def gate(
        self,
        gate: str,
        decision: str,
        reason: str,
        detail: dict[str, Any] | None,
        meta: EventMeta,
        at: datetime,
    ) -> None:
        """Record a gate's decision on a run that has not started."""
        self._require("pending", "queued")
        self._record(
            self.Gated, meta, at, gate=gate, decision=decision, reason=reason, detail=detail
        )

    def release_key(self, meta: EventMeta, at: datetime) -> None:
        if not self.key_released:
            self._record(self.KeyReleased, meta, at)

    def start(
        self,
        process_id: int | None,
        process_group: int | None,
        meta: EventMeta,
        at: datetime,
        job_changes: dict[str, Any] | None = None,
        session_key: str | None = None,
    ) -> None:
        """The process started, or (for an agent turn) the gateway accepted the turn."""
        self._require("pending", "queued")
        self._record(
            self.Started,
            meta,
            at,
            process_id=process_id,
            process_group=process_group,
            job_changes=job_changes or {},
            session_key=session_key,
        )

    def finish(
        self,
        status: str,
        outcome: dict[str, Any],
        job_changes: dict[str, Any],
        meta: EventMeta,
        at: datetime,
    ) -> None:
        if status not in TERMINAL:
            raise DomainError(f"Not a final run status: {status}")
        self._require("pending", "queued", "running")
        self._record(
            self.Finished, meta, at, status=status, outcome=outcome, job_changes=job_changes
        )

    def _record(self, event_class: type, meta: EventMeta, at: datetime, **fields: Any) -> None:
        self.trigger_event(event_class, job_id=self.job_id, meta=meta, timestamp=at, **fields)

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL

    def _require(self, *statuses: str) -> None:
        if self.status not in statuses:
            raise DomainError(f"Run {self.id} is {self.status}")
