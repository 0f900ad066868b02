"""The dispatch CLI's reads of the labels read model (spec §31.2), and the ledger's shape.

Rows come from `projections/labels.py`; the ledger's entries have camelCase keys.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ocsched.domain.dispatch_rules.values import ledger_time

from .context import Context
from .output import CommandError

NO_SESSION = "No session found for this label"


class LedgerEntry(msgspec.Struct, kw_only=True, rename="camel"):
    """A labels row as a `labels.json` entry (spec §31.2)."""

    label: str
    session_key: str | None
    run_id: str | None
    agent: str | None
    mode: str | None
    model: str | None
    thinking: str | None
    origin: str | None
    deliver_to: str | None
    deliver_channel: str | None
    delivery_mode: str | None
    spawned_at: str | None
    timeout_seconds: int | None
    timeout: int | None
    idle_threshold_seconds: int | None
    status: str | None
    summary: str | None
    error: str | None
    completion: dict[str, Any] | None
    sha: str | None
    retry_count: int | None
    last_ping: str | None
    updated_at: str | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> LedgerEntry:
        return cls(
            label=row["label"],
            session_key=row["session_key"],
            run_id=row["run_id"],
            agent=row["agent"],
            mode=row["mode"],
            model=row["model"],
            thinking=row["thinking"],
            origin=row["origin"],
            deliver_to=row["deliver_to"],
            deliver_channel=row["deliver_channel"],
            delivery_mode=row["delivery_mode"],
            spawned_at=row["spawned_at"],
            timeout_seconds=row["timeout_seconds"],
            timeout=row["timeout"],
            idle_threshold_seconds=row["idle_threshold_seconds"],
            status=row["status"],
            summary=row["summary"] or None,
            error=row["error"] or None,
            completion=json.loads(row["completion"]) if row["completion"] else None,
            sha=row["sha"],
            retry_count=row["retry_count"],
            last_ping=row["last_ping"],
            updated_at=row["updated_at"],
        )


def label_row(ctx: Context, label: str) -> dict[str, Any] | None:
    """The label's newest dispatch; None for a label never enqueued (or no store yet)."""
    connection = ctx.views()
    if connection is None:
        return None
    return connection.execute("SELECT * FROM labels WHERE label = ?", (label,)).fetchone()


def known_label_row(ctx: Context, label: str) -> dict[str, Any]:
    """The label's newest dispatch; a label never enqueued is an error (exit status 1)."""
    row = label_row(ctx, label)
    if row is None:
        raise CommandError(f'No session found for label "{label}"')
    return row


def running_rows(ctx: Context) -> list[dict[str, Any]]:
    """Running dispatches (not imported history), oldest first."""
    connection = ctx.views()
    if connection is None:
        return []
    return connection.execute(
        "SELECT * FROM labels WHERE status = 'running' AND imported != 1 ORDER BY spawned_at"
    ).fetchall()


def newest_rows(ctx: Context, status: str | None, limit: int) -> list[dict[str, Any]]:
    """`list`: the newest labels first, optionally of one status."""
    connection = ctx.views()
    if connection is None:
        return []
    where, values = ("WHERE status = ?", [status]) if status else ("", [])
    return connection.execute(
        f"SELECT * FROM labels {where} ORDER BY updated_at DESC LIMIT ?", [*values, limit]
    ).fetchall()


_IMPORTED_FIELDS = {
    "runId": "run_id",
    "agent": "agent",
    "mode": "mode",
    "model": "model",
    "thinking": "thinking",
    "origin": "origin",
    "deliverTo": "deliver_to",
    "deliverChannel": "deliver_channel",
    "deliveryMode": "delivery_mode",
    "verifyCmd": "verify_cmd",
    "taskPrompt": "task_prompt",
    "status": "status",
    "summary": "summary",
    "error": "error",
    "sha": "sha",
    "watchdogJobId": "watchdog_job_id",
}
_IMPORTED_NUMBERS = {
    "timeoutSeconds": "timeout_seconds",
    "timeout": "timeout",
    "idleThresholdSeconds": "idle_threshold_seconds",
    "retryCount": "retry_count",
    "gwRestartRetryCount": "gw_restart_retry_count",
}
_IMPORTED_TIMES = {"spawnedAt": "spawned_at", "updatedAt": "updated_at", "lastPing": "last_ping"}
_LARGEST_IMPORTED_NUMBER = 2**53 - 1  # JavaScript's largest exact integer


def imported_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """A `labels.json` entry (spec §31.2) as the settings of an imported `Label.Enqueued`,
    every field the ledger has kept, each in the type its column holds: text (another JSON
    value as its JSON text, invalid characters replaced), a whole number (else null), a
    time as ISO text in UTC with milliseconds (else null), the completion payload as its
    JSON text (an object, else null). So no ledger can record an event the read model
    cannot hold (a number past 64 bits, a lone surrogate, a time that is not one)."""
    settings: dict[str, Any] = {
        ours: json_text(entry.get(theirs)) for theirs, ours in _IMPORTED_FIELDS.items()
    }
    for theirs, ours in _IMPORTED_NUMBERS.items():
        settings[ours] = json_whole_number(entry.get(theirs))
    for theirs, ours in _IMPORTED_TIMES.items():
        settings[ours] = ledger_time(entry.get(theirs))
    completion = entry.get("completion")
    settings["completion"] = json_text(completion) if isinstance(completion, dict) else None
    settings["imported"] = True
    if settings["status"] not in ("running", "done", "error", "interrupted"):
        settings["status"] = "error" if settings["status"] else "running"
    return settings


def json_text(value: Any) -> str | None:
    """A value read from a JSON file (a ledger, `config.json`) as text: a string as it is,
    another JSON value as its JSON; lone surrogates (a `\\udc80` escape in the file)
    replaced by U+FFFD."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.isascii():
        return text
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


def json_whole_number(value: Any) -> int | None:
    """A number read from a JSON file as a whole number in JavaScript's exact range; else
    None (text, a fraction, NaN, infinite, a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():  # also NaN and infinity
        return None
    number = int(value)
    return number if abs(number) <= _LARGEST_IMPORTED_NUMBER else None
