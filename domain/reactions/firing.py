"""A due clock slot or dispatch becomes a run, if admission allows (spec §7, §8, §17)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocsched.domain.dispatch import Dispatch
from ocsched.domain.run import Run, clock_run_id, dispatch_run_id
from ocsched.domain.schedule import from_ts, next_run_at

from . import trust
from .approvals import request_approval
from .facts import Facts
from .plan import Defer, Plan, Row, StartRun, reactor_meta

GATEWAY_DEFER_S = 60
"""An agent job due while the gateway is down waits this long in memory (spec §6.3)."""
DEFAULT_MAX_QUEUED = 25
DEFAULT_MAX_PENDING_APPROVALS = 10


def needs_gateway(job: Row) -> bool:
    """Shell jobs never wait for the gateway; agent jobs need it. A watchdog runs its check
    command in the shell whatever its session target (spec §24)."""
    return job["session_target"] != "shell" and job["job_type"] != "watchdog"


def fire_slot(
    job: Row | None, *, gateway_up: bool, owner: str, now: datetime, facts: Facts
) -> Plan:
    """The job's clock slot (`next_run_at`) is due: one run with an id derived from the
    slot, and the job's next slot moved with the same decision."""
    if job is None or not job["enabled"] or job["parent_id"] or not job["next_run_at"]:
        return Plan()
    slot = job["next_run_at"]
    if from_ts(slot) > now:
        return Plan()
    if not gateway_up and needs_gateway(job):
        return Plan(effects=[Defer(f"job/{job['id']}", GATEWAY_DEFER_S)])
    upcoming = None if job["schedule_kind"] == "at" else next_run_at(job, now)
    cause = f"clock/{job['id']}/{slot}"
    run = _new_run(
        clock_run_id(job["id"], slot),
        job,
        trigger="clock",
        slot=slot,
        job_changes={"next_run_at": upcoming},
        owner=owner,
        cause=cause,
        now=now,
    )
    return admit(run, job, [], owner=owner, cause=cause, now=now, facts=facts)


def fire_dispatch(
    row: Row | None,
    dispatch: Dispatch | None,
    job: Row | None,
    *,
    gateway_up: bool,
    owner: str,
    now: datetime,
    facts: Facts,
) -> Plan:
    """A pending dispatch is due (spec §17): its run, or its cancellation when the job is
    gone or disabled (manual runs go ahead on a disabled job), or, for a chain dispatch of
    an `approval_required` job not yet approved, an approval request."""
    if row is None or dispatch is None or row["status"] != "pending":
        return Plan()
    if from_ts(row["scheduled_for"]) > now:
        return Plan()
    cause = f"dispatch/{dispatch.id}"
    meta = reactor_meta(owner, cause)
    kind = row["dispatch_kind"]
    reason = None
    if job is None:
        reason = "job no longer exists"
    elif not job["enabled"] and kind != "manual":
        reason = "job is disabled"
    elif not gateway_up and needs_gateway(job):
        return Plan(effects=[Defer(f"dispatch/{dispatch.id}", GATEWAY_DEFER_S)])
    elif kind == "chain" and job["approval_required"] and not dispatch.approved:
        pending = facts.pending_approvals(job["id"])
        if pending < (job["max_pending_approvals"] or DEFAULT_MAX_PENDING_APPROVALS):
            return request_approval(dispatch, job, meta=meta, now=now, facts=facts)
        reason = f"too many pending approvals ({pending})"
    if reason or job is None:
        dispatch.cancel(reason or "", meta, now)
        return Plan([dispatch])
    source = row["source_run_id"]
    run = _new_run(
        dispatch_run_id(dispatch.id),
        job,
        trigger=kind,
        slot=None,
        job_changes={},
        owner=owner,
        cause=cause,
        now=now,
        dispatch_id=dispatch.id,
        retry_count=row["retry_count"] or 0,
        retry_of=source if kind in ("retry", "replay") else None,
        triggered_by_run=source,
        replay_of=source if kind == "replay" else None,
    )
    dispatch.claim(run.id, meta, now)
    return admit(run, job, [dispatch], owner=owner, cause=cause, now=now, facts=facts)


@dataclass(frozen=True)
class Busy:
    """Why a job may not start now: its own active run, or its resource pool's."""

    run_id: str
    pool: str | None = None

    @property
    def text(self) -> str:
        if self.pool:
            return f"resource pool {self.pool} busy with run {self.run_id}"
        return f"previous run still running: {self.run_id}"


