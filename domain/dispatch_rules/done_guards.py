"""Spec §31.7: the guards of `done`, in order, with the anchor's messages, and what an
accepted `done` prints.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ..json_text import parse_json
from .completion import completion_payload
from .git_sha import SHA_PATTERN, task_requires_git_sha
from .values import js_round, js_truthy, ledger_field, refuse_json_constant, time_ms

DEFAULT_DONE_SUMMARY = "completed (agent signal)"

REJECT_NO_CHECKLIST = (
    "REJECTED: --checklist is required. Pass --checklist with JSON object asserting completion "
    "status. Example: --checklist '{\"work_complete\":true}' work_complete MUST be true -- you "
    "are asserting all assigned work is finished. Do NOT call done while planning, reading "
    "files, or mid-task."
)
REJECT_BAD_JSON = "REJECTED: --checklist must be valid JSON. Example: '{\"work_complete\":true}'"
REJECT_NOT_COMPLETE = (
    "REJECTED: checklist.work_complete must be true. You are asserting all assigned work is "
    "done. Do NOT call done until all work is complete."
)
REJECT_FORCE_WITHOUT_REASON = (
    "REJECTED: --force-done requires --reason explaining why short runtime is valid."
)
REJECT_NO_SHA = (
    "REJECTED: Task involves git commits but --sha was not provided. Pass --sha with the "
    "actual HEAD SHA of your pushed branch."
)
DONE_MESSAGE_KNOWN = "Label marked done via agent signal."
DONE_MESSAGE_UNKNOWN = "Label not previously registered; marked done."


def reject_false_field(field: str) -> str:
    return (
        f"REJECTED: checklist.{field} is false. Do not call done until all required checks "
        f"pass. Fix the failing {field.replace('_', ' ', 1)} before calling done."
    )


def reject_too_short(elapsed_s: int) -> str:
    return (
        f"REJECTED: Session ran for only {elapsed_s}s -- suspiciously short for this task "
        'scope. If work is genuinely complete, re-run with --force-done --reason "explanation".'
    )


def reject_bad_sha(sha: str) -> str:
    return (
        f'REJECTED: --sha "{sha}" is not a valid git SHA (must be 7-40 hex characters). '
        "Pass the actual commit SHA."
    )


def reject_unknown_sha(sha: str) -> str:
    return f"REJECTED: SHA {sha} not found in local git. Push your commits before calling done."


def reject_few_messages(count: int) -> str:
    return (
        f"REJECTED: Session has only {count} messages -- likely did not complete the assigned "
        "work. Use --force-done --reason if work is genuinely complete, or "
        "--skip-activity-check to bypass this check."
    )


def done_min_runtime_ms(entry: dict[str, Any] | None) -> int:
    """§31.7 step 6: 120 s when the stored timeout (`timeout`, else `timeoutSeconds`, else
    300) exceeds 600 s, else 60 s."""
    raw = ledger_field(entry, "timeout", "timeoutSeconds", "timeout_seconds")
    try:
        timeout = float(raw) if raw is not None and not isinstance(raw, bool) else 0.0
    except (TypeError, ValueError):
        timeout = 0.0
    if not math.isfinite(timeout) or timeout == 0:
        timeout = 300.0
    return 120_000 if timeout > 600 else 60_000


def _message_count(activity: Any) -> int | None:
    """`messageCount`, else `messages.length`, from a `GET /sessions/<key>` answer."""
    if not isinstance(activity, dict):
        return None
    count = activity.get("messageCount")
    if isinstance(count, (int, float)) and not isinstance(count, bool):
        return int(count)
    messages = activity.get("messages")
    if isinstance(messages, list):
        return len(messages)
    return None


class DoneDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What `done` decided. Rejected: `error` is the message for stderr (the CLI prefixes
    `[<brand>] `), `exit_code` 1, and the ledger must not change. Accepted: `exit_code` 0,
    `completion`/`summary` go to the ledger and the output, `message` is the output's."""

    accepted: bool
    exit_code: int
    error: str | None = None
    forced: bool = False
    reason: str | None = None
    checklist: dict[str, Any] | None = None
    completion: dict[str, Any] | None = None
    summary: str | None = None
    known: bool = False
    message: str | None = None
    warnings: tuple[str, ...] = ()


