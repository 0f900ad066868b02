"""Spec §31.12: the lifecycle hook bodies (Loki, webhook) and the fields of
`dispatch.started`, `dispatch.finished` and `dispatch.stuck`.
"""

from __future__ import annotations

import json
from typing import Any

from .values import time_ms


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loki_payload(event: str, fields: dict[str, Any], *, host: str, now_ns: int) -> dict[str, Any]:
    """The Loki push body: one stream labelled service_name/host/event, one value
    `[<epoch ns as text>, <JSON of {event, host, …fields}>]`."""
    line = _compact_json({"event": event, "host": host, **fields})
    return {
        "streams": [
            {
                "stream": {"service_name": "dispatch", "host": host, "event": event},
                "values": [[str(now_ns), line]],
            }
        ]
    }


def webhook_payload(
    event: str,
    fields: dict[str, Any],
    *,
    host: str,
    now_ms: int | None = None,
    now_iso: str | None = None,
) -> dict[str, Any]:
    """The webhook body `{event, ts, host, …fields}`; `ts` is epoch milliseconds (spec
    §31.12), from `now_ms`, or from `now_iso` when that is what the caller has."""
    if now_ms is None:
        now_ms = time_ms(now_iso)
    if now_ms is None:
        raise ValueError("webhook_payload needs now_ms or an ISO now_iso")
    return {"event": event, "ts": now_ms, "host": host, **fields}


def started_fields(
    *, label: str, job_id: str, run_id: str, agent: str, mode: str, session_key: str | None
) -> dict[str, Any]:
    """`dispatch.started`: `job_id` is the enqueue idempotency id, `run_id` the gateway's."""
    return {
        "label": label,
        "job_id": job_id,
        "run_id": run_id,
        "agent": agent,
        "mode": mode,
        "session_key": session_key or None,
    }


def finished_fields(
    *,
    label: str,
    run_id: str | None,
    agent: str | None,
    duration_ms: int | None,
    session_key: str | None,
    status: str = "ok",
    error: str | None = None,
) -> dict[str, Any]:
    """`dispatch.finished` (emitted by `done`): both ids are the ledger's runId."""
    return {
        "label": label,
        "job_id": run_id,
        "run_id": run_id,
        "agent": agent or "main",
        "status": status,
        "duration_ms": duration_ms or None,
        "error": error or None,
        "session_key": session_key or None,
    }


def stuck_fields(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`dispatch.stuck`; each run is `{run_id: <session key>, job_name: <label>,
    started_at: <spawnedAt>, age_s}`."""
    keys = ("run_id", "job_name", "started_at", "age_s")
    return {"stuck_count": len(runs), "runs": [{key: run.get(key) for key in keys} for run in runs]}


def finished_notice_body(label: str, text: str | None) -> str | None:
    """The message queued with `dispatch.finished` for a target: `✅ [<label>] done`, a
    blank line, the delivery text; None when there is no meaningful text."""
    return f"✅ [{label}] done\n\n{text}" if text else None
