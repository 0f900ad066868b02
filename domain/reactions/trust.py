"""Admission through the v0.2 gates (spec §8.3): each gate's decision is recorded on the
run (`Run.Gated`) before it may start; a refusal finishes it as an error that never runs,
is never retried and fires no children."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ocsched.domain import trust
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.policies import job_changes_after_run
from ocsched.domain.run import Run

from .facts import Facts
from .outcome import end_job
from .plan import Row


@dataclass
class Admission:
    """`job`: the row to run with (the parent's auth profile when the child credential
    policy inherits it), None when refused; `records`: aggregates besides the run to save
    with it (a used-up job's end); `notes`: log lines (warnings, the refusal)."""

    job: Row | None
    records: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def admit(run: Run, job: Row, *, meta: EventMeta, now: datetime, facts: Facts) -> Admission:
    """Decide the gates for a run about to start or be queued, recording each decision."""
    parent = facts.job(job["parent_id"]) if job.get("parent_id") else None
    if not trust.applies(job, parent):
        return Admission(job)
    gates = trust.evaluate(job, parent)
    for decision in gates.decisions:
        run.gate(decision.gate, decision.decision, decision.reason, decision.detail, meta, now)
    notes = [
        f"run {run.id} of job {job['id']}: {d.gate} {d.decision}: {d.reason}"
        for d in gates.decisions
        if d.decision != "permit"
    ]
    if gates.refusal is None:
        return Admission(inherit_profile(job, gates.auth_profile), notes=notes)
    current = facts.current_job(job) or job
    fields = {"summary": gates.refusal, "error_message": gates.refusal, "duration_ms": 0}
    run.finish("error", fields, job_changes_after_run(current, "error", now), meta, now)
    ended = end_job(current, "error", meta=meta, now=now, facts=facts)
    return Admission(None, list(ended), [*notes, f"run {run.id} refused: {gates.refusal}"])


def runnable_job(job: Row, facts: Facts) -> Row:
    """The row a queued run starts with: its gates were decided when it was queued; only
    the inherited auth profile is taken again."""
    parent = facts.job(job["parent_id"]) if job.get("parent_id") else None
    if parent is None or not trust.applies(job, parent):
        return job
    return inherit_profile(job, trust.evaluate(job, parent).auth_profile)


def inherit_profile(job: Row, profile: str | None) -> Row:
    return {**job, "auth_profile": profile} if profile else job
