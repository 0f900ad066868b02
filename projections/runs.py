"""The runs read model: one row per run, the record of spec §9.3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import KeepNewest, Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.run import Run

TABLE = "runs"
RUNS_KEPT_PER_JOB = 100
"""Retention (spec §26): the read model keeps each job's newest runs; the log keeps all."""
COLUMNS: dict[str, type] = {
    "id": str,
    "job_id": str,
    "status": str,
    "trigger": str,
    "slot": str,
    "started_at": str,
    "finished_at": str,
    "duration_ms": int,
    "last_heartbeat": str,
    "session_key": str,
    "session_id": str,
    "summary": str,
    "error_message": str,
    "shell_exit_code": int,
    "shell_signal": str,
    "shell_timed_out": int,
    "shell_stdout": str,
    "shell_stderr": str,
    "shell_stdout_path": str,
    "shell_stderr_path": str,
    "shell_stdout_bytes": int,
    "shell_stderr_bytes": int,
    "dispatched_at": str,
    "run_timeout_ms": int,
    "retry_count": int,
    "retry_of": str,
    "triggered_by_run": str,
    "dispatch_queue_id": str,
    "context_summary": str,
    "replay_of": str,
    "idempotency_key": str,
    "queued_behind": str,
    "process_id": int,
    "process_group": int,
    "owner": str,
    "input_tokens": int,
    "output_tokens": int,
    "total_tokens": int,
    # spec §9.3's v0.2 outcome columns (JSON text); each set by its gate's `Run.Gated`
    "identity_resolved": str,
    "trust_evaluation": str,
    "authorization_decision": str,
    "authorization_proof_verification": str,
    "evidence_record": str,
    "credential_handoff_summary": str,
    "key_released_at": str,
}
GATE_COLUMNS = {
    "identity": "identity_resolved",
    "credential_handoff": "credential_handoff_summary",
    "trust": "trust_evaluation",
    "proof": "authorization_proof_verification",
    "authorization": "authorization_decision",
}


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="id", defaults={"shell_timed_out": 0})
    db[TABLE].create_index(["job_id", "started_at"])
    db[TABLE].create_index(["status"])
    # A store of version 7 or before also has the summaries' FTS5 index `runs_fts`; its
    # triggers went with the old `runs` table, the index itself goes here.
    db.execute(f"DROP TABLE IF EXISTS [{TABLE}_fts]")


def scheduled(event: Run.Scheduled):
    stamp = ts(event)
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(
        id=event.originator_id,
        job_id=event.job_id,
        status="pending",
        trigger=event.trigger,
        slot=event.slot,
        started_at=stamp,
        last_heartbeat=stamp,
        dispatched_at=stamp,
        run_timeout_ms=event.run_timeout_ms,
        retry_count=event.retry_count,
        retry_of=event.retry_of,
        triggered_by_run=event.triggered_by_run,
        dispatch_queue_id=event.dispatch_id,
        replay_of=event.replay_of,
        owner=event.owner,
        idempotency_key=event.meta.cause,
        shell_timed_out=0,
        shell_stdout_bytes=0,
        shell_stderr_bytes=0,
    )
    yield Upsert(TABLE, row)
    yield KeepNewest(TABLE, "job_id", event.job_id, "started_at", RUNS_KEPT_PER_JOB)


def queued(event: Run.Queued):
    yield Update(TABLE, event.originator_id, {"status": "queued", "queued_behind": event.behind})


def started(event: Run.Started):
    stamp = ts(event)
    values = {
        "status": "running",
        "started_at": stamp,
        "last_heartbeat": stamp,
        "process_id": event.process_id,
        "process_group": event.process_group,
        "session_key": event.session_key,
    }
    yield Update(TABLE, event.originator_id, values)


def gated(event: Run.Gated):
    column = GATE_COLUMNS.get(event.gate)
    if column is not None:
        yield Update(TABLE, event.originator_id, {column: event.detail})


def key_released(event: Run.KeyReleased):
    yield Update(TABLE, event.originator_id, {"key_released_at": ts(event)})


def finished(event: Run.Finished):
    values = {**event.outcome, "status": event.status, "finished_at": ts(event)}
    yield Update(TABLE, event.originator_id, values)


projection = Projection(
    name="runs",
    version=8,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "run:Run.Scheduled": scheduled,
        "run:Run.Queued": queued,
        "run:Run.Gated": gated,
        "run:Run.Started": started,
        "run:Run.Finished": finished,
        "run:Run.KeyReleased": key_released,
    },
)
