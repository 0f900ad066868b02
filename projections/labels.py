"""The labels read model (spec §31.2): each label's newest dispatch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import Update, Upsert
from .stamps import iso_ms

if TYPE_CHECKING:
    from ocsched.domain.label import Label

TABLE = "labels"
COLUMNS: dict[str, type] = {
    "label": str,
    "dispatch_id": str,
    "session_key": str,
    "run_id": str,
    "agent": str,
    "mode": str,
    "model": str,
    "thinking": str,
    "origin": str,
    "deliver_to": str,
    "deliver_channel": str,
    "delivery_mode": str,
    "verify_cmd": str,
    "spawned_at": str,
    "timeout_seconds": int,
    "timeout": int,
    "idle_threshold_seconds": int,
    "monitor_timeout_min": int,
    "status": str,
    "summary": str,
    "error": str,
    "task_prompt": str,
    "last_ping": str,
    "last_tokens": int,
    "completion": str,
    "sha": str,
    "retry_count": int,
    "updated_at": str,
    "imported": int,
    "verified": int,
}
SETTINGS = (
    "agent",
    "mode",
    "model",
    "thinking",
    "origin",
    "deliver_to",
    "deliver_channel",
    "delivery_mode",
    "verify_cmd",
    "timeout_seconds",
    "timeout",
    "idle_threshold_seconds",
    "monitor_timeout_min",
    "task_prompt",
)
IMPORTED = ("run_id", "completion", "sha", "last_ping")
"""An imported ledger entry's fields besides the settings (`dispatch import-labels`)."""
IMPORTED_HISTORY, IMPORTED_RUNNING = 1, 2
"""`imported`: 0 enqueued here; 1 imported when it had ended (history: never followed,
delivered or retried); 2 imported while running (followed like a new dispatch from then on,
without the starting notice the anchor sent)."""


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="label")
    db[TABLE].create_index(["dispatch_id"], unique=True)
    db[TABLE].create_index(["status", "updated_at"])


def enqueued(event: Label.Enqueued):
    stamp = iso_ms(event)
    row: dict[str, Any] = {name: None for name in COLUMNS}
    settings = event.settings
    row.update({name: settings.get(name) for name in SETTINGS})
    status = settings.get("status") or "running"
    spawned_at = updated_at = stamp
    if settings.get("imported"):
        from ocsched.domain.dispatch_rules.values import ledger_time

        row.update({name: settings.get(name) for name in IMPORTED})
        row["imported"] = IMPORTED_RUNNING if status == "running" else IMPORTED_HISTORY
        # Times the daemon computes with; an import before they were checked kept any text.
        spawned_at = ledger_time(settings.get("spawned_at")) or stamp
        updated_at = ledger_time(settings.get("updated_at")) or stamp
    else:
        row["imported"] = 0
    row.update(
        label=event.label,
        dispatch_id=event.originator_id,
        session_key=event.session_key,
        spawned_at=spawned_at,
        status=status,
        summary=settings.get("summary"),
        error=settings.get("error"),
        retry_count=settings.get("retry_count") or 0,
        updated_at=updated_at,
    )
    yield Upsert(TABLE, row, pk="label")


def _on_dispatch(event, values: dict[str, Any]):
    """Rows are keyed by label, but a label's row shows only its newest dispatch: changes
    to an older dispatch of the label match no row."""
    yield Update(
        TABLE, event.originator_id, {**values, "updated_at": iso_ms(event)}, pk="dispatch_id"
    )


def spawned(event: Label.Spawned):
    yield from _on_dispatch(event, {"run_id": event.run_id})


def message_sent(event: Label.MessageSent):
    """`send`/`steer` leave the ledger as it was, `updatedAt` too (the anchor's)."""
    return ()


def observed(event: Label.ActivityObserved):
    yield from _on_dispatch(event, {"last_ping": event.updated_at, "last_tokens": event.tokens})


def done(event: Label.Done):
    import json

    values = {
        "status": "done",
        "summary": event.summary,
        "completion": json.dumps(event.completion),
        "sha": event.sha,
        "error": None,
    }
    yield from _on_dispatch(event, values)


def failed(event: Label.Failed):
    values = {"status": event.status, "error": event.error, "summary": event.summary}
    yield from _on_dispatch(event, values)


def verified(event: Label.Verified):
    values: dict[str, Any] = {"verified": 1 if event.passed else 0}
    if not event.passed:
        values.update(status="error", error=f"verify-cmd failed: {event.detail}")
    yield from _on_dispatch(event, values)


def retried(event: Label.Retried):
    values = {
        "status": "running",
        "retry_count": event.attempt,
        "session_key": event.session_key,
        "error": None,
    }
    yield from _on_dispatch(event, values)


projection = Projection(
    name="labels",
    version=3,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "label:Label.Enqueued": enqueued,
        "label:Label.Spawned": spawned,
        "label:Label.MessageSent": message_sent,
        "label:Label.ActivityObserved": observed,
        "label:Label.Done": done,
        "label:Label.Failed": failed,
        "label:Label.Retried": retried,
        "label:Label.Verified": verified,
    },
)
