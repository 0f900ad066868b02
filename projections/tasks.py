"""The task tracker's read model (spec §23): the anchor's `task_tracker`,
`task_tracker_agents`, `team_tasks` and `team_mailbox_events` tables, and their queries.

A member's row is keyed `<group id>:<label>`; a team task's `<team>` + US + `<task>` (the
anchor's two-column key), kept out of what the queries return.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ocsched.domain.schedule import to_ts

from .projection import Projection
from .rows import RowChange, Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.task_group import TaskGroup
    from ocsched.domain.task_team import Team

GROUPS, MEMBERS = "task_tracker", "task_tracker_agents"
TEAM_TASKS, TEAM_EVENTS = "team_tasks", "team_mailbox_events"
GROUP_COLUMNS: dict[str, type] = {
    "id": str,
    "name": str,
    "created_at": str,
    "created_by": str,
    "expected_agents": str,
    "timeout_s": int,
    "status": str,
    "completed_at": str,
    "delivery_channel": str,
    "delivery_to": str,
    "summary": str,
}
MEMBER_COLUMNS: dict[str, type] = {
    "id": str,
    "tracker_id": str,
    "agent_label": str,
    "status": str,
    "started_at": str,
    "finished_at": str,
    "exit_message": str,
    "error": str,
    "session_key": str,
    "last_heartbeat": str,
}
TEAM_TASK_COLUMNS: dict[str, type] = {
    "team_id": str,
    "id": str,
    "member_id": str,
    "source_message_id": str,
    "title": str,
    "status": str,
    "gate_tracker_id": str,
    "gate_status": str,
    "last_error": str,
    "created_at": str,
    "updated_at": str,
    "completed_at": str,
}
TEAM_EVENT_COLUMNS: dict[str, type] = {
    "id": str,
    "team_id": str,
    "member_id": str,
    "task_id": str,
    "message_id": str,
    "event_type": str,
    "payload": str,
    "created_at": str,
}
_EVENT_IDS = uuid.UUID("0f8e6a52-2b8c-4a57-9c51-5d1c8f3e7a64")


def create_tables(db: Any) -> None:
    db[GROUPS].create(GROUP_COLUMNS, pk="id")
    db[GROUPS].create_index(["status", "created_at"])
    db[MEMBERS].create(MEMBER_COLUMNS, pk="id")
    db[MEMBERS].create_index(["tracker_id"])
    db[TEAM_TASKS].create({"key": str, **TEAM_TASK_COLUMNS}, pk="key")
    db[TEAM_TASKS].create_index(["team_id", "updated_at"])
    db[TEAM_TASKS].create_index(["gate_status"])
    db[TEAM_EVENTS].create(TEAM_EVENT_COLUMNS, pk="id")
    db[TEAM_EVENTS].create_index(["team_id", "created_at"])
    db[TEAM_EVENTS].create_index(["message_id"])


def member_key(group_id: str, label: str) -> str:
    return f"{group_id}:{label}"


def team_task_key(team_id: str, task_id: str) -> str:
    return f"{team_id}\x1f{task_id}"


# Task groups


def created(event: TaskGroup.Created) -> Iterator[RowChange]:
    group = event.originator_id
    row: dict[str, Any] = dict.fromkeys(GROUP_COLUMNS)
    row.update(
        id=group,
        name=event.name,
        created_at=ts(event),
        created_by=event.created_by,
        expected_agents=json.dumps(event.expected_agents, separators=(",", ":")),
        timeout_s=event.timeout_s,
        status="active",
        delivery_channel=event.delivery_channel,
        delivery_to=event.delivery_to,
    )
    yield Upsert(GROUPS, row)
    for label in event.expected_agents:
        member: dict[str, Any] = dict.fromkeys(MEMBER_COLUMNS)
        member.update(id=member_key(group, label), tracker_id=group, agent_label=label)
        member["status"] = "pending"
        yield Upsert(MEMBERS, member)


def member_started(event: TaskGroup.MemberStarted) -> Iterator[RowChange]:
    at = ts(event)
    values = {"status": "running", "started_at": at, "last_heartbeat": at}
    yield Update(MEMBERS, member_key(event.originator_id, event.label), values)


def member_seen(event: TaskGroup.SessionRegistered | TaskGroup.MemberSeen):
    values = {"status": event.status, "started_at": to_ts(event.started_at)}
    values["last_heartbeat"] = ts(event)
    session_key = getattr(event, "session_key", None)  # (a registration's, not a sighting's)
    if session_key:
        values["session_key"] = session_key
    yield Update(MEMBERS, member_key(event.originator_id, event.label), values)


def member_completed(event: TaskGroup.MemberCompleted) -> Iterator[RowChange]:
    values = {"status": "completed", "finished_at": ts(event), "exit_message": event.message}
    yield Update(MEMBERS, member_key(event.originator_id, event.label), values)


def member_failed(event: TaskGroup.MemberFailed) -> Iterator[RowChange]:
    values = {"status": "failed", "finished_at": ts(event), "error": event.error}
    yield Update(MEMBERS, member_key(event.originator_id, event.label), values)


def members_dead(event: TaskGroup.MembersDead) -> Iterator[RowChange]:
    values = {"status": "dead", "finished_at": ts(event), "error": event.error}
    for label in event.labels:
        yield Update(MEMBERS, member_key(event.originator_id, label), dict(values))


def group_completed(event: TaskGroup.Completed) -> Iterator[RowChange]:
    values = {"status": event.status, "completed_at": ts(event), "summary": event.summary}
    yield Update(GROUPS, event.originator_id, values)


# Teams


def _team_event(event: Any, event_type: str, payload: dict[str, Any], **columns: Any) -> Upsert:
    row: dict[str, Any] = dict.fromkeys(TEAM_EVENT_COLUMNS)
    row.update(columns)
    row.update(
        id=str(uuid.uuid5(_EVENT_IDS, f"{event.originator_id}/{event.originator_version}")),
        team_id=event.team_id,
        event_type=event_type,
        payload=json.dumps(payload, separators=(",", ":")),
        created_at=ts(event),
    )
    return Upsert(TEAM_EVENTS, row)


def _new_task(event: Any, task_id: str, **columns: Any) -> Upsert:
    at = ts(event)
    row: dict[str, Any] = dict.fromkeys(TEAM_TASK_COLUMNS)
    row.update(team_id=event.team_id, id=task_id, created_at=at, updated_at=at, **columns)
    return Upsert(TEAM_TASKS, {"key": team_task_key(event.team_id, task_id), **row}, pk="key")


def _task_update(event: Any, **values: Any) -> Update:
    values["updated_at"] = ts(event)
    return Update(TEAM_TASKS, team_task_key(event.team_id, event.task_id), values, pk="key")


def message_mapped(event: Team.MessageMapped) -> Iterator[RowChange]:
    task = event.task_id
    if task is not None and event.event_type == "task_created":
        yield _new_task(
            event,
            task,
            member_id=event.member_id,
            source_message_id=event.source_message_id,
            title=event.title,
            status="open",
        )
    elif task is not None:
        yield _task_update(
            event, member_id=event.member_id, source_message_id=event.source_message_id
        )
    yield _team_event(
        event,
        event.event_type,
        event.payload,
        member_id=event.message_member_id,
        task_id=task,
        message_id=event.message_id,
    )


def gate_opened(event: Team.GateOpened) -> Iterator[RowChange]:
    gate = {"gate_tracker_id": event.tracker_id, "gate_status": "waiting", "status": "blocked"}
    if event.new_task:
        yield _new_task(event, event.task_id, title=f"Team task {event.task_id}", **gate)
    else:
        yield _task_update(event, **gate)
    payload = {
        "tracker_id": event.tracker_id,
        "expected_members": event.expected_members,
        "timeout_s": event.timeout_s,
    }
    yield _team_event(event, "gate_open", payload, task_id=event.task_id)


def gate_closed(event: Team.GateClosed) -> Iterator[RowChange]:
    """Passed when the group completed; failed when it failed or was missing."""
    summary = event.summary
    if event.status == "completed":
        yield _task_update(event, gate_status="passed", status="open")
        payload = {"tracker_id": event.tracker_id, "summary": summary}
        yield _team_event(event, "gate_passed", payload, task_id=event.task_id)
        return
    if event.status is None:
        error = "Missing tracker"
        payload = {"tracker_id": event.tracker_id, "reason": "missing_tracker"}
    else:
        error = summary or f"Gate {event.status}"
        payload = {"tracker_id": event.tracker_id, "summary": summary, "status": event.status}
    failed = {"gate_status": "failed", "status": "failed", "last_error": error}
    yield _task_update(event, completed_at=ts(event), **failed)
    yield _team_event(event, "gate_failed", payload, task_id=event.task_id)


def message_acked(event: Team.MessageAcked) -> Iterator[RowChange]:
    yield _team_event(
        event,
        "ack",
        {"actor": event.actor, "detail": event.detail},
        member_id=event.member_id,
        task_id=event.task_id,
        message_id=event.message_id,
    )


projection = Projection(
    name="tasks",
    version=1,
    tables=(GROUPS, MEMBERS, TEAM_TASKS, TEAM_EVENTS),
    create_tables=create_tables,
    handlers={
        "task_group:TaskGroup.Created": created,
        "task_group:TaskGroup.MemberStarted": member_started,
        "task_group:TaskGroup.SessionRegistered": member_seen,
        "task_group:TaskGroup.MemberSeen": member_seen,
        "task_group:TaskGroup.MemberCompleted": member_completed,
        "task_group:TaskGroup.MemberFailed": member_failed,
        "task_group:TaskGroup.MembersDead": members_dead,
        "task_group:TaskGroup.Completed": group_completed,
        "task_team:Team.MessageMapped": message_mapped,
        "task_team:Team.GateOpened": gate_opened,
        "task_team:Team.GateClosed": gate_closed,
        "task_team:Team.MessageAcked": message_acked,
    },
)


# Queries (plain sqlite3, for the commands and the daemon)

_GROUP = ", ".join(GROUP_COLUMNS)
_MEMBER = ", ".join(MEMBER_COLUMNS)
_TEAM_TASK = ", ".join(TEAM_TASK_COLUMNS)
_TEAM_EVENT = ", ".join(TEAM_EVENT_COLUMNS)


def _all(db: sqlite3.Connection | None, sql: str, *parameters: Any) -> list[dict[str, Any]]:
    return [] if db is None else db.execute(sql, parameters).fetchall()


def group(db: sqlite3.Connection | None, group_id: str) -> dict[str, Any] | None:
    rows = _all(db, f"SELECT {_GROUP} FROM {GROUPS} WHERE id = ?", group_id)
    return rows[0] if rows else None


def members(db: sqlite3.Connection | None, group_id: str) -> list[dict[str, Any]]:
    """A group's members by label (the status view's order)."""
    sql = f"SELECT {_MEMBER} FROM {MEMBERS} WHERE tracker_id = ? ORDER BY agent_label"
    return _all(db, sql, group_id)


def active_groups(db: sqlite3.Connection | None) -> list[dict[str, Any]]:
    """Active groups, newest first."""
    where = "status = 'active' ORDER BY created_at DESC, rowid DESC"
    return _all(db, f"SELECT {_GROUP} FROM {GROUPS} WHERE {where}")


def ended_groups(db: sqlite3.Connection | None, limit: int) -> list[dict[str, Any]]:
    where = "status != 'active' ORDER BY completed_at DESC, rowid DESC LIMIT ?"
    return _all(db, f"SELECT {_GROUP} FROM {GROUPS} WHERE {where}", limit)


def team_tasks(db: sqlite3.Connection | None, team_id: str, limit: int) -> list[dict[str, Any]]:
    where = "team_id = ? ORDER BY updated_at DESC, rowid DESC LIMIT ?"
    return _all(db, f"SELECT {_TEAM_TASK} FROM {TEAM_TASKS} WHERE {where}", team_id, limit)


def waiting_gates(db: sqlite3.Connection | None, limit: int) -> list[dict[str, Any]]:
    where = "gate_status = 'waiting' AND gate_tracker_id IS NOT NULL ORDER BY updated_at, rowid"
    return _all(db, f"SELECT {_TEAM_TASK} FROM {TEAM_TASKS} WHERE {where} LIMIT ?", limit)


def team_events(
    db: sqlite3.Connection | None, team_id: str, limit: int, task_id: str | None = None
) -> list[dict[str, Any]]:
    task = " AND task_id = ?" if task_id else ""
    parameters = (team_id, task_id, limit) if task_id else (team_id, limit)
    order = "ORDER BY created_at DESC, rowid DESC LIMIT ?"
    return _all(
        db, f"SELECT {_TEAM_EVENT} FROM {TEAM_EVENTS} WHERE team_id = ?{task} {order}", *parameters
    )


def unmapped_team_messages(db: sqlite3.Connection | None, limit: int) -> list[dict[str, Any]]:
    """Team messages (the messages read model) not yet mapped onto their team, oldest
    first."""
    where = "team_id IS NOT NULL AND team_mapped_at IS NULL ORDER BY created_at, rowid"
    return _all(db, f"SELECT * FROM messages WHERE {where} LIMIT ?", limit)
