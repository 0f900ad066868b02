"""Pure scheduling policies: backoff, retries, job state after a run, chain triggers.

Each takes what it needs, "now" included, and returns a decision; nothing here reads a
clock, a database or a process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from .schedule import next_run_at, to_ts

BACKOFF_SECONDS = (30, 60, 300, 900, 3600)
"""Delay after 1, 2, 3, 4, and 5 or more consecutive errors (spec §14.2)."""

RETRY_BASE_SECONDS = 30

if TYPE_CHECKING:
    import regex


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


REGEX_TIMEOUT_S = 0.1
"""How long a `regex:` trigger condition may search one run's output (spec §15.2)."""


class TriggerTimeout(Exception):
    """A `regex:` condition did not finish within its bound; it counts as no match."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        super().__init__(f"trigger_condition regex timed out after {round(after_s * 1000)} ms")


def compile_condition_regex(pattern: str) -> regex.Pattern[str]:
    """A `regex:` condition's pattern, compiled by the engine that evaluates it: `regex`
    (whose searches take a timeout) in version 0 behaviour, the syntax `re` accepts.
    Raises ValueError with the engine's message when it does not compile. Imported here,
    not at the top: ~10 ms that only jobs with a regex condition should pay."""
    import regex

    try:
        return regex.compile(pattern, regex.V0)
    except (regex.error, OverflowError, RecursionError) as error:
        raise ValueError(str(error)) from None


def trigger_matches(
    condition: str | None, content: str, *, timeout_s: float = REGEX_TIMEOUT_S
) -> bool:
    """`contains:<text>` (case-sensitive) or `regex:<pattern>` (unanchored search); none
    matches everything; a pattern that does not compile matches nothing. A pattern's search
    is bounded (catastrophic backtracking would stall the daemon): past `timeout_s` it
    raises TriggerTimeout, which the caller records as no match with its reason."""
    if not condition:
        return True
    if condition.startswith("contains:"):
        return condition[len("contains:") :] in content
    if condition.startswith("regex:"):
        try:
            pattern = compile_condition_regex(condition[len("regex:") :])
        except ValueError:
            return False
        try:
            return pattern.search(content, timeout=timeout_s) is not None
        except TimeoutError:
            raise TriggerTimeout(timeout_s) from None
    return False


class ChainTriggers(NamedTuple):
    """The children a parent's outcome fires, and those whose condition could not be
    decided, each with the reason (for the plan's notes)."""

    fire: list[dict[str, Any]]
    skipped: list[tuple[dict[str, Any], str]]


def children_to_fire(
    parent: dict[str, Any], children: list[dict[str, Any]], status: str, content: str
) -> ChainTriggers:
    """Spec §15.2: enabled children whose trigger fits the parent's final status, the first
    `max_trigger_fanout` of them (in creation order), whose condition matches. A condition
    that timed out does not match; the child is returned among `skipped`, with why."""
    wanted = ("success", "complete") if status == "ok" else ("failure", "complete")
    candidates = [c for c in children if c.get("enabled") and c.get("trigger_on") in wanted]
    candidates = candidates[: parent.get("max_trigger_fanout") or 25]
    fire: list[dict[str, Any]] = []
    skipped: list[tuple[dict[str, Any], str]] = []
    for child in candidates:
        try:
            if trigger_matches(child.get("trigger_condition"), content):
                fire.append(child)
        except TriggerTimeout as timeout:
            skipped.append((child, str(timeout)))
    return ChainTriggers(fire, skipped)
