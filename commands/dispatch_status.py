"""What the dispatches are doing (spec §31.5, §31.6): `status`, `result`, `heartbeat`,
`list`, `watcher-handoff`, `stuck` and `sync`. A running dispatch whose session has ended
is resolved on the way (`status`, `stuck`, `sync`), by `Label.resolution`: never as done.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import msgspec

from ocsched.domain.dispatch_rules.auto_resolution import STARTUP_GRACE_MS, stuck_threshold_ms
from ocsched.domain.dispatch_rules.hook_payloads import stuck_fields
from ocsched.domain.label import Label, resolution
from ocsched.projections.labels import IMPORTED_HISTORY

from . import dispatch_gateway as gateway
from .context import Context
from .dispatch_gateway import Warn
from .dispatch_labels import (
    NO_SESSION,
    LedgerEntry,
    known_label_row,
    label_row,
    newest_rows,
    running_rows,
)
from .dispatch_service import SessionTarget, hook_deliveries
from .output import CommandError

ALIVE_MS = 600_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class LabelUnknown(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`status` (with `found: false`) and `result` of a label never enqueued."""

    ok: bool
    label: str
    found: bool | None = None
    message: str


class LabelStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    ok: bool
    label: str
    session_key: str | None
    run_id: str | None
    agent: str | None
    mode: str | None
    status: str | None
    spawned_at: str | None
    updated_at: str | None
    summary: str | None
    completion: dict[str, Any] | None
    error: str | None
    liveness: dict[str, Any] | None
    sync_action: str | None = None


def status(ctx: Context, config: dict[str, Any], label: str) -> LabelStatus | LabelUnknown:
    """The label's record, after resolving it if its running session has ended."""
    row = label_row(ctx, label)
    if row is None:
        return LabelUnknown(ok=True, label=label, found=False, message=NO_SESSION)
    sync_action = None
    if row["status"] == "running" and row["imported"] != IMPORTED_HISTORY:
        sessions = gateway.sessions_by_key(ctx.settings)
        if sessions is not None:
            change = _resolve(ctx, row, sessions, config, write=True, cause="status")
            if change:
                sync_action = f"auto-resolved as {change['to']}: {change['reason']}"
                row = known_label_row(ctx, label)
    entry = LedgerEntry.of(row)
    key = row["session_key"]
    return LabelStatus(
        ok=True,
        label=entry.label,
        session_key=entry.session_key,
        run_id=entry.run_id,
        agent=entry.agent,
        mode=entry.mode,
        status=entry.status,
        spawned_at=entry.spawned_at,
        updated_at=entry.updated_at,
        summary=entry.summary,
        completion=entry.completion,
        error=entry.error,
        liveness=gateway.liveness(ctx.settings, key, _now_ms()) if key else None,
        sync_action=sync_action,
    )


