"""What follows a run's outcome (spec §14, §15, §19, §25): one rule for each of the job's
new state, retries, chains, the end of a used-up job and the delivery of the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.chain import MAX_CHAIN_DEPTH
from ocsched.domain.delivery import delivery_text
from ocsched.domain.dispatch import (
    Dispatch,
    chain_dispatch_id,
    replay_dispatch_id,
    retry_dispatch_id,
)
from ocsched.domain.job import Job
from ocsched.domain.policies import (
    children_to_fire,
    ends_job,
    job_changes_after_run,
    retry_allowed,
    retry_delay,
)
from ocsched.domain.run import Run
from ocsched.domain.schedule import from_ts, to_ts
from ocsched.domain.trust import evidence_record

from .deliveries import new_delivery
from .facts import Facts
from .plan import Appended, Plan, Row, reactor_meta

CRASH_MESSAGE = "The scheduler stopped while this run was active; its processes were killed"
FOREIGN_TIMEOUT_GRACE_S = 60
"""Another daemon's run this far past its timeout is finished as `timeout` by any daemon."""


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, as the executor saw it. `content` is the text chains match
    and deliveries send; `exception` marks an agent turn that failed in the call itself;
    `deliverable` is false for replies that must not be announced (sentinels)."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    exception: bool = False
    deliverable: bool = True


def conclude(
    run: Run,
    job: Row,
    outcome: Outcome,
    *,
    retry_base_s: float,
    owner: str,
    now: datetime,
    facts: Facts,
) -> Plan:
    """Record the outcome and what follows from it, all in one transaction: a retry, or
    the job's new state, its children's dispatches and, for a used-up job, its end; and
    the delivery the job's delivery mode asks for. `job` is the row the run started with;
    the job's current row is preferred when it still exists."""
    if run.is_finished:
        return Plan()
    if job.get("job_type") == "watchdog":
        from .watchdog import conclude_watchdog  # it builds on this module

        return conclude_watchdog(run, job, outcome, owner=owner, now=now, facts=facts)
    meta = reactor_meta(owner, run.id)
    current = facts.current_job(job) or job
    started = run.started_at or now
    fields = {**outcome.fields, "duration_ms": int((now - started).total_seconds() * 1000)}
    evidence = evidence_record(current, run.id, outcome.status, run.gates, now)
    if evidence is not None:
        fields["evidence_record"] = evidence
    records: list[Any] = []
    notes: list[str] = []
    retry = None
    if retry_allowed(current, outcome.status, run.retry_count) and _retry_has_room(
        current, facts, notes
    ):
        attempt = run.retry_count + 1
        fields["retry_count"] = attempt  # spec §14.1: the failed run shows its attempt
        records.append(
            Dispatch(
                id=retry_dispatch_id(run.id),
                job_id=current["id"],
                kind="retry",
                scheduled_for=to_ts(now + retry_delay(attempt, retry_base_s)),
                source_run_id=run.id,
                retry_count=attempt,
                meta=meta,
                timestamp=now,
            )
        )
        job_changes = job_changes_after_run(current, outcome.status, now, final=False)
        retry = (attempt, current["max_retries"])
    else:
        job_changes = job_changes_after_run(current, outcome.status, now)
        chained, skipped = _chain_dispatches(run, current, outcome, meta, now, facts)
        records += chained
        notes += skipped
        records += end_job(current, outcome.status, meta=meta, now=now, facts=facts)
    text = delivery_text(
        current,
        agent=current["session_target"] != "shell",
        status=outcome.status,
        text=outcome.content,
        error=fields.get("error_message"),
        exception=outcome.exception,
        retry=retry,
        deliverable=outcome.deliverable,
    )
    if text:
        records += new_delivery(run.id, current, "result", text, meta=meta, now=now, facts=facts)
    run.finish(outcome.status, fields, job_changes, meta, now)
    return Plan([run, *records], notes=notes)


def end_job(
    job: Row,
    status: str,
    *,
    meta: EventMeta,
    now: datetime,
    facts: Facts,
    keep: bool = False,
) -> list[Any]:
    """A used-up job is deleted or disabled (`ends_job`), unless that already happened;
    `keep` disables where it would delete (a crash leaves the job to be looked at)."""
    ending = ends_job(job, status)
    if ending is None:
        return []
    if ending == "delete" and not keep:
        # Its version is all a deletion needs: loading the job (its spec) cost more than
        # the rest of a one-shot run's bookkeeping.
        version = facts.job_version(job["id"])
        if version is None:
            return []
        deleted = Job.Deleted(
            originator_id=job["id"], originator_version=version + 1, timestamp=now, meta=meta
        )
        return [Appended(job["id"], [deleted])]
    aggregate: Job = facts.load(job["id"])
    if aggregate.deleted:
        return []
    aggregate.disable(meta, now)
    return [aggregate] if aggregate.pending_events else []


