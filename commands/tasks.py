"""The task tracker and the team adapter (spec §5.6, §23): `tasks` and `team`; the
service functions, and the CLI handlers over them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .context import Context
from .output import CommandError

if TYPE_CHECKING:
    from ocsched.domain.reactions.facts import Facts
    from ocsched.domain.task_group import TaskGroup
    from ocsched.domain.task_team import Team

Row = dict[str, Any]
MAP_LIMIT = 200
GATE_CHECK_LIMIT = 100


# Service functions: usable from Python, one per behaviour.


def create_group(ctx: Context, spec: Any) -> Row:
    """`tasks create`: a task group with every member pending; the anchor's answer."""
    from ocsched.domain.errors import DomainError
    from ocsched.domain.task_group import new_task_group, parse_spec

    try:
        checked = parse_spec(spec)
    except DomainError as error:
        raise CommandError(str(error)) from None
    group = new_task_group(str(uuid.uuid4()), checked, meta=ctx.meta(), at=ctx.now)
    ctx.save(group)
    return _created(group, checked.created_by)


def _created(group: TaskGroup, created_by: str) -> Row:
    from ocsched.domain.schedule import to_ts

    return {
        "id": group.id,
        "name": group.name,
        "status": "active",
        "created_at": to_ts(group.created_at),
        "created_by": created_by,
        "agents": [{"agent_label": label, "status": "pending"} for label in group.members],
    }


def _load_group(ctx: Context, group_id: str) -> TaskGroup | None:
    from ocsched.domain.task_group import TaskGroup
    from ocsched.projections import tasks

    if tasks.group(ctx.views(), group_id) is None:
        return None
    group: object = ctx.log.repository.get(group_id)
    return group if isinstance(group, TaskGroup) else None


def heartbeat(ctx: Context, group_id: str, label: str, status: str, message: str | None) -> Row:
    """`tasks heartbeat`: a member reports. An unknown group or label records nothing and
    is not an error (the anchor's contract: the sub-agent's call must not fail)."""
    from ocsched.domain.errors import DomainError
    from ocsched.domain.task_group import HEARTBEAT_STATUSES

    if status not in HEARTBEAT_STATUSES:
        raise CommandError(
            f'Unknown status: "{status}". Valid values: running | completed | failed'
        )
    group = _load_group(ctx, group_id)
    try:
        if group is not None and group.heartbeat(label, status, message, ctx.meta(), ctx.now):
            ctx.save(group)
    except DomainError as error:
        raise CommandError(str(error)) from None
    result: Row = {"ok": True, "tracker_id": group_id, "agent": label, "status": status}
    if status != "running" and message is not None:
        result["message"] = message
    return result


def register_session(ctx: Context, group_id: str, label: str, session_key: str) -> Row:
    """`tasks register-session`: the member's session, for the daemon to look for."""
    group = _load_group(ctx, group_id)
    if group is not None and group.register_session(label, session_key, ctx.meta(), ctx.now):
        ctx.save(group)
    return {"ok": True, "tracker_id": group_id, "agent": label, "session_key": session_key}


def group_status(ctx: Context, group_id: str) -> Row:
    """Spec §23.3's status view; keys with empty values left out, as the anchor's JSON
    leaves out `undefined`."""
    from ocsched.domain.schedule import from_ts
    from ocsched.projections import tasks

    db = ctx.views()
    group = tasks.group(db, group_id)
    if group is None:
        raise CommandError(f"Task group not found: {group_id}")
    now = ctx.now
    elapsed = _seconds(now - from_ts(group["created_at"]))
    agents = []
    for member in tasks.members(db, group_id):
        started, finished = member["started_at"], member["finished_at"]
        duration = None
        if started:
            end = from_ts(finished) if finished else now
            duration = _seconds(end - from_ts(started))
        view = {
            "label": member["agent_label"],
            "status": member["status"],
            "session_key": member["session_key"] or None,
            "last_heartbeat": member["last_heartbeat"] or None,
            "duration": duration,
            "exit_message": member["exit_message"] or None,
            "error": member["error"] or None,
        }
        agents.append({k: v for k, v in view.items() if v is not None or k == "duration"})
    result = {
        "id": group["id"],
        "name": group["name"],
        "status": group["status"],
        "agents": agents,
        "elapsed": elapsed,
        "remaining_timeout": max(0, group["timeout_s"] - elapsed),
        "summary": group["summary"] or None,
        "delivery_channel": group["delivery_channel"],
        "delivery_to": group["delivery_to"],
    }
    if result["summary"] is None:
        del result["summary"]
    return result


