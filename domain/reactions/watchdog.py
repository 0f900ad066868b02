"""A watchdog check's outcome (spec §24): the run's record, the alert or completion notice
to the watchdog's own target, and the watchdog's end once the watched task is over."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocsched.domain.job import Job
from ocsched.domain.policies import job_changes_after_run
from ocsched.domain.run import Run
from ocsched.domain.watchdog import CHECKED, judge

from .deliveries import new_delivery
from .facts import Facts
from .outcome import Outcome, end_job
from .plan import Plan, Row, reactor_meta

ALERT_PURPOSE = "watchdog"


def is_watchdog(job: Row) -> bool:
    return job.get("job_type") == "watchdog"


def alert_target(job: Row) -> Row | None:
    """The watchdog's alert channel and target, in the shape `new_delivery` reads; both are
    required, and the job's own delivery settings play no part."""
    channel, target = job.get("watchdog_alert_channel"), job.get("watchdog_alert_target")
    if not channel or not target:
        return None
    return {"id": job["id"], "delivery_channel": channel, "delivery_to": target}


def conclude_watchdog(
    run: Run, job: Row, outcome: Outcome, *, owner: str, now: datetime, facts: Facts
) -> Plan:
    """Record a check: its verdict becomes the run's status and summary; an alert or a
    completion notice goes to the alert target (always, whatever the job's delivery mode);
    a finished task disarms the watchdog, deleting it when `watchdog_self_destruct` is set.
    No retries, no children, no result delivery. An outcome that is not a check's (a run
    timed out by the sweep, a shell that could not start) is recorded as it is."""
    if run.is_finished:
        return Plan()
    meta = reactor_meta(owner, run.id)
    current = facts.current_job(job) or job
    started = run.started_at or now
    fields: dict[str, Any] = {
        **outcome.fields,
        "duration_ms": int((now - started).total_seconds() * 1000),
    }
    status, notes = outcome.status, []
    records: list[Any] = []
    disarmed = False
    if outcome.status == CHECKED:
        verdict = judge(
            current,
            fields.get("shell_exit_code"),
            fields.get("shell_stdout") or "",
            fields.get("shell_stderr") or "",
            now,
        )
        status = verdict.status
        fields["summary"] = verdict.summary
        fields["error_message"] = verdict.summary if status == "error" else None
        target = alert_target(current)
        if verdict.alert and target is not None:
            records += new_delivery(
                run.id, target, ALERT_PURPOSE, verdict.alert, meta=meta, now=now, facts=facts
            )
        notes.append(f"watchdog {current['id']}: {verdict.kind}: {verdict.summary}")
        disarmed = verdict.disarm and bool(current.get("watchdog_self_destruct"))
    # A recurring watchdog ends only when disarmed: `delete_after_run` (set by the dispatch
    # CLI) would otherwise delete it after its first quiet check (spec §24's quirk).
    if disarmed:
        records += _disarm(current["id"], meta, now, facts)
    elif current["schedule_kind"] == "at" and not current["parent_id"]:
        records += end_job(current, status, meta=meta, now=now, facts=facts)
    job_changes = {} if disarmed else job_changes_after_run(current, status, now)
    run.finish(status, fields, job_changes, meta, now)
    return Plan([run, *records], notes=notes)


def _disarm(job_id: str, meta: Any, now: datetime, facts: Facts) -> list[Job]:
    aggregate: Job = facts.load(job_id)
    if aggregate.deleted:
        return []
    aggregate.delete(meta, now)
    return [aggregate]
