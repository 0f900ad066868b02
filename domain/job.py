"""The Job aggregate: a job's spec and its history of changes (spec §2, §4.7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import NotFound
from .job_spec import AT_JOB_SENTINEL_CRON, JobSpec, PayloadKind
from .schedule import next_run_at


class FieldChange(msgspec.Struct, frozen=True, array_like=True):
    old: Any
    new: Any


class Job(Aggregate):
    """A scheduled job. Its state is its spec plus `next_run_at` and whether it is deleted."""

    class Created(Aggregate.Created):
        """A job was added; `spec` is the full normalized spec with defaults applied.
        `state`: an imported job's scheduling state (`last_run_at`, `last_status`,
        `consecutive_errors`, `queued_count`, `updated_at`) as its source kept it."""

        spec: JobSpec
        next_run_at: str | None
        state: dict[str, Any] | None = None

    @event(Created)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        spec: JobSpec,
        next_run_at: str | None,
        meta: EventMeta,
        timestamp: datetime,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.next_run_at = next_run_at
        self.deleted = False

    class Updated(Aggregate.Event):
        """Fields changed: each changed field with its old and new value. `next_run_at`
        appears among them when the update moved the next fire time."""

        changes: dict[str, FieldChange]

    @event(Updated)
    def _record_changes(
        self, changes: dict[str, FieldChange], meta: EventMeta, timestamp: datetime
    ) -> None:
        values = {name: change.new for name, change in changes.items()}
        if "next_run_at" in values:
            self.next_run_at = values.pop("next_run_at")
        self.spec = msgspec.structs.replace(self.spec, **values)

    class Enabled(Aggregate.Event):
        next_run_at: str | None

    @event(Enabled)
    def _record_enabled(self, next_run_at: str | None, meta: EventMeta, timestamp: datetime):
        self.spec = msgspec.structs.replace(self.spec, enabled=1)
        self.next_run_at = next_run_at

    class Disabled(Aggregate.Event):
        pass

    @event(Disabled)
    def _record_disabled(self, meta: EventMeta, timestamp: datetime) -> None:
        self.spec = msgspec.structs.replace(self.spec, enabled=0)

    class Deleted(Aggregate.Event):
        pass

    @event(Deleted)
    def _record_deleted(self, meta: EventMeta, timestamp: datetime) -> None:
        self.deleted = True

    # Commands: each checks the job still exists and records nothing when nothing changes.

    def update(
        self, values: dict[str, Any], meta: EventMeta, at: datetime
    ) -> dict[str, FieldChange]:
        self._require_live()
        current = self.record()
        changes = {
            name: FieldChange(current.get(name), new)
            for name, new in values.items()
            if current.get(name) != new
        }
        if changes:
            self._record_changes(changes=changes, meta=meta, timestamp=at)
        return changes

    def enable(self, meta: EventMeta, at: datetime) -> None:
        """Re-enabling recomputes the next fire from `at`; a past one does not fire."""
        self._require_live()
        if not self.spec.enabled:
            upcoming = next_run_at(self.record(), at)
            self._record_enabled(next_run_at=upcoming, meta=meta, timestamp=at)

    def disable(self, meta: EventMeta, at: datetime) -> None:
        self._require_live()
        if self.spec.enabled:
            self._record_disabled(meta=meta, timestamp=at)

    def delete(self, meta: EventMeta, at: datetime) -> None:
        self._require_live()
        self._record_deleted(meta=meta, timestamp=at)

    def record(self) -> dict[str, Any]:
        """The spec fields and `next_run_at`, as one dict."""
        return {**msgspec.structs.asdict(self.spec), "next_run_at": self.next_run_at}

    def _require_live(self) -> None:
        if self.deleted:
            raise NotFound(f"Job not found: {self.id}")


SCHEDULE_FIELDS = frozenset(
    {"schedule_kind", "schedule_at", "schedule_cron", "schedule_tz", "parent_id"}
)
DERIVED_PAYLOAD_KIND: dict[str, PayloadKind] = {
    "main": "systemEvent",
    "shell": "shellCommand",
    "isolated": "agentTurn",
}
INPUT_ONLY_FIELDS = ("next_run_at", "run_now")


def new_job(
    spec: dict[str, Any],
    job_id: str,
    meta: EventMeta,
    now: datetime,
    state: dict[str, Any] | None = None,
) -> Job:
    """A Job from a validated, normalized spec: defaults applied, `payload_kind` derived,
    the at-job sentinel cron filled in, `next_run_at` computed as spec §4.5 says; `state`
    for an imported job (`Job.Created`)."""
    fields = {k: v for k, v in spec.items() if k not in INPUT_ONLY_FIELDS}
    job_spec = msgspec.convert({**fields, "id": job_id}, JobSpec)
    if job_spec.payload_kind is None:
        job_spec.payload_kind = DERIVED_PAYLOAD_KIND[job_spec.session_target]
    if job_spec.schedule_cron is None and (job_spec.parent_id or job_spec.schedule_kind == "at"):
        job_spec.schedule_cron = AT_JOB_SENTINEL_CRON
    if "next_run_at" in spec:
        next_run = spec["next_run_at"]
    else:
        record = msgspec.structs.asdict(job_spec)
        next_run = next_run_at(record, now, run_now=bool(spec.get("run_now")))
    return Job(
        id=job_id, spec=job_spec, next_run_at=next_run, meta=meta, timestamp=now, state=state
    )


def revise(job: Job, patch: dict[str, Any], meta: EventMeta, now: datetime) -> dict:
    """Apply a validated update patch; `next_run_at` moves when the schedule, the parent or
    a re-enable changes it and the patch does not set it (spec §4.5)."""
    values = dict(patch)
    re_enabled = values.get("enabled") == 1 and not job.spec.enabled
    if "next_run_at" not in values and (SCHEDULE_FIELDS & values.keys() or re_enabled):
        values["next_run_at"] = next_run_at({**job.record(), **values}, now)
    return job.update(values, meta, now)