def _seconds(delta: Any) -> int:
    return int(delta.total_seconds() // 1)


def active_groups(ctx: Context) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.active_groups(ctx.views())


def ended_groups(ctx: Context, limit: int) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.ended_groups(ctx.views(), limit)


def _team(ctx: Context, team_id: str) -> Team:
    """The team's aggregate, begun when it has none yet."""
    from ocsched.domain.task_team import team_for

    return team_for(_existing_team(ctx)(team_id), team_id, ctx.meta(), ctx.now)


def _existing_team(ctx: Context) -> Callable[[str], Team | None]:
    def existing(team_id: str) -> Team | None:
        from eventsourcing.application import AggregateNotFoundError

        from ocsched.domain.task_team import team_aggregate_id

        try:
            return ctx.log.repository.get(team_aggregate_id(team_id))
        except AggregateNotFoundError:
            return None

    return existing


def open_gate(ctx: Context, team_id: str, task_id: str, members: Any, timeout_s: int) -> Row:
    """`team gate`: a task group of the members, and the task blocked until it ends."""
    from ocsched.domain.errors import DomainError
    from ocsched.domain.task_group import TaskGroupSpec, new_task_group
    from ocsched.domain.task_team import check_gate, gate_group_name

    try:
        check_gate(team_id, task_id, members)
        if timeout_s <= 0:
            raise DomainError("timeout-s must be a positive whole number of seconds")
    except DomainError as error:
        raise CommandError(str(error)) from None
    spec = TaskGroupSpec(gate_group_name(team_id, task_id), list(members), timeout_s)
    group = new_task_group(
        str(uuid.uuid4()), spec, team_id=team_id, task_id=task_id, meta=ctx.meta(), at=ctx.now
    )
    team = _team(ctx, team_id)
    team.open_gate(task_id, group.id, list(members), timeout_s, ctx.meta(), ctx.now)
    ctx.save(group, team)
    return {
        "team_id": team_id,
        "task_id": task_id,
        "gate_status": "waiting",
        "tracker_id": group.id,
        "expected_members": list(members),
    }


def check_gates(ctx: Context, limit: int = GATE_CHECK_LIMIT) -> Row:
    """`team check-gates`: each waiting gate whose group has ended in every member
    completes now (with its summary's delivery, as the daemon would); counts."""
    from ocsched.domain.reactions.teams import end_group
    from ocsched.domain.task_team import team_aggregate_id
    from ocsched.projections import tasks

    counts = {"passed": 0, "failed": 0, "pending": 0}
    facts = cast("Facts", _CommandFacts(ctx))
    for row in tasks.waiting_gates(ctx.views(), limit):
        group = _load_group(ctx, row["gate_tracker_id"])
        if group is not None and group.status == "active":
            records = end_group(group, meta=ctx.meta(), now=ctx.now, facts=facts)
            if group.status == "active":
                counts["pending"] += 1
                continue
            ctx.save(group, *records)
        else:  # the group is missing, or ended without closing its gate (a lost save)
            team: Team = ctx.log.repository.get(team_aggregate_id(row["team_id"]))
            status, summary = (group.status, group.summary) if group else (None, None)
            team.close_gate(row["id"], status, summary, ctx.meta(), ctx.now)
            ctx.save(team)
        counts["passed" if group is not None and group.status == "completed" else "failed"] += 1
    return counts


class _CommandFacts:
    """The lookups a group's end makes (its target's alias, its team), answered from this
    command's read models and log."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def alias(self, name: str) -> Row | None:
        from ocsched.projections import views

        db = self.ctx.views()
        return None if db is None else views.alias(db, name)

    def load(self, aggregate_id: str) -> Any:
        return self.ctx.log.repository.get(aggregate_id)


def map_team_messages(ctx: Context, limit: int = MAP_LIMIT) -> int:
    """`team map`: team messages not yet mapped onto their teams' tasks (the daemon maps
    them too, as soon as they are sent); how many were mapped."""
    from ocsched.domain.task_team import map_messages
    from ocsched.projections import tasks

    rows = tasks.unmapped_team_messages(ctx.views(), limit)
    if not rows:
        return 0
    records, mapped = map_messages(
        rows, _existing_team(ctx), ctx.log.repository.get, ctx.meta(), ctx.now
    )
    if records:
        ctx.save(*records)
    return mapped


def team_ack(ctx: Context, message_id: str, actor: str, detail: str | None) -> Row:
    """`team ack`: acknowledge a team message, noted in its team's mailbox."""
    from ocsched.domain.message import Message

    from .messages import get_message

    row = get_message(ctx, message_id)
    if row is None or not row.get("team_id"):
        raise CommandError(f"Team message not found: {message_id}")
    message: Message = ctx.log.repository.get(message_id)
    message.acknowledge(actor, detail, ctx.meta(), ctx.now)
    team = _team(ctx, row["team_id"])
    team.note_ack(row, actor, detail, ctx.meta(), ctx.now)
    ctx.save(message, team)
    acked = get_message(ctx, message_id)
    assert acked is not None
    return {"ok": True, "id": message_id, "status": acked["status"], "ack_at": acked["ack_at"]}


def team_tasks(ctx: Context, team_id: str, limit: int) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.team_tasks(ctx.views(), team_id, limit)


def team_events(ctx: Context, team_id: str, limit: int, task_id: str | None) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.team_events(ctx.views(), team_id, limit, task_id)
