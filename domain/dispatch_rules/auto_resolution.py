"""Spec §31.5 / §31.6: when a running dispatch is resolved without `done` — thresholds,
the spawn-failure check, the "session done" check — and the ledger changes it makes.
"""

from __future__ import annotations

import math
from typing import Any

from .overload import overload_error_text
from .values import js_round, time_ms

STARTUP_GRACE_MS = 300_000
PING_FRESH_MS = 3 * 60_000
YOUNG_SESSION_MS = 5 * 60_000
CEILING_THRESHOLD_MS = 2 * 60_000
IDLE_FLOOR_MS = 10 * 60_000
DEFAULT_STATUS_TIMEOUT_S = 600

INTERRUPTED_SUMMARY = (
    "Auto-resolved: session went idle without calling done. Work may be incomplete. ({reason})"
)


def _timeout_s(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        return DEFAULT_STATUS_TIMEOUT_S
    return timeout_s if math.isfinite(timeout_s) and timeout_s > 0 else DEFAULT_STATUS_TIMEOUT_S


def idle_threshold_ms(timeout_s: float | None) -> int:
    """I = max(timeoutSeconds (600 when absent) × 1000, 10 min)."""
    return int(max(_timeout_s(timeout_s) * 1000, IDLE_FLOOR_MS))


def hard_ceiling_ms(timeout_s: float | None) -> int:
    """H = max(timeoutSeconds × 1.5 s, 1.5 × I)."""
    return int(max(_timeout_s(timeout_s) * 1500, 1.5 * idle_threshold_ms(timeout_s)))


def stuck_threshold_ms(timeout_s: float | None, threshold_min: float = 15) -> int:
    """`stuck`'s effective threshold E = max(timeoutSeconds × 1000, N minutes); an absent
    timeout counts as 0 (the anchor's arithmetic gives NaN)."""
    seconds = timeout_s if isinstance(timeout_s, (int, float)) and timeout_s > 0 else 0
    return int(max(seconds * 1000, threshold_min * 60_000))


def auto_resolve_threshold_ms(
    *,
    age_ms: int,
    timeout_s: float | None,
    last_ping_age_ms: int | None,
    grace_ms: int = STARTUP_GRACE_MS,
) -> int | None:
    """§31.5 step 2: None (no action) within the startup grace, or with a ping younger than
    3 min before the hard ceiling; else the "session done" threshold: 2 min past the hard
    ceiling, else the idle threshold."""
    if age_ms < grace_ms:
        return None
    ceiling = hard_ceiling_ms(timeout_s)
    if last_ping_age_ms is not None and last_ping_age_ms < PING_FRESH_MS and age_ms < ceiling:
        return None
    return CEILING_THRESHOLD_MS if age_ms >= ceiling else idle_threshold_ms(timeout_s)


def bootstrap_failure(
    *,
    age_ms: int,
    has_last_ping: bool,
    in_store: bool,
    has_activity_signal: bool,
    lane_error: str | None,
    history_count: int | None,
    updated_at: Any,
    spawned_at_ms: int,
    grace_ms: int = STARTUP_GRACE_MS,
) -> str | None:
    """§31.5 step 1: the spawn-failure error for a session that entered the store but never
    showed an activity signal, checked only without a ping and between G and 2G of age;
    None when it is not a bootstrap failure. `history_count` None: chat.history did not
    answer."""
    if has_last_ping or not grace_ms <= age_ms <= 2 * grace_ms:
        return None
    if not in_store or has_activity_signal:
        return None
    if lane_error:
        return f"spawn-failure: {lane_error}"
    if history_count == 0:
        return "spawn-failure: session entered sessions store but never wrote transcript/history"
    updated_ms = time_ms(updated_at)
    if updated_ms is not None and updated_ms <= spawned_at_ms + 5000:
        return "spawn-failure: session entered sessions store but never showed any activity"
    return None


def session_done(
    *,
    store_available: bool,
    key_present: bool,
    updated_at: Any,
    now_ms: int,
    threshold_ms: int,
    age_ms: int | None,
    listed: bool | None,
) -> tuple[bool, str]:
    """The "session done" check (§31.5 step 3): (done, reason).

    `updated_at`: the store entry's `updatedAt` (epoch s/ms or ISO text); `age_ms`: since
    `spawnedAt` (None when unknown); `listed`: whether `sessions.list` shows the key, None
    when it could not be called. An `updatedAt` that is not a time counts from the spawn
    (the anchor never resolves such a session).
    """
    if not store_available:
        return False, "sessions store unavailable for state check"
    if not key_present:
        if age_ms is not None and age_ms < YOUNG_SESSION_MS:
            return False, "session young, not yet in sessions store -- deferring"
        if listed is None:
            return False, "sessions store miss + gateway API unreachable -- deferring"
        if listed:
            return False, "session not in sessions store but confirmed active via gateway API"
        return True, "session not found in sessions store or gateway API"
    updated_ms = time_ms(updated_at)
    if updated_ms is not None:
        silence = now_ms - updated_ms
    elif age_ms is not None:
        silence = age_ms
    else:
        return False, "session activity time unknown"
    if silence >= threshold_ms:
        return True, f"session idle {js_round(silence / 60_000)}min in sessions store (completed)"
    return False, "session has recent activity in sessions store"


def resolution_fields(
    reason: str,
    *,
    overload_error: str | None = None,
    spawn_failure: str | None = None,
    synced: bool = False,
) -> dict[str, Any]:
    """The ledger changes and `syncAction` of a resolution (§31.5 steps 1 and 4, §31.6
    `sync`). `overload_error`: the lane error text of an overload seen in the gateway log
    (it makes the resolution a 529 error); `spawn_failure`: a `bootstrap_failure` error.
    `synced` gives `sync`'s summaries (`Synced as …`). Never `done`."""
    if spawn_failure:
        summary = ("Synced" if synced else "Auto-resolved") + f" as spawn failure: {spawn_failure}"
        return {
            "status": "error",
            "error": spawn_failure,
            "summary": summary,
            "syncAction": f"auto-resolved as spawn failure: {spawn_failure}",
        }
    if overload_error:
        error = overload_error_text(overload_error)
        reason = f"529/overload error detected: {error}"
        summary = ("Synced" if synced else "Auto-resolved") + f" as error: {reason}"
        return {
            "status": "error",
            "error": error,
            "summary": summary,
            "syncAction": f"auto-resolved as 529 error: {reason}",
        }
    return {
        "status": "interrupted",
        "summary": INTERRUPTED_SUMMARY.format(reason=reason),
        "syncAction": f"auto-resolved as interrupted: {reason}",
    }
