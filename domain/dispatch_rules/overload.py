"""Spec §31.11: overload (529) detection in errors and the gateway log, and the recovery
safety net's decision, messages and notice.
"""

from __future__ import annotations

import re
from typing import Literal

from .values import js_round

MAX_OVERLOAD_RETRIES = 3
MAX_ERROR_AGE_MS = 60 * 60_000
WATCHER_GRACE_MS = 5 * 60_000

_OVERLOAD = re.compile(
    r"\b529\b|failover\s*error|overload|temporarily\s+overloaded|service.*overloaded",
    re.IGNORECASE,
)
_RATE_LIMITED = re.compile(r"rate\s*limit|too many requests", re.IGNORECASE)
_LANE_ERROR_FIELD = re.compile(r'error="([^"]+)"')
_LOG_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z)")

RETRY_MESSAGE_SAFETY_NET = (
    "[Auto-retry after 529 overload -- scheduler safety net] This is an automatic retry. "
    "Please continue your previous task from where you left off."
)
RETRY_MESSAGE_REUSE = (
    "[Auto-retry after 529 overload] Please continue your previous task. Pick up where you "
    "left off."
)
RETRY_MESSAGE_FRESH = (
    "[Auto-retry after 529 overload] This is a retry of a previous task that failed due to "
    "API overload. Please continue the task from the beginning."
)

RecoveryAction = Literal["retry-reuse", "retry-fresh"]


def is_overload_error(text: str | None, *, include_rate_limits: bool = False) -> bool:
    """An overload error (§31.11): `529`, `failover error`, `overload`, `temporarily
    overloaded`, `service…overloaded`, case-insensitive. The watcher's list (§31.10.2 step 4)
    also counts `rate limit` and `too many requests`: `include_rate_limits=True`."""
    if not isinstance(text, str) or not text:
        return False
    if _OVERLOAD.search(text):
        return True
    return include_rate_limits and bool(_RATE_LIMITED.search(text))


def overload_error_text(lane_error: str) -> str:
    """The error recorded for an overload seen in the gateway log."""
    return f"FailoverError (529): {lane_error}"


def find_lane_task_error(log_tail: str, session_key: str) -> dict[str, str | None] | None:
    """The newest gateway-log line that names the session, says `lane task error` and has an
    `error="…"` field: `{"error", "timestamp"}` (the line's leading ISO time, or None)."""
    for line in reversed(log_tail.split("\n")):
        if session_key not in line or "lane task error" not in line:
            continue
        found = _LANE_ERROR_FIELD.search(line)
        if not found:
            continue
        stamp = _LOG_TIMESTAMP.match(line)
        return {"error": found.group(1), "timestamp": stamp.group(1) if stamp else None}
    return None


def recovery_skip_reason(
    *,
    error_at_ms: int | None,
    now_ms: int,
    retries_so_far: int | None,
    grace_ms: int = WATCHER_GRACE_MS,
) -> str | None:
    """Why the 529 safety net leaves an overloaded entry alone, in the anchor's words, or
    None when it should retry."""
    age = now_ms - (error_at_ms or 0)
    if age > MAX_ERROR_AGE_MS:
        return f"error too old ({js_round(age / 60_000)}min)"
    if age < grace_ms:
        return f"updated {js_round(age / 1000)}s ago (watcher may be handling)"
    retries = retries_so_far or 0
    if retries >= MAX_OVERLOAD_RETRIES:
        return f"max retries exhausted ({retries}/{MAX_OVERLOAD_RETRIES})"
    return None


def recovery_decision(
    *,
    error_text: str | None,
    error_at_ms: int | None,
    now_ms: int,
    retries_so_far: int | None,
    session_reusable: bool,
    grace_ms: int = WATCHER_GRACE_MS,
) -> RecoveryAction | None:
    """The 529 safety net (§31.11) for an entry in `error`: retry an overload error younger
    than 60 minutes and older than the watcher's 5-minute grace, at most 3 times; in the
    same session when it can still take a message, else in a fresh one."""
    if not is_overload_error(error_text):
        return None
    skip = recovery_skip_reason(
        error_at_ms=error_at_ms, now_ms=now_ms, retries_so_far=retries_so_far, grace_ms=grace_ms
    )
    if skip:
        return None
    return "retry-reuse" if session_reusable else "retry-fresh"


def recovery_notice(label: str, attempt: int, method: str | None) -> str:
    """The notification the safety net sends after a retry (`method`: send | fresh, None
    when the respawn failed)."""
    head = f"🌶️ Dispatch 529 recovery: [{label}]"
    if method:
        return f"{head} retried ({attempt}/{MAX_OVERLOAD_RETRIES}) via {method}"
    return f"{head} retry FAILED ({attempt}/{MAX_OVERLOAD_RETRIES})"