def busy(job: Row, facts: Facts) -> Busy | None:
    """The job's own active run, else its pool's; this daemon's runs count at once, other
    daemons' through the read models."""
    own_run = facts.own_run_of(job["id"])
    if own_run is not None:
        return Busy(own_run)
    pool = job["resource_pool"]
    if pool and (own_run := facts.own_run_in_pool(pool)) is not None:
        return Busy(own_run, pool)
    own = facts.own_runs()
    for row in facts.active_runs_of(job["id"], pool):
        if row["id"] in own:
            continue
        return Busy(row["id"]) if row["job_id"] == job["id"] else Busy(row["id"], pool)
    return None


def admit(
    run: Run,
    job: Row,
    others: list[Any],
    *,
    owner: str,
    cause: str,
    now: datetime,
    facts: Facts,
) -> Plan:
    """Spec §8, §18: a busy job's overlap policy decides — `allow` starts anyway, `queue`
    holds the run, `skip` records it skipped. A busy resource pool holds the run until the
    pool frees (the anchor keeps such a dispatch pending and tries it again); see
    `_why_not_held` for when a blocked run is skipped instead."""
    meta = reactor_meta(owner, cause)
    blocked = busy(job, facts)
    if blocked and blocked.pool is None and job["overlap_policy"] == "allow":
        blocked = None
    if blocked is not None and (reason := _why_not_held(run, job, blocked, facts)):
        run.finish("skipped", {"summary": f"Skipped: {reason}"}, {}, meta, now)
        return Plan([run, *others])
    admitted = trust.admit(run, job, meta=meta, now=now, facts=facts)
    others = [*others, *admitted.records]
    if admitted.job is None:
        return Plan([run, *others], notes=admitted.notes)
    if blocked is not None:
        queued = len(facts.queued_runs(job["id"]))
        run.queue_behind(blocked.run_id, {"queued_count": queued + 1}, meta, now)
        return Plan([run, *others], notes=admitted.notes)
    return Plan([run, *others], [StartRun(run, admitted.job)], notes=admitted.notes)


def _why_not_held(run: Run, job: Row, blocked: Busy, facts: Facts) -> str | None:
    """Why a blocked run is skipped rather than held as `queued`, or None to hold it. The
    job's own busy run holds it only under `queue`; a busy pool always may. At most
    `max_queued_dispatches` of a job's runs wait, and a clock fire of a `skip` job waits
    only when no earlier run of the job already waits for the pool."""
    if blocked.pool is None and job["overlap_policy"] != "queue":
        return blocked.text
    queued = facts.queued_runs(job["id"])
    if blocked.pool and queued and run.trigger == "clock" and job["overlap_policy"] == "skip":
        return f"{blocked.text}; run {queued[0]['id']} already waits for it"
    if len(queued) >= (job["max_queued_dispatches"] or DEFAULT_MAX_QUEUED):
        queue = "overlap queue" if blocked.pool is None else f"resource pool {blocked.pool} queue"
        return f"{queue} full ({len(queued)} queued)"
    return None


def start_queued(ran: Row, facts: Facts) -> Plan:
    """A run of the job `ran` (its row as the run began) ended: the oldest queued run of
    that job or of its resource pool starts, if its job is free (spec §18)."""
    waiting = facts.queued_runs(ran["id"])
    if ran["resource_pool"]:
        pooled = facts.queued_runs_in_pool(ran["resource_pool"])
        ids = {row["id"] for row in pooled}
        waiting = sorted(
            [*pooled, *(row for row in waiting if row["id"] not in ids)],
            key=lambda row: row["dispatched_at"],
        )
    for row in waiting:
        job = facts.job(row["job_id"])
        if job is None or busy(job, facts):
            continue
        run: Run = facts.load(row["id"])
        if run.status != "queued":
            continue
        queued = len(facts.queued_runs(job["id"]))
        job = trust.runnable_job(job, facts)
        return Plan(effects=[StartRun(run, job, {"queued_count": queued - 1})])
    return Plan()


def _new_run(
    run_id: str,
    job: Row,
    *,
    trigger: Any,
    slot: str | None,
    job_changes: dict[str, Any],
    owner: str,
    cause: str,
    now: datetime,
    dispatch_id: str | None = None,
    retry_count: int = 0,
    retry_of: str | None = None,
    triggered_by_run: str | None = None,
    replay_of: str | None = None,
) -> Run:
    # (`_create` with the event class, as the library's documentation creates aggregates:
    # `Run(...)` first matches its arguments to `__init__`'s, a third of a burst run's create)
    return Run._create(
        Run.Scheduled,
        id=run_id,
        job_id=job["id"],
        trigger=trigger,
        slot=slot,
        dispatch_id=dispatch_id,
        retry_count=retry_count,
        retry_of=retry_of,
        triggered_by_run=triggered_by_run,
        replay_of=replay_of,
        run_timeout_ms=job["run_timeout_ms"],
        owner=owner,
        job_changes=job_changes,
        meta=reactor_meta(owner, cause),
        timestamp=now,
    )
