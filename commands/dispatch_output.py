"""What the dispatch commands print: under `--json` the anchor's JSON (spec §31, each answer
with its `ok`), else text: a few lines, or a table for `list`. Times are shown in the local
zone, named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .context import Context
from .output import local_time, print_json, render_table, timed, zone


def emit(ctx: Context, value: Any, text: Callable[[Any], str]) -> None:
    """`value` as JSON under --json, else `text(value)`."""
    if ctx.json:
        print_json(value)
    else:
        print(text(value))


def _fields(pairs: list[tuple[str, Any]]) -> str:
    """Indented `name  value` lines for the values that are set."""
    shown = [(name, value) for name, value in pairs if value not in (None, "")]
    width = max((len(name) for name, _ in shown), default=0)
    return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in shown)


def _when(iso: str | None) -> str | None:
    shown = local_time(iso)
    return f"{shown} {zone()}" if shown else None


def _lines(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


def enqueued(value: Any) -> str:
    delivery = value.delivery
    target = f"{delivery.channel} {delivery.target}" if delivery else "none"
    if delivery and not delivery.scheduler:
        target += " (delivery mode none)"
    return _lines(
        f"Enqueued {value.label} ({value.mode} session, agent {value.agent}).",
        _fields(
            [
                ("session", value.session_key),
                ("run", value.run_id),
                ("deliver to", target),
                ("followed", "yes" if value.watchdog else "no (--no-monitor)"),
            ]
        ),
        value.message,
    )


def label_status(value: Any) -> str:
    if getattr(value, "found", None) is False:
        return value.message
    return _lines(
        f"{value.label}: {value.status}",
        _fields(
            [
                ("session", value.session_key),
                ("run", value.run_id),
                ("agent", f"{value.agent} ({value.mode})" if value.agent else None),
                ("spawned", _when(value.spawned_at)),
                ("updated", _when(value.updated_at)),
                ("summary", value.summary),
                ("error", value.error),
                ("liveness", _liveness(value.liveness)),
                ("resolved", value.sync_action),
            ]
        ),
    )


def _liveness(liveness: dict[str, Any] | None) -> str | None:
    if not liveness:
        return None
    if "error" in liveness:
        return str(liveness["error"])
    age = liveness.get("ageMs")
    parts = [f"active {_age(age)} ago" if isinstance(age, int | float) else "activity unknown"]
    if liveness.get("model"):
        parts.append(f"model {liveness['model']}")
    if liveness.get("tokens"):
        parts.append(f"{liveness['tokens']} tokens")
    return ", ".join(parts)


def _age(ms: float) -> str:
    seconds = max(0, int(ms // 1000))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h"


def label_result(value: Any) -> str:
    if value.ok is False:
        return value.message
    reply = value.last_reply
    return _lines(
        f"{value.label}: {value.status}",
        _fields(
            [
                ("session", value.session_key),
                ("spawned", _when(value.spawned_at)),
                ("summary", value.summary),
                ("error", value.error),
            ]
        ),
        f"Last reply:\n{reply}" if reply else "No reply yet.",
    )


def sent(value: Any) -> str:
    return f"Message sent to session {value.session_key} (run {value.run_id})."


def heartbeat(value: Any) -> str:
    if value.ok is False:
        return f"not alive: {value.session_key}: {value.message}"
    state = "alive" if value.alive else "not alive"
    age = f", active {_age(value.age_ms)} ago" if value.age_ms is not None else ""
    model = f", model {value.model}" if value.model else ""
    return f"{state}: {value.session_key}{age}{model}"


def labels(value: Any) -> str:
    if not value.labels:
        return "No dispatches"
    rows = [
        (
            entry.label,
            entry.status,
            entry.agent,
            local_time(entry.spawned_at, seconds=False),
            local_time(entry.updated_at, seconds=False),
            entry.summary or entry.error,
        )
        for entry in value.labels
    ]
    headers = ("LABEL", "STATUS", "AGENT", timed("SPAWNED"), timed("UPDATED"), "SUMMARY")
    return render_table(rows, headers, keep=(0, 1, 3, 4))


def done(value: dict[str, Any]) -> str:
    return _lines(value["message"], _fields([("summary", value["summary"])]))


def stuck(value: Any, brand: str) -> str:
    """No stuck sessions: a line; else the anchor's own text (spec §31.6)."""
    if not value.stuck_sessions:
        return f"No stuck sessions (threshold {value.threshold_min:g} min)."
    noun = "session" if value.stuck_count == 1 else "sessions"
    sessions = (
        f"* {s.label} (running {s.age_min}min, silent {s.silent_min}min)"
        for s in value.stuck_sessions
    )
    return _lines(f"⚠️ {brand}: {value.stuck_count} stuck {noun}:", *sessions)


def synced(value: Any) -> str:
    if not value.details:
        return "Nothing to resolve."
    verb = "Would resolve" if value.dry_run else "Resolved"
    noun = "dispatch" if value.changes == 1 else "dispatches"
    changes = (f"  {c['label']}: {c['from']} -> {c['to']} ({c['reason']})" for c in value.details)
    return _lines(f"{verb} {value.changes} {noun}:", *changes)


def imported(value: Any) -> str:
    noun = "label" if value.imported == 1 else "labels"
    line = f"Imported {value.imported} {noun}, skipped {value.skipped}"
    return f"{line}: {', '.join(value.labels)}" if value.labels else line + "."


def handoff(value: Any) -> str:
    if value.ok is False:
        return value.message or ""
    return f"{value.label}: not scheduled: {value.reason}"
