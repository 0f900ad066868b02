"""The idempotency ledger of spec §19 as a view over runs (the `idem` commands, §5.6).

ocsched keeps no ledger table: a run's id is derived from its cause (a clock slot, a
dispatch), so one cause makes at most one run, whoever decides it. The run's key is that
cause (`clock/<job>/<slot>`, `dispatch/<id>`): the run record shows it and an at-least-once
agent prompt carries it. The anchor's claim and release become what the run's outcome
says: a key stays claimed unless the anchor would have released it (an agent turn that
failed, a crash, a refusal by the v0.2 gates, a run that never started) or `idem release`
did; it expires 7 days after its claim (24 hours for `delete_after_run` jobs).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from .schedule import from_ts, to_ts

KEEP = timedelta(days=7)
KEEP_ONE_SHOT = timedelta(hours=24)
RELEASING_AGENT_STATUSES = frozenset({"error", "timeout"})
"""An agent turn that ended so leaves its key free for a retry."""
IMPORTED_OWNER = "openclaw-scheduler"
"""The owner of a run imported from openclaw-scheduler, whose ledger said whether its key
was released (`Run.KeyReleased`); its outcome releases nothing."""


def ledger_row(run: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ledger row (key, job_id, run_id, status, claimed_at, released_at, result_hash,
    expires_at) for a run, or None for a run that never claimed a key (a skipped fire)."""
    key = run.get("idempotency_key")
    if not key or run.get("status") == "skipped":
        return None
    by_outcome = run.get("owner") != IMPORTED_OWNER and _released_by_outcome(run, job)
    released_at = run.get("key_released_at") or (run.get("finished_at") if by_outcome else None)
    claimed_at: str = run.get("dispatched_at") or run.get("started_at") or ""
    one_shot = bool(job and job.get("delete_after_run"))
    expires_at = (
        to_ts(from_ts(claimed_at) + (KEEP_ONE_SHOT if one_shot else KEEP)) if claimed_at else None
    )
    agent_ok = _agent(job) and run.get("status") == "ok" and released_at is None
    return {
        "key": key,
        "job_id": run["job_id"],
        "run_id": run["id"],
        "status": "released" if released_at else "claimed",
        "claimed_at": claimed_at,
        "released_at": released_at,
        "result_hash": result_hash(run.get("summary")) if agent_ok else None,
        "expires_at": expires_at,
    }


def result_hash(text: str | None) -> str | None:
    """The first 16 hex characters of the reply's SHA-256."""
    if not text:
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _released_by_outcome(run: dict[str, Any], job: dict[str, Any] | None) -> bool:
    status = run.get("status")
    if status == "crashed":
        return True
    never_started = run.get("process_id") is None and run.get("session_key") is None
    if status == "error" and never_started:
        return True  # refused by a gate, or its command could not start
    return _agent(job) and status in RELEASING_AGENT_STATUSES


def _agent(job: dict[str, Any] | None) -> bool:
    if job is None:
        return False
    return job.get("session_target") != "shell" and job.get("job_type") != "watchdog"
