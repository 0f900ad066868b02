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
    "idle_threshold_seconds",
    "monitor_timeout_min",
    "task_prompt",
)


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="label")
    db[TABLE].create_index(["dispatch_id"], unique=True)
    db[TABLE].create_index(["status", "updated_at"])


def enqueued(event: Label.Enqueued):
    stamp = iso_ms(event)
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update({name: event.settings.get(name) for name in SETTINGS})
    row.update(
        label=event.label,
        dispatch_id=event.originator_id,
        session_key=event.session_key,
        spawned_at=event.settings.get("spawned_at") or stamp,
        status=event.settings.get("status") or "running",
        summary=event.settings.get("summary"),
        error=event.settings.get("error"),
        retry_count=0,
        updated_at=stamp,
        imported=1 if event.settings.get("imported") else 0,
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
    yield from _on_dispatch(event, {})


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
    version=2,
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