class LabelResult(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    label: str
    session_key: str | None
    status: str | None
    spawned_at: str | None
    summary: str | None
    completion: dict[str, Any] | None
    last_reply: str | None
    error: str | None


def result(ctx: Context, label: str, warn: Warn) -> LabelResult | LabelUnknown:
    """The label's record and its session's last assistant reply."""
    row = label_row(ctx, label)
    if row is None:
        return LabelUnknown(ok=False, label=label, message=NO_SESSION)
    reply = gateway.last_reply(ctx.settings, row["session_key"], warn)
    entry = LedgerEntry.of(row)
    return LabelResult(
        label=label,
        session_key=entry.session_key,
        status=entry.status,
        spawned_at=entry.spawned_at,
        summary=entry.summary or (reply[:500] if reply else None),
        completion=entry.completion,
        last_reply=reply,
        error=entry.error,
    )


class Heartbeat(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    session_key: str
    label: str | None
    alive: bool
    age_ms: int | None
    updated_at: Any
    session_id: str | None
    model: str | None


class NoHeartbeat(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = False
    session_key: str
    alive: bool = False
    message: str


def heartbeat(ctx: Context, target: SessionTarget) -> Heartbeat | NoHeartbeat:
    """Whether the session was active in the last 10 minutes, as the gateway sees it."""
    session_key = target.session_key or known_label_row(ctx, target.label or "")["session_key"]
    liveness = gateway.liveness(ctx.settings, session_key, _now_ms())
    if "error" in liveness:
        message = (
            "Sessions store unavailable"
            if liveness["error"] == "sessions store unavailable"
            else "Session not found in sessions store"
        )
        return NoHeartbeat(session_key=session_key, message=message)
    age = liveness["ageMs"]
    return Heartbeat(
        session_key=session_key,
        label=target.label,
        alive=age is not None and age < ALIVE_MS,
        age_ms=age,
        updated_at=liveness["updatedAt"],
        session_id=liveness["sessionId"],
        model=liveness["model"],
    )


class Labels(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    count: int
    labels: list[LedgerEntry]


def list_labels(ctx: Context, status: str | None, limit: int) -> Labels:
    labels = [LedgerEntry.of(row) for row in newest_rows(ctx, status, limit)]
    return Labels(count=len(labels), labels=labels)


class Handoff(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    scheduled: bool
    label: str
    message: str | None = None
    reason: str | None = None


def watcher_handoff(ctx: Context, label: str) -> Handoff:
    """Kept for scripts written for openclaw-scheduler: there are no watcher jobs to hand
    over; the daemon follows every running dispatch."""
    if label_row(ctx, label) is None:
        return Handoff(ok=False, scheduled=False, label=label, message=NO_SESSION)
    reason = "the daemon follows every running dispatch"
    return Handoff(ok=True, scheduled=False, label=label, reason=reason)


# stuck, sync (spec §31.6)


class StuckSession(msgspec.Struct, kw_only=True):
    label: str
    age_min: int
    silent_min: int
    run_id: str
    job_name: str
    started_at: str
    age_s: int


class Stuck(msgspec.Struct, kw_only=True):
    """`stuck`'s findings; with stuck sessions the output is text (and exit status 1)."""

    ok: bool = True
    stuck_count: int = 0
    stuck_sessions: list[StuckSession]
    auto_resolved_count: int
    auto_resolved: list[dict[str, str]]
    watcher_skipped: list[str]
    threshold_min: float


def stuck(ctx: Context, config: dict[str, Any], threshold_min: float) -> Stuck:
    """Running dispatches silent for longer than max(their timeout, `threshold_min`);
    those whose session has ended are resolved instead (and listed as auto-resolved)."""
    grace_ms = int(config.get("startupGraceMs", STARTUP_GRACE_MS))
    sessions = gateway.sessions_by_key(ctx.settings)
    now_ms = _now_ms()
    found: list[StuckSession] = []
    resolved: list[dict[str, str]] = []
    for row in running_rows(ctx):
        age = now_ms - _spawned_ms(row)
        threshold_ms = stuck_threshold_ms(row["timeout_seconds"], threshold_min)
        if age < threshold_ms or age < grace_ms:
            continue
        if sessions is not None:
            change = _resolve(ctx, row, sessions, config, write=True, cause="stuck")
            if change:
                resolved.append({"label": change["label"], "reason": change["reason"]})
                continue
        updated = ((sessions or {}).get(row["session_key"]) or {}).get("updatedAt")
        silent = now_ms - updated if isinstance(updated, (int, float)) else age
        if silent >= threshold_ms:
            found.append(
                StuckSession(
                    label=row["label"],
                    age_min=age // 60000,
                    silent_min=int(silent // 60000),
                    run_id=row["session_key"],
                    job_name=row["label"],
                    started_at=row["spawned_at"],
                    age_s=age // 1000,
                )
            )
    if found:
        fields = stuck_fields([msgspec.structs.asdict(session) for session in found])
        hooks = hook_deliveries(ctx, "dispatch.stuck", fields, str(uuid.uuid4()))
        if hooks:
            ctx.save(*hooks)
    return Stuck(
        stuck_count=len(found),
        stuck_sessions=found,
        auto_resolved_count=len(resolved),
        auto_resolved=resolved,
        watcher_skipped=[],
        threshold_min=threshold_min,
    )


class Synced(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    dry_run: bool
    changes: int
    details: list[dict[str, str]]


def sync(ctx: Context, config: dict[str, Any], dry_run: bool) -> Synced:
    """Resolve every running dispatch whose session says it ended (never as done)."""
    sessions = gateway.sessions_by_key(ctx.settings)
    if sessions is None:
        raise CommandError("the gateway did not answer sessions.list; nothing was changed")
    details = [
        change
        for row in running_rows(ctx)
        if (change := _resolve(ctx, row, sessions, config, write=not dry_run, cause="sync"))
    ]
    return Synced(dry_run=dry_run, changes=len(details), details=details)


def _spawned_ms(row: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(row["spawned_at"]).timestamp() * 1000)


def _resolve(ctx, row, sessions, config, *, write: bool, cause: str) -> dict | None:
    """Apply `resolution` to one running dispatch; the change made (or that would be)."""
    ending = resolution(
        spawned_ms=_spawned_ms(row),
        timeout_s=row["timeout_seconds"],
        monitor_timeout_min=row["monitor_timeout_min"],
        session=sessions.get(row["session_key"]),
        now_ms=_now_ms(),
        grace_ms=int(config.get("startupGraceMs", STARTUP_GRACE_MS)),
    )
    if ending is None:
        return None
    if write:
        dispatch: Label = ctx.log.repository.get(row["dispatch_id"])
        if dispatch.status != "running":
            return None
        dispatch.fail(*ending, ctx.meta(cause=cause), ctx.now)
        ctx.save(dispatch)
    reason = ending[2].rsplit("(", 1)[-1].rstrip(")") if ending[0] == "interrupted" else ending[1]
    return {"label": row["label"], "from": "running", "to": ending[0], "reason": reason}
