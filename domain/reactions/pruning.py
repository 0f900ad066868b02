"""Spec §26: which jobs the prune pass deletes, and why."""

from __future__ import annotations

from datetime import datetime, timedelta

from ocsched.domain.job import Job
from ocsched.domain.schedule import from_ts

from .facts import Facts
from .plan import Plan, Row, reactor_meta

USED_UP_AFTER = timedelta(hours=24)


def prune_rule(job: Row, live_ids: set[str], now: datetime) -> str | None:
    """`orphan`: its parent is gone; `used-up`: a disabled `delete_after_run` job a day
    after its run; `ttl`: a finished disabled job past its `ttl_hours`."""
    if job["parent_id"] and job["parent_id"] not in live_ids:
        return "orphan"
    last_run = from_ts(job["last_run_at"]) if job["last_run_at"] else None
    if job["enabled"] or last_run is None:
        return None
    if job["delete_after_run"] and now - last_run > USED_UP_AFTER:
        return "used-up"
    if (
        job["ttl_hours"]
        and job["last_status"] in ("ok", "error", "timeout")
        and now - last_run > timedelta(hours=job["ttl_hours"])
    ):
        return "ttl"
    return None


def prune(
    jobs: list[Row],
    *,
    owner: str,
    now: datetime,
    facts: Facts,
    live_ids: set[str] | None = None,
) -> list[Plan]:
    """One plan per job to delete, so one job's lost race does not hold back the others.
    `live_ids`: the ids of the jobs that exist, when `jobs` is not all of them (at least
    `jobs`' own and their parents' that exist)."""
    if live_ids is None:
        live_ids = {job["id"] for job in jobs}
    plans = []
    for job in jobs:
        rule = prune_rule(job, live_ids, now)
        if rule is None:
            continue
        aggregate: Job = facts.load(job["id"])
        if aggregate.deleted:
            continue
        aggregate.delete(reactor_meta(owner, f"prune/{rule}/{job['id']}"), now)
        plans.append(Plan([aggregate], notes=[f"pruned job {job['id']} ({rule})"]))
    return plans