def _retry_has_room(job: Row, facts: Facts, notes: list[str]) -> bool:
    """Spec §14.1, §17.3: a retry needs room in the job's dispatch backlog (the dispatch
    that started this run still counts); without it the failure is final, so its failure
    children fire."""
    backlog = facts.dispatch_backlog(job["id"])
    if backlog < job["max_queued_dispatches"]:
        return True
    notes.append(f"retry skipped for job {job['id']}: dispatch backlog full ({backlog})")
    return False


def _chain_dispatches(
    run: Run, job: Row, outcome: Outcome, meta: EventMeta, now: datetime, facts: Facts
) -> tuple[list[Dispatch], list[str]]:
    """Spec §15: a dispatch per child to fire, after its trigger delay, unless its backlog
    is full or the chain has grown deeper than the limit since it was checked. A child
    whose condition could not be decided (a regex that timed out) is a note, not a fire."""
    dispatches, notes = [], []
    triggers = children_to_fire(job, facts.children(job["id"]), outcome.status, outcome.content)
    notes += [f"not triggering {child['id']}: {reason}" for child, reason in triggers.skipped]
    for child in triggers.fire:
        if facts.dispatch_backlog(child["id"]) >= child["max_queued_dispatches"]:
            continue
        if ancestors(child, facts) > MAX_CHAIN_DEPTH:
            notes.append(f"not triggering {child['id']}: chain deeper than {MAX_CHAIN_DEPTH}")
            continue
        delay = child["trigger_delay_s"] or 0
        due = now + timedelta(seconds=delay) if delay else now - timedelta(seconds=1)
        dispatches.append(
            Dispatch(
                id=chain_dispatch_id(run.id, child["id"]),
                job_id=child["id"],
                kind="chain",
                scheduled_for=to_ts(due),
                source_run_id=run.id,
                retry_count=0,
                meta=meta,
                timestamp=now,
            )
        )
    return dispatches, notes


def ancestors(job: Row, facts: Facts) -> int:
    """How many ancestors a job has now (the structure may have changed since the checks
    at create/update time, which is why the reactor counts again)."""
    count, parent = 0, job["parent_id"]
    while parent and count <= MAX_CHAIN_DEPTH:
        row = facts.job(parent)
        count, parent = count + 1, row["parent_id"] if row else None
    return count


def recover_crashed(run: Run, job: Row | None, *, owner: str, now: datetime, facts: Facts) -> Plan:
    """Spec §19.3, §25: a run whose daemon is gone (its processes already killed) ends
    `crashed`. Under at-least-once a replay dispatch runs the job again; under at-most-once
    the crash is final, and a used-up job is disabled."""
    if run.is_finished:
        return Plan()
    meta = reactor_meta(owner, f"crash/{run.id}")
    records: list[Any] = []
    job_changes: dict[str, Any] = {}
    if job is not None:
        replay = job["delivery_guarantee"] == "at-least-once"
        job_changes = job_changes_after_run(job, "crashed", now, final=not replay)
        if replay:
            records.append(
                Dispatch(
                    id=replay_dispatch_id(run.id),
                    job_id=job["id"],
                    kind="replay",
                    scheduled_for=to_ts(now - timedelta(seconds=1)),
                    source_run_id=run.id,
                    retry_count=run.retry_count or 0,
                    meta=meta,
                    timestamp=now,
                )
            )
        else:
            records += end_job(job, "crashed", meta=meta, now=now, facts=facts, keep=True)
    run.finish("crashed", {"error_message": CRASH_MESSAGE}, job_changes, meta, now)
    return Plan([run, *records], notes=[f"run {run.id} of job {run.job_id}: crashed, recovered"])


def foreign_run_overdue(row: Row, now: datetime) -> bool:
    """Another daemon's run is far past its timeout (spec §25)."""
    limit = timedelta(milliseconds=row["run_timeout_ms"] or 0)
    overdue = now - from_ts(row["started_at"]) - limit
    return overdue >= timedelta(seconds=FOREIGN_TIMEOUT_GRACE_S)


def time_out_foreign(
    run: Run,
    row: Row,
    job: Row | None,
    *,
    retry_base_s: float,
    owner: str,
    now: datetime,
    facts: Facts,
) -> Plan:
    """Finish another daemon's overdue run as `timeout`, with the usual consequences when
    its job still exists."""
    limit_ms = row["run_timeout_ms"] or 0
    message = f"Exceeded {limit_ms}ms timeout"
    outcome = Outcome("timeout", {"error_message": message}, message)
    if job is not None:
        return conclude(
            run, job, outcome, retry_base_s=retry_base_s, owner=owner, now=now, facts=facts
        )
    if run.is_finished:
        return Plan()
    run.finish("timeout", outcome.fields, {}, reactor_meta(owner, f"sweep/{run.id}"), now)
    return Plan([run])