def check_done(
    *,
    entry: dict[str, Any] | None,
    summary: str | None,
    checklist_text: str | None,
    sha: str | None,
    force: bool,
    reason: str | None,
    now_ms: int,
    min_runtime_ms: int | None = None,
    task_used_git: bool | None = None,
    sha_exists: bool | None,
    activity: dict[str, Any] | None,
    skip_activity_check: bool = False,
    activity_error: str | None = None,
    label: str | None = None,
) -> DoneDecision:
    """The guards of `done` (spec §31.7), in order; the first that fails decides.

    `entry` is the label's ledger entry, None for an unknown label. `min_runtime_ms` and
    `task_used_git` default to what the entry says (`done_min_runtime_ms(entry)`,
    `task_requires_git_sha(taskPrompt)`). `sha_exists`: whether `--sha` names a commit in
    the repository of the current directory (None = could not tell, which rejects like
    the anchor's failed `git cat-file`). `activity`: the JSON of a 2xx
    `GET /sessions/<key>`, None when the gateway did not answer, answered non-2xx or
    timed out (the check then fails open); `activity_error` is that failure's text, for
    the warning.
    """
    name = label or ledger_field(entry, "label") or ""
    warnings: list[str] = []

    def reject(message: str, **found: Any) -> DoneDecision:
        return DoneDecision(
            accepted=False, exit_code=1, error=message, warnings=tuple(warnings), **found
        )

    # 1-4: the checklist
    if not checklist_text:
        return reject(REJECT_NO_CHECKLIST)
    try:
        checklist = parse_json(checklist_text, parse_constant=refuse_json_constant)
    except (TypeError, ValueError):
        return reject(REJECT_BAD_JSON)
    fields = checklist if isinstance(checklist, dict) else {}
    if not js_truthy(fields.get("work_complete")):
        return reject(REJECT_NOT_COMPLETE)
    for field in ("tests_passed", "pushed"):
        if field in fields and fields[field] is False:
            return reject(reject_false_field(field), checklist=fields)

    # 5: the completion payload
    raw_summary = summary if isinstance(summary, str) and summary else DEFAULT_DONE_SUMMARY
    completion = completion_payload(summary=raw_summary, checklist=fields, sha=sha, now_ms=now_ms)
    built = {"checklist": fields, "completion": completion, "summary": completion["summary"]}
    known = entry is not None

    # 6: minimum runtime
    forced = bool(force)
    spawned_ms = time_ms(ledger_field(entry, "spawnedAt", "spawned_at")) if known else None
    if spawned_ms is not None:
        threshold = min_runtime_ms if min_runtime_ms is not None else done_min_runtime_ms(entry)
        elapsed = now_ms - spawned_ms
        if elapsed < threshold:
            if not force:
                return reject(reject_too_short(js_round(elapsed / 1000)), **built)
            if not reason or not reason.strip():
                return reject(REJECT_FORCE_WITHOUT_REASON, **built)
            warnings.append(
                f"warn: force-done used for label={name} after "
                f"{js_round(elapsed / 1000)}s, reason={reason}"
            )

    # 7: the git-SHA gate
    if known:
        if task_used_git is None:
            prompt = ledger_field(entry, "taskPrompt", "task_prompt")
            if not prompt:
                warnings.append(
                    f"warn: taskPrompt not stored for label={name} (enqueued before guard), "
                    "skipping git-SHA check"
                )
            else:
                task_used_git = task_requires_git_sha(prompt)
        if task_used_git and not sha:
            return reject(REJECT_NO_SHA, **built)

    # 8: the SHA itself
    if sha:
        if not SHA_PATTERN.fullmatch(sha):
            return reject(reject_bad_sha(sha), **built)
        if not sha_exists:
            return reject(reject_unknown_sha(sha), **built)

    # 9: session activity (fails open)
    session_key = ledger_field(entry, "sessionKey", "session_key") if known else None
    if session_key and not skip_activity_check and not force:
        count = _message_count(activity)
        if count is not None and count <= 2:
            return reject(reject_few_messages(count), **built)
        if activity is None and activity_error:
            warnings.append(
                f"warn: session activity check unavailable for label={name}: "
                f"{activity_error} -- skipping check"
            )

    # 10-11: accepted
    if not known:
        warnings.append(f'warn: no session found for label "{name}" -- registering as done')
    return DoneDecision(
        accepted=True,
        exit_code=0,
        forced=forced,
        reason=reason if forced else None,
        known=known,
        message=DONE_MESSAGE_KNOWN if known else DONE_MESSAGE_UNKNOWN,
        warnings=tuple(warnings),
        **built,
    )


def done_output(label: str, decision: DoneDecision) -> dict[str, Any]:
    """The JSON `done` prints when it accepted (§31.7 steps 10–11)."""
    return {
        "ok": True,
        "label": label,
        "status": "done",
        "summary": decision.summary,
        "completion": decision.completion,
        "message": decision.message,
    }
