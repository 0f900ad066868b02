"""Pure scheduling policies: backoff, retries, job state after a run, chain triggers.

Each takes what it needs, "now" included, and returns a decision; nothing here reads a
clock, a database or a process.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from .schedule import next_run_at, to_ts

BACKOFF_SECONDS = (30, 60, 300, 900, 3600)
"""Delay after 1, 2, 3, 4, and 5 or more consecutive errors (spec §14.2)."""

RETRY_BASE_SECONDS = 30


def backoff(consecutive_errors: int) -> timedelta:
    if consecutive_errors <= 0:
        return timedelta(0)
    return timedelta(seconds=BACKOFF_SECONDS[min(consecutive_errors, len(BACKOFF_SECONDS)) - 1])


def retry_delay(attempt: int, base_seconds: float = RETRY_BASE_SECONDS) -> timedelta:
    """The wait before retry number `attempt` (1, 2, …): 30 s, 60 s, 120 s, …"""
    return timedelta(seconds=base_seconds * 2 ** (attempt - 1))


def retry_allowed(job: dict[str, Any], status: str, retry_count: int) -> bool:
    """Spec §14.1: a failed run is retried while the job is enabled and has retries left.
    A shell timeout is retried too (the anchor never retries it; its docs say it should)."""
    return (
        status in ("error", "timeout")
        and bool(job.get("enabled"))
        and retry_count < (job.get("max_retries") or 0)
    )


def job_changes_after_run(
    job: dict[str, Any], status: str, now: datetime, *, final: bool = True
) -> dict[str, Any]:
    """Spec §14.2: the job's scheduling fields after a run. A final outcome counts
    consecutive errors (ok resets them, a crash leaves them) and backs the next slot off
    after errors; a run that will be retried or replayed (`final=False`) only records
    when and how it ended. A one-shot job's run, once final, leaves it no next slot."""
    errors = job.get("consecutive_errors") or 0
    if final and status in ("error", "timeout"):
        errors += 1
    elif final and status == "ok":
        errors = 0
    changes: dict[str, Any] = {"last_run_at": to_ts(now), "last_status": status}
    if final:
        changes["consecutive_errors"] = errors
    if job.get("schedule_kind") == "at" and not job.get("parent_id"):
        if final:
            changes["next_run_at"] = None
        return changes
    upcoming = next_run_at(job, now)
    if final and upcoming is not None and errors > 0:
        upcoming = max(upcoming, to_ts(now + backoff(errors)))
    changes["next_run_at"] = upcoming
    return changes


def ends_job(job: dict[str, Any], status: str) -> str | None:
    """What happens to the job itself after a final outcome: "delete", "disable" or None.
    A one-shot job is used up by its run; a recurring `delete_after_run` job goes on success."""
    if job.get("schedule_kind") == "at" and not job.get("parent_id"):
        return "delete" if job.get("delete_after_run") else "disable"
    if status == "ok" and job.get("delete_after_run"):
        return "delete"
    return None


def trigger_matches(condition: str | None, content: str) -> bool:
    """`contains:<text>` (case-sensitive) or `regex:<pattern>` (unanchored search); none
    matches everything; a pattern that does not compile matches nothing."""
    if not condition:
        return True
    if condition.startswith("contains:"):
        return condition[len("contains:") :] in content
    if condition.startswith("regex:"):
        try:
            return re.search(condition[len("regex:") :], content) is not None
        except re.error:
            return False
    return False


def children_to_fire(
    parent: dict[str, Any], children: list[dict[str, Any]], status: str, content: str
) -> list[dict[str, Any]]:
    """Spec §15.2: enabled children whose trigger fits the parent's final status, the first
    `max_trigger_fanout` of them (in creation order), whose condition matches."""
    wanted = ("success", "complete") if status == "ok" else ("failure", "complete")
    candidates = [c for c in children if c.get("enabled") and c.get("trigger_on") in wanted]
    candidates = candidates[: parent.get("max_trigger_fanout") or 25]
    return [c for c in candidates if trigger_matches(c.get("trigger_condition"), content)]
