"""Watchdog jobs (spec §24): what a check command's result means for the task it watches.

A watchdog job runs its `watchdog_check_cmd` (not its payload) and reads the exit code and
output: 2 is a transient failure of the check, 0 with a terminal payload means the task is
over (the watchdog disarms), 1 or the time threshold means the task looks stuck (an alert),
other 0s mean it still runs, anything else is an error of the watchdog itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .json_text import parse_json

CHECKED = "checked"
"""The status a watchdog check's outcome carries until `judge` turns it into ok or error."""
CHECK_TIMEOUT_CAP_MS = 60000
"""A check runs for at most min(run_timeout_ms, this)."""
TERMINAL_STATUSES = frozenset({"done", "error", "interrupted", "spawn-warning"})
DETAIL_KEYS = ("deliveryText", "lastReply", "error", "summary")
EXCERPT_CHARS = 500
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Verdict:
    """What one check found. `alert`: the text for the alert target, if any; `disarm`: the
    watched task is over."""

    kind: str  # transient | finished | stuck | running | unexpected
    status: str  # the run's status: ok, or error for an unexpected exit code
    summary: str
    alert: str | None = None
    disarm: bool = False


def check_timeout_ms(job: dict[str, Any]) -> int:
    return min(job.get("run_timeout_ms") or 300000, CHECK_TIMEOUT_CAP_MS)


def elapsed_minutes(job: dict[str, Any], now: datetime) -> tuple[int, bool]:
    """(minutes since `watchdog_started_at`, whether `watchdog_timeout_min` is reached);
    (0, False) unless both are set and the start parses."""
    started, limit = job.get("watchdog_started_at"), job.get("watchdog_timeout_min")
    if not started or not limit:
        return 0, False
    moment = _parse_instant(started)
    if moment is None:
        return 0, False
    minutes = _round_half_up((now - moment).total_seconds() / 60)
    return minutes, minutes >= limit


def terminal_payload(stdout: str) -> dict[str, Any] | None:
    """The check's JSON report when it says the task is over: the trimmed output as a JSON
    object, else the text between its first `{` and last `}`; terminal when `terminal` is
    true or `status` is done, error, interrupted or spawn-warning. Plain text never is."""
    text = stdout.strip()
    payload = _json_object(text)
    if payload is None and "{" in text and "}" in text:
        payload = _json_object(text[text.index("{") : text.rindex("}") + 1])
    if payload is None:
        return None
    if payload.get("terminal") is True or payload.get("status") in TERMINAL_STATUSES:
        return payload
    return None


def judge(
    job: dict[str, Any], exit_code: int | None, stdout: str, stderr: str, now: datetime
) -> Verdict:
    """Spec §24's branches, first match wins. A check killed (by its timeout or a signal)
    has no exit code; it counts as exit 1, a stuck task, as the anchor's exec reports it."""
    exit_code = 1 if exit_code is None else exit_code
    stdout, stderr = stdout.strip(), stderr.strip()
    label = job.get("watchdog_target_label")
    minutes, timed_out = elapsed_minutes(job, now)
    payload = terminal_payload(stdout) if exit_code == 0 else None
    if exit_code == 2:
        return Verdict("transient", "ok", f"Watchdog check failed (transient): {stderr or stdout}")
    if payload is not None:
        notice = _completion_notice(label, payload)
        return Verdict("finished", "ok", notice.split("\n")[0], notice, disarm=True)
    if exit_code == 1 or timed_out:
        limit = job.get("watchdog_timeout_min")
        reason = (
            f"running for {minutes}min (threshold: {limit}min)"
            if timed_out
            else "check command reported stuck"
        )
        command = job.get("watchdog_check_cmd") or ""
        program = _WHITESPACE.split(command)[0] + (" [...]" if len(command) > 80 else "")
        lines = [
            f'🚨 [watchdog] Task "{label}" appears stuck',
            f"- Dispatched: {job.get('watchdog_started_at') or 'unknown'}",
            f"- Running for: {minutes} minutes (threshold: {limit or '?'} min)",
            f"- Reason: {reason}",
            f"- Check: {program}",
        ]
        if stderr:
            lines.append(f"- Error: {stderr[:EXCERPT_CHARS]}")
        if stdout:
            lines.append(f"- Output: {stdout[:EXCERPT_CHARS]}")
        return Verdict("stuck", "ok", f"Watchdog alert fired: {reason}", "\n".join(lines))
    if exit_code == 0:
        state = f"target still running ({minutes}min elapsed)"
        if stdout:
            return Verdict("running", "ok", f"Watchdog check returned non-terminal output; {state}")
        return Verdict("running", "ok", f"Watchdog check: {state}")
    return Verdict(
        "unexpected", "error", f"Watchdog check command returned unexpected exit code {exit_code}"
    )


def _completion_notice(label: str | None, payload: dict[str, Any]) -> str:
    status = payload.get("status")
    detail = _detail(payload)
    if status in (None, "done"):
        body = detail or f"Task reported terminal status {status or 'done'}."
        return f'✅ [watchdog] Task "{label}" completed -- watchdog disarmed\n\n{body}'
    return (
        f'⚠️ [watchdog] Task "{label}" ended with failure -- watchdog disarmed\n'
        f"Details: {detail or f'Task ended with status {status}.'}"
    )


def _detail(payload: dict[str, Any]) -> str | None:
    completion = payload.get("completion")
    nested = completion if isinstance(completion, dict) else {}
    candidates = [payload.get(key) for key in DETAIL_KEYS]
    candidates += [nested.get("deliveryText"), nested.get("summary")]
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = parse_json(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_instant(text: str) -> datetime | None:
    """An ISO timestamp (`Z` or an offset; a bare one is UTC) or the TS form."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _round_half_up(value: float) -> int:
    """JavaScript's Math.round."""
    return math.floor(value + 0.5)
