"""Rows of an openclaw-scheduler database as ocsched aggregates (`ocsched import`).

One function per table: a row (and what it refers to) in, a new aggregate out whose
events tell the row's history at the row's own times; or `Skip` with the reason. Ids are
the anchor's own (jobs, runs, dispatches, approvals, messages, task groups), or derived
from the name as ocsched derives them (aliases, agents). Every event's cause is the
row's `import/<fingerprint>/<table>/<id>`, which is how a second import knows it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ocsched.domain.agent import Agent, agent_aggregate_id
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.approval import Approval
from ocsched.domain.delivery import Alias, alias_id
from ocsched.domain.dispatch import Dispatch
from ocsched.domain.errors import DomainError
from ocsched.domain.idempotency import IMPORTED_OWNER
from ocsched.domain.job import Job, new_job
from ocsched.domain.job_spec import JobSpec
from ocsched.domain.json_text import parse_json
from ocsched.domain.message import Message
from ocsched.domain.run import TERMINAL, Run, Trigger
from ocsched.domain.task_group import TaskGroup

Meta = Callable[[str, str], EventMeta]
"""(table, row id) -> the meta of the events made from that row."""

OWNER = IMPORTED_OWNER
"""The owner of an imported run: no daemon of ours, and no process to recover."""
JOB_STATE = ("last_run_at", "last_status", "consecutive_errors", "queued_count", "updated_at")
RUN_COLUMNS = (
    "started_at",
    "duration_ms",
    "last_heartbeat",
    "session_key",
    "session_id",
    "summary",
    "error_message",
    "shell_exit_code",
    "shell_signal",
    "shell_timed_out",
    "shell_stdout",
    "shell_stderr",
    "shell_stdout_path",
    "shell_stderr_path",
    "shell_stdout_bytes",
    "shell_stderr_bytes",
    "dispatched_at",
    "run_timeout_ms",
    "context_summary",
    "idempotency_key",
    "identity_resolved",
    "trust_evaluation",
    "authorization_decision",
    "authorization_proof_verification",
    "evidence_record",
    "credential_handoff_summary",
)
PLACEHOLDER_RUN_STATUSES = ("awaiting_approval", "approved")
UNFINISHED_RUN_STATUSES = ("pending", "running")
_SPEC_FIELDS = tuple(name for name in JobSpec.__struct_fields__ if name != "id")


class Skip(Exception):
    """The row is not imported; the message says why."""


def moment(text: Any, fallback: datetime) -> datetime:
    """A time the anchor stored (`YYYY-MM-DD HH:MM:SS` in UTC, or ISO text) as a moment;
    `fallback` when there is none or it is not a time."""
    if not isinstance(text, str) or not text:
        return fallback
    cleaned = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        return fallback
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def job(row: dict[str, Any], meta: Meta, now: datetime) -> Job:
    """The job with its exact spec, id, next fire and scheduling state; a spec ocsched's
    validation refuses is skipped with the refusal."""
    from ocsched.domain.validation import validate_job_spec

    spec = {name: row[name] for name in _SPEC_FIELDS if row.get(name) is not None}
    try:
        normalized = validate_job_spec(spec)
    except DomainError as error:
        raise Skip(f"ocsched refuses its spec: {error}") from None
    normalized["next_run_at"] = row.get("next_run_at")
    state = {name: row[name] for name in JOB_STATE if row.get(name) is not None}
    created = moment(row.get("created_at"), now)
    return new_job(normalized, row["id"], meta("jobs", row["id"]), created, state or None)


def dispatch(
    row: dict[str, Any],
    approval: dict[str, Any] | None,
    run_id: str | None,
    retry_count: int,
    meta: Meta,
    now: datetime,
) -> Dispatch:
    """A dispatch-queue row (spec §17) and where it got: claimed by its run, held for its
    approval and released or cancelled by the decision, cancelled."""
    kind = row.get("dispatch_kind")
    if kind not in ("manual", "chain", "retry"):
        raise Skip(f"unknown dispatch kind {kind!r}")
    event_meta = meta("job_dispatch_queue", row["id"])
    created = moment(row.get("created_at"), now)
    queued = Dispatch(
        id=row["id"],
        job_id=row["job_id"],
        kind=kind,
        scheduled_for=row.get("scheduled_for") or row.get("created_at") or "",
        source_run_id=row.get("source_run_id"),
        retry_count=retry_count,
        meta=event_meta,
        timestamp=created,
    )
    status = row.get("status")
    if approval is not None:
        asked = moment(approval.get("requested_at"), created)
        queued.hold(approval["id"], event_meta, asked)
        decided = moment(approval.get("resolved_at"), asked)
        if approval.get("status") in ("approved", "dispatched") or status in ("claimed", "done"):
            queued.release(approval["id"], event_meta, decided)
        elif approval.get("status") in ("rejected", "timed_out") or status == "cancelled":
            reason = approval.get("notes") or f"approval {approval.get('status')}"
            queued.cancel(reason, event_meta, decided)
            return queued
    if status in ("claimed", "done") and run_id is not None:
        queued.claim(run_id, event_meta, moment(row.get("claimed_at"), created))
    elif status in ("claimed", "done", "cancelled"):
        ended = moment(row.get("processed_at") or row.get("claimed_at"), created)
        queued.cancel(f"{status} in openclaw-scheduler", event_meta, ended)
    return queued


def approval(row: dict[str, Any], source_run_id: str | None, meta: Meta, now: datetime):
    """An approval request (spec §16) and its decision: by whom, or by the timeout."""
    if not row.get("dispatch_queue_id"):
        raise Skip("no dispatch waits for it (an approval from before schema 11)")
    event_meta = meta("approvals", row["id"])
    asked = moment(row.get("requested_at"), now)
    request = Approval(
        id=row["id"],
        job_id=row["job_id"],
        dispatch_id=row["dispatch_queue_id"],
        source_run_id=source_run_id,
        meta=event_meta,
        timestamp=asked,
    )
    status, by = row.get("status"), row.get("resolved_by") or "operator"
    decided = moment(row.get("resolved_at"), asked)
    automatic = by == "timeout"
    if status in ("approved", "dispatched"):
        request.approve(by, event_meta, decided, automatic=automatic)
    elif status in ("rejected", "timed_out"):
        automatic = automatic or status == "timed_out"
        request.reject(by, row.get("notes"), event_meta, decided, automatic=automatic)
    return request


def run(
    row: dict[str, Any],
    trigger: Trigger,
    released_at: str | None,
    meta: Meta,
    now: datetime,
) -> Run:
    """A run from its decision to its outcome, every column of its record as the anchor
    kept it. A run still pending or running in the anchor has no process of ours to
    follow: it is recorded `crashed`, as our recovery would."""
    status = row.get("status")
    if status in PLACEHOLDER_RUN_STATUSES:
        raise Skip(f"{status} placeholder of an approval (the approval is imported)")
    event_meta = meta("runs", row["id"])
    started = moment(row.get("started_at"), now)
    scheduled = moment(row.get("dispatched_at"), started)
    record = Run(
        id=row["id"],
        job_id=row["job_id"],
        trigger=trigger,
        slot=None,
        dispatch_id=row.get("dispatch_queue_id"),
        retry_count=row.get("retry_count") or 0,
        retry_of=row.get("retry_of"),
        triggered_by_run=row.get("triggered_by_run"),
        replay_of=row.get("replay_of"),
        run_timeout_ms=row.get("run_timeout_ms") or 300000,
        owner=OWNER,
        job_changes={},
        meta=event_meta,
        timestamp=min(scheduled, started),
    )
    if status not in ("pending", "skipped"):  # a skipped fire never started
        record.start(None, None, event_meta, started, session_key=row.get("session_key"))
    outcome = {name: row.get(name) for name in RUN_COLUMNS}
    if status in UNFINISHED_RUN_STATUSES or status not in TERMINAL:
        outcome["error_message"] = row.get("error_message") or (
            f"{status} in openclaw-scheduler when it was imported"
        )
        status = "crashed"
    finished = moment(row.get("finished_at"), started)
    record.finish(status, outcome, {}, event_meta, max(finished, started))
    if released_at is not None:
        record.release_key(event_meta, moment(released_at, finished))
    return record


def alias(row: dict[str, Any], meta: Meta, now: datetime) -> Alias:
    name = row.get("alias")
    if not name or not row.get("channel") or not row.get("target"):
        raise Skip("an alias needs a name, a channel and a target")
    return Alias(
        id=alias_id(name),
        name=name,
        channel=row["channel"],
        target=row["target"],
        description=row.get("description"),
        meta=meta("delivery_aliases", name),
        timestamp=moment(row.get("created_at"), now),
    )


def message(row: dict[str, Any], meta: Meta, now: datetime) -> Message:
    """A message and what became of it: delivered, read, acknowledged, failed, expired."""
    if not row.get("from_agent") or not row.get("to_agent") or row.get("body") is None:
        raise Skip("a message needs a sender, a recipient and a body")
    if not isinstance(row["body"], str):
        raise Skip("its body is not text")
    event_meta = meta("messages", row["id"])
    sent = moment(row.get("created_at"), now)
    text = {
        name: row.get(name) or None
        for name in ("subject", "metadata", "channel", "delivery_to", "team_id", "member_id")
    }
    posted = Message(
        id=row["id"],
        from_agent=row["from_agent"],
        to_agent=row["to_agent"],
        kind=row.get("kind") or "text",
        body=row["body"],
        priority=row.get("priority") or 0,
        task_id=row.get("task_id") or None,
        reply_to=row.get("reply_to") or None,
        expires_at=row.get("expires_at") or None,
        job_id=row.get("job_id") or None,
        run_id=row.get("run_id") or None,
        owner=row.get("owner") or None,
        ack_required=bool(row.get("ack_required")),
        meta=event_meta,
        timestamp=sent,
        **text,
    )
    status = row.get("status")
    attempts = row.get("delivery_attempts") or 0
    if row.get("delivered_at") or status == "delivered":
        posted.deliver(OWNER, event_meta, moment(row.get("delivered_at"), sent))
    if status == "failed" or (row.get("last_error") and attempts):
        posted.record_attempt(OWNER, row.get("last_error") or "failed", event_meta, sent)
    if row.get("ack_at"):
        acked = moment(row["ack_at"], sent)
        if row.get("read_at"):
            posted.read(event_meta, moment(row["read_at"], acked), receipt=False, actor=OWNER)
        posted.acknowledge(OWNER, None, event_meta, acked)
    elif row.get("read_at") or status == "read":
        posted.read(event_meta, moment(row.get("read_at"), sent), receipt=False, actor=OWNER)
    if status == "expired" and posted.unread:
        posted._record_expired(meta=event_meta, timestamp=moment(row.get("expires_at"), sent))
    return posted


def agent(row: dict[str, Any], meta: Meta, now: datetime) -> Agent:
    values: dict[str, Any] = {
        name: row.get(name)
        for name in ("name", "status", "session_key", "delivery_channel", "delivery_to")
    }
    values["brand_name"] = row.get("brand_name")
    capabilities = row.get("capabilities")
    try:
        values["capabilities"] = parse_json(capabilities) if capabilities else None
    except ValueError:
        values["capabilities"] = [capabilities]
    values = {name: value for name, value in values.items() if value is not None}
    event_meta = meta("agents", row["id"])
    registered = Agent(
        id=agent_aggregate_id(row["id"]),
        agent_id=row["id"],
        values=values,
        meta=event_meta,
        timestamp=moment(row.get("created_at"), now),
    )
    if row.get("last_seen_at"):
        seen = moment(row["last_seen_at"], now)
        registered._record_update(agent_id=row["id"], values={}, meta=event_meta, timestamp=seen)
    return registered


def task_group(
    row: dict[str, Any], members: list[dict[str, Any]], meta: Meta, now: datetime
) -> TaskGroup:
    """A task group (spec §23), each member's heartbeats, end and session, and the
    group's own end with its summary."""
    try:
        expected = parse_json(row.get("expected_agents") or "")
    except ValueError:
        expected = None
    if not isinstance(expected, list) or not all(isinstance(x, str) and x for x in expected):
        raise Skip("expected_agents is not a list of labels")
    expected = list(dict.fromkeys(expected))
    event_meta = meta("task_tracker", row["id"])
    created = moment(row.get("created_at"), now)
    group = TaskGroup(
        id=row["id"],
        name=row.get("name") or row["id"],
        expected_agents=expected,
        timeout_s=row.get("timeout_s") or 600,
        created_by=row.get("created_by") or "main",
        delivery_channel=row.get("delivery_channel"),
        delivery_to=row.get("delivery_to"),
        team_id=None,
        task_id=None,
        meta=event_meta,
        timestamp=created,
    )
    for member in members:
        _member_history(group, member, event_meta, created)
    if row.get("status") in ("completed", "failed", "timed_out"):
        status = "completed" if row["status"] == "completed" else "failed"
        ended = moment(row.get("completed_at"), created)
        group._record_completed_group(
            status=status, summary=row.get("summary") or "", meta=event_meta, timestamp=ended
        )
    return group


