"""Following sub-agent dispatches (spec §31.5–31.11) as decisions: the starting notice,
the result delivery, the verification's record, how a running dispatch ends, and the
record of an overload retry."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocsched.domain.dispatch_rules.delivery_text import resolve_delivery_text
from ocsched.domain.dispatch_rules.overload import (
    RETRY_MESSAGE_FRESH,
    RETRY_MESSAGE_REUSE,
    is_overload_error,
    recovery_decision,
    recovery_notice,
)
from ocsched.domain.dispatch_rules.task_message import task_message
from ocsched.domain.label import Label, resolution
from ocsched.domain.run import RUN_NAMESPACE

from .deliveries import label_target, new_delivery
from .facts import Facts
from .plan import Plan, Row, reactor_meta


def start_notice(row: Row, brand: str, *, owner: str, now: datetime, facts: Facts) -> Plan:
    """The "starting…" notice of a new dispatch."""
    text = f"🌶️ *{brand}* [{row['label']}] starting..."
    return _label_delivery(row, "dispatch-start", text, owner=owner, now=now, facts=facts)


def result_delivery(row: Row, *, owner: str, now: datetime, facts: Facts) -> Plan:
    """The result of a dispatch that is done, errored or interrupted."""
    text = dispatch_result_text(row)
    return _label_delivery(row, "dispatch-result", text, owner=owner, now=now, facts=facts)


def _label_delivery(
    row: Row, purpose: str, text: str, *, owner: str, now: datetime, facts: Facts
) -> Plan:
    meta = reactor_meta(owner, f"label/{row['dispatch_id']}")
    target = label_target(row)
    return Plan(
        new_delivery(row["dispatch_id"], target, purpose, text, meta=meta, now=now, facts=facts)
    )


def dispatch_result_text(row: Row) -> str:
    """What a finished dispatch delivers, in spec §31.9's order (completion, summary), with
    a fixed explanation when nothing usable is left."""
    if (row["error"] or "").startswith("verify-cmd failed"):
        return (
            f"🌶️ *dispatch* [{row['label']}] ⚠️ VERIFICATION FAILED\n\n"
            f"Command: {row['verify_cmd']}\n{row['error']}"
        )
    completion = json.loads(row["completion"]) if row["completion"] else None
    text = resolve_delivery_text(
        completion=completion, last_reply=None, fallback_summary=row["summary"]
    )
    ending = "done" if row["status"] == "done" else row["status"]
    mark = "✅" if row["status"] == "done" else "⚠️"
    return f"{mark} [{row['label']}] {ending}\n\n{text or row['summary'] or ''}".rstrip()


def verification_recorded(
    label: Label, *, passed: bool, detail: str | None, owner: str, now: datetime
) -> Plan:
    """The `--verify-cmd` of a done dispatch passed or failed."""
    if label.status != "done":
        return Plan()
    meta = reactor_meta(owner, f"verify/{label.id}")
    label.verified(passed=passed, detail=detail, meta=meta, timestamp=now)
    return Plan([label])


def running_dispatch_ended(
    row: Row,
    label: Label,
    session: dict[str, Any] | None,
    *,
    grace_ms: float,
    owner: str,
    now: datetime,
) -> Plan:
    """A running dispatch ends when its session's last turn failed with an overload (529)
    after the dispatch's last change (as `error`, for the recovery to retry), or when
    `resolution` says the session is gone, idle or past the monitor timeout."""
    if label.status != "running":
        return Plan()
    meta = reactor_meta(owner, f"follow/{row['label']}")
    overload = _overload_error(row, session)
    if overload is not None:
        summary = f"Auto-resolved as error: {overload}"
        label.fail("error", f"FailoverError (529): {overload}", summary, meta, now)
        return Plan([label])
    ending = resolution(
        spawned_ms=_ms(row["spawned_at"]),
        timeout_s=row["timeout_seconds"],
        monitor_timeout_min=row["monitor_timeout_min"],
        session=session,
        now_ms=now.timestamp() * 1000,
        grace_ms=grace_ms,
    )
    if ending is None:
        return Plan()
    label.fail(*ending, meta, now)
    return Plan([label])


def _overload_error(row: Row, session: dict[str, Any] | None) -> str | None:
    if not session or session.get("status") != "failed":
        return None
    error = session.get("lastRunError") or ""
    ended = session.get("endedAt") or session.get("updatedAt") or 0
    if not is_overload_error(error) or ended <= _ms(row["updated_at"]):
        return None
    return error


@dataclass(frozen=True)
class OverloadRetry:
    """A retry of an overloaded dispatch to make through the gateway (spec §31.11):
    `fresh` starts a new session `session_key` with `message`; otherwise `message` goes to
    the same session. `idempotency_key` is derived from the dispatch and the attempt."""

    dispatch_id: str
    attempt: int
    fresh: bool
    session_key: str
    message: str
    idempotency_key: str


def overload_retry(row: Row, *, grace_s: float, now: datetime) -> OverloadRetry | None:
    """Whether an overload error is retried now (younger than an hour, older than the
    grace, at most 3 times; the same session first, then a fresh one), and how."""
    decision = recovery_decision(
        error_text=row["error"],
        error_at_ms=int(_ms(row["updated_at"])),
        now_ms=int(now.timestamp() * 1000),
        retries_so_far=row["retry_count"],
        session_reusable=(row["retry_count"] or 0) == 0,
        grace_ms=int(grace_s * 1000),
    )
    if decision is None:
        return None
    attempt = (row["retry_count"] or 0) + 1
    key = str(uuid.uuid5(RUN_NAMESPACE, f"dispatch-retry/{row['dispatch_id']}/{attempt}"))
    if decision == "retry-reuse":
        return OverloadRetry(
            row["dispatch_id"], attempt, False, row["session_key"], RETRY_MESSAGE_REUSE, key
        )
    message = task_message(
        label=row["label"],
        prompt=f"{RETRY_MESSAGE_FRESH}\n\n{row['task_prompt'] or ''}",
        target=row["deliver_to"],
        channel=row["deliver_channel"],
        origin=row["origin"],
    )
    session_key = f"agent:{row['agent'] or 'main'}:subagent:{key}"
    return OverloadRetry(row["dispatch_id"], attempt, True, session_key, message, key)


def overload_retried(
    row: Row, label: Label, retry: OverloadRetry, *, owner: str, now: datetime, facts: Facts
) -> Plan:
    """The gateway accepted the retry: record it, and tell the dispatch's target."""
    if label.status != "error":
        return Plan()
    meta = reactor_meta(owner, f"overload-retry/{row['dispatch_id']}/{retry.attempt}")
    label.retry(retry.session_key, row["error"] or "", meta, now)
    notice = recovery_notice(row["label"], retry.attempt, "fresh" if retry.fresh else "send")
    deliveries = []
    if row["deliver_to"]:
        purpose = f"dispatch-retry-{retry.attempt}"
        deliveries = new_delivery(
            row["dispatch_id"], label_target(row), purpose, notice, meta=meta, now=now, facts=facts
        )
    return Plan([label, *deliveries], notes=[notice])


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000