def _member_history(group: TaskGroup, member: dict, meta: EventMeta, created: datetime) -> None:
    label, status = member.get("agent_label"), member.get("status")
    if label not in group.members:
        return
    started = moment(member.get("started_at"), created)
    if member.get("session_key"):
        group.register_session(label, member["session_key"], meta, started)
    elif member.get("started_at"):
        group._record_started(label=label, meta=meta, timestamp=started)
    ended = moment(member.get("finished_at") or member.get("last_heartbeat"), started)
    if status == "completed":
        message = member.get("exit_message")
        group._record_completed(label=label, message=message, meta=meta, timestamp=ended)
    elif status == "failed":
        error = member.get("error") or "failed"
        group._record_failed(label=label, error=error, meta=meta, timestamp=ended)
    elif status == "dead":
        error = member.get("error") or "Timed out (dead-man switch)"
        group._record_dead(labels=[label], error=error, meta=meta, timestamp=ended)


def trigger_of(row: dict[str, Any], dispatch_kinds: dict[str, Trigger]) -> Trigger:
    """How the run came about: its dispatch's kind, else what it points at, else a fire."""
    kind = dispatch_kinds.get(row.get("dispatch_queue_id") or "")
    if row.get("replay_of"):
        return "replay"
    if kind:
        return kind
    if row.get("retry_of"):
        return "retry"
    if row.get("triggered_by_run"):
        return "chain"
    return "clock"
