"""The task tracker and the team adapter (spec §5.6, §23): `tasks` and `team`; the
service functions, and the CLI handlers over them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .argv import command, group, whole_number
from .context import Context
from .output import (
    CommandError,
    UsageError,
    local_time,
    print_done,
    print_json,
    print_rows,
    render_table,
    short_id,
    timed,
    to_json,
)

if TYPE_CHECKING:
    import argparse

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
    from ocsched.domain.task_group import HEARTBEAT_STATUSES

    if status not in HEARTBEAT_STATUSES:
        raise CommandError(
            f'Unknown status: "{status}". Valid values: running | completed | failed'
        )

    def report() -> list[Any]:
        group = _load_group(ctx, group_id)
        changed = group is not None and group.heartbeat(label, status, message, ctx.meta(), ctx.now)
        return [group] if changed else []

    ctx.save_fresh(report)
    result: Row = {"ok": True, "tracker_id": group_id, "agent": label, "status": status}
    if status != "running" and message is not None:
        result["message"] = message
    return result


def register_session(ctx: Context, group_id: str, label: str, session_key: str) -> Row:
    """`tasks register-session`: the member's session, for the daemon to look for."""

    def register() -> list[Any]:
        group = _load_group(ctx, group_id)
        changed = group is not None and group.register_session(
            label, session_key, ctx.meta(), ctx.now
        )
        return [group] if changed else []

    ctx.save_fresh(register)
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
    from ocsched.domain.task_group import MAX_TIMEOUT_S, TaskGroupSpec, new_task_group
    from ocsched.domain.task_team import check_gate, gate_group_name

    try:
        check_gate(team_id, task_id, members)
        if not 1 <= timeout_s <= MAX_TIMEOUT_S:
            raise DomainError(
                f"timeout-s must be a whole number of seconds from 1 to {MAX_TIMEOUT_S}"
            )
    except DomainError as error:
        raise CommandError(str(error)) from None
    spec = TaskGroupSpec(gate_group_name(team_id, task_id), list(members), timeout_s)
    group_id = str(uuid.uuid4())

    def gate() -> list[Any]:
        group = new_task_group(
            group_id, spec, team_id=team_id, task_id=task_id, meta=ctx.meta(), at=ctx.now
        )
        team = _team(ctx, team_id)
        team.open_gate(task_id, group_id, list(members), timeout_s, ctx.meta(), ctx.now)
        return [group, team]

    ctx.save_fresh(gate)
    return {
        "team_id": team_id,
        "task_id": task_id,
        "gate_status": "waiting",
        "tracker_id": group_id,
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
            team.close_gate(row["id"], row["gate_tracker_id"], status, summary, ctx.meta(), ctx.now)
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

    def ack() -> list[Any]:
        message: Message = ctx.log.repository.get(message_id)
        message.acknowledge(actor, detail, ctx.meta(), ctx.now)
        team = _team(ctx, row["team_id"])
        team.note_ack(row, actor, detail, ctx.meta(), ctx.now)
        return [message, team]

    ctx.save_fresh(ack)
    acked = get_message(ctx, message_id)
    assert acked is not None
    return {"ok": True, "id": message_id, "status": acked["status"], "ack_at": acked["ack_at"]}


def team_tasks(ctx: Context, team_id: str, limit: int) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.team_tasks(ctx.views(), team_id, limit)


def team_events(ctx: Context, team_id: str, limit: int, task_id: str | None) -> list[Row]:
    from ocsched.projections import tasks

    return tasks.team_events(ctx.views(), team_id, limit, task_id)


# The command line

HEARTBEAT_USAGE = "<trackerId> <agentLabel> running|completed|failed [message]"
GATE_USAGE = "<team-id> <task-id> <members-json> [timeout-s]"
ICONS = {"completed": "[ok]", "failed": "[FAIL]", "dead": "[DEAD]", "running": "[..]"}


def register(commands: argparse._SubParsersAction) -> None:
    _register_tasks(commands)
    _register_team(commands)


def _register_tasks(commands: argparse._SubParsersAction) -> None:
    tasks = group(
        commands,
        "tasks",
        help="task groups of sub-agents: heartbeats, status, the dead-man switch",
        examples=[
            """ocsched tasks create '{"name":"v5","expectedAgents":["a","b"],"timeoutS":900}'""",
            "ocsched tasks heartbeat 3f1c0a77 a completed 'schema done'",
        ],
    )
    command(
        tasks,
        "list",
        cli_list,
        help="active task groups, newest first",
        usage="",
        examples=["ocsched tasks list", "ocsched --json tasks list"],
    )
    status = command(
        tasks,
        "status",
        cli_status,
        help="a task group's members, elapsed time and summary",
        usage="<id>",
        examples=["ocsched tasks status 3f1c0a77", "ocsched --json tasks status 3f1c0a77"],
    )
    status.add_argument("group_id", metavar="<id>", help="the group's id or a unique prefix")
    create = command(
        tasks,
        "create",
        cli_create,
        help="a task group: members expected to report before the timeout",
        usage="<json>",
        description=(
            "Create a task group. Keys (camelCase): name (required), expectedAgents (labels,"
            " required), timeoutS (600), createdBy (main), deliveryChannel, deliveryTo (where"
            " the summary goes when the group ends)."
        ),
        examples=[
            """ocsched tasks create '{"name":"release","expectedAgents":["writer","reviewer"],"""
            """ "timeoutS":1800,"deliveryChannel":"telegram","deliveryTo":"-100123"}'"""
        ],
    )
    create.add_argument("spec", nargs="?", metavar="<json>")
    history = command(
        tasks,
        "history",
        cli_history,
        help="ended task groups, the last ended first",
        usage="[limit]",
        examples=["ocsched tasks history", "ocsched tasks history 50"],
    )
    history.add_argument("limit", nargs="?", help="how many (default 10)")
    beat = command(
        tasks,
        "heartbeat",
        cli_heartbeat,
        help="a member reports running, completed or failed (called by sub-agents)",
        usage=HEARTBEAT_USAGE,
        examples=[
            "ocsched tasks heartbeat 3f1c0a77-… writer running",
            "ocsched tasks heartbeat 3f1c0a77-… writer completed notes written",
            "ocsched tasks heartbeat 3f1c0a77-… writer failed could not push",
        ],
    )
    beat.add_argument("group_id", nargs="?", metavar="<trackerId>")
    beat.add_argument("label", nargs="?", metavar="<agentLabel>")
    beat.add_argument("status", nargs="?", metavar="running|completed|failed")
    beat.add_argument("message", nargs="*", help="the exit message or error")
    session = command(
        tasks,
        "register-session",
        cli_register_session,
        help="link a member to its OpenClaw session (the daemon looks for it at the deadline)",
        usage="<trackerId> <agentLabel> <sessionKey>",
        examples=["ocsched tasks register-session 3f1c0a77-… writer agent:main:subagent:42"],
    )
    session.add_argument("group_id", nargs="?", metavar="<trackerId>")
    session.add_argument("label", nargs="?", metavar="<agentLabel>")
    session.add_argument("session_key", nargs="?", metavar="<sessionKey>")


def _register_team(commands: argparse._SubParsersAction) -> None:
    team = group(
        commands,
        "team",
        help="team tasks and mailbox events, completion gates, team acks",
        examples=["""ocsched team gate core deploy-001 '["writer","reviewer"]' 900"""],
    )
    mapping = command(
        team,
        "map",
        cli_map,
        help="map team messages not yet mapped onto their tasks (the daemon does it too)",
        usage="[limit]",
        examples=["ocsched team map", "ocsched team map 500"],
    )
    mapping.add_argument("limit", nargs="?", help="how many at most (default 200)")
    listing = command(
        team,
        "tasks",
        cli_team_tasks,
        help="a team's tasks, the last changed first",
        usage="<team-id> [limit]",
        examples=["ocsched team tasks core"],
    )
    listing.add_argument("team_id", nargs="?", metavar="<team-id>")
    listing.add_argument("limit", nargs="?", help="how many (default 50)")
    events = command(
        team,
        "events",
        cli_team_events,
        help="a team's mailbox events, newest first",
        usage="<team-id> [limit] [task-id]",
        examples=["ocsched team events core", "ocsched team events core 20 deploy-001"],
    )
    events.add_argument("team_id", nargs="?", metavar="<team-id>")
    events.add_argument("limit", nargs="?", help="how many (default 50)")
    events.add_argument("task_id", nargs="?", metavar="task-id")
    gate = command(
        team,
        "gate",
        cli_gate,
        help="block a team task until a task group of its members ends",
        usage=GATE_USAGE,
        examples=["""ocsched team gate core deploy-001 '["writer","reviewer"]' 900"""],
    )
    gate.add_argument("team_id", nargs="?", metavar="<team-id>")
    gate.add_argument("task_id", nargs="?", metavar="<task-id>")
    gate.add_argument("members", nargs="?", metavar="<members-json>")
    gate.add_argument("timeout", nargs="?", metavar="timeout-s", help="default 600")
    check = command(
        team,
        "check-gates",
        cli_check_gates,
        help="close the gates whose groups have ended; counts (JSON)",
        usage="[limit]",
        examples=["ocsched team check-gates"],
    )
    check.add_argument("limit", nargs="?", help="how many gates at most (default 100)")
    ack = command(
        team,
        "ack",
        cli_team_ack,
        help="acknowledge a team message, noted in the team's mailbox",
        usage="<message-id> [actor] [note]",
        examples=["ocsched team ack 8e1f2c3d reviewer looks good"],
    )
    ack.add_argument("message_id", nargs="?", metavar="<message-id>")
    ack.add_argument("actor", nargs="?", help="who (default team-member)")
    ack.add_argument("note", nargs="*")


def _number(text: str | None, default: int, usage: str, what: str = "limit") -> int:
    if text is None:
        return default
    number = whole_number(text)
    if number is None:
        raise UsageError(f"{what} must be a whole number from 1. Usage: {usage}")
    return number


def _parse_json(text: str, error: str) -> Any:
    from ocsched.domain.json_text import NotUnicodeText, parse_json_text

    try:
        return parse_json_text(text)
    except NotUnicodeText as refused:
        raise CommandError(f"The JSON {refused}") from None
    except ValueError:
        raise CommandError(error) from None


def cli_list(ctx: Context, args: argparse.Namespace) -> None:
    print_rows(
        ctx.json, active_groups(ctx), "No active task groups", lambda rows: _groups(ctx, rows)
    )


def _groups(ctx: Context, rows: list[Row]) -> str:
    from ocsched.projections import tasks

    table = []
    for row in rows:
        members = tasks.members(ctx.views(), row["id"])
        done = sum(1 for m in members if m["status"] == "completed")
        view = group_status(ctx, row["id"])
        table.append(
            (
                short_id(row["id"]),
                row["name"],
                f"{done}/{len(members)}",
                row["status"],
                f"{view['elapsed']}s",
                f"{row['timeout_s']}s",
            )
        )
    headers = ("ID", "NAME", "AGENTS", "STATUS", "ELAPSED", "TIMEOUT")
    return render_table(table, headers, keep=(0,))


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    view = group_status(ctx, ctx.resolve_id(args.group_id, "group"))
    if ctx.json:
        print_json(view)
        return
    lines = [
        "",
        f"Task Group: {view['name']}",
        f"Status:     {view['status']}",
        f"Elapsed:    {view['elapsed']}s / {view['remaining_timeout'] + view['elapsed']}s timeout",
        "",
        "Agents:",
    ]
    for agent in view["agents"]:
        duration = f" ({agent['duration']}s)" if agent["duration"] is not None else ""
        detail = agent.get("exit_message") or agent.get("error") or ""
        icon = ICONS.get(agent["status"], "[ ]")
        line = f"  {icon} {agent['label']}: {agent['status']}{duration}"
        lines.append(line + (f" -- {detail}" if detail else ""))
    if view.get("summary"):
        lines += ["", "Summary:", view["summary"]]
    print("\n".join(lines))


def cli_create(ctx: Context, args: argparse.Namespace) -> None:
    from ocsched.domain.task_group import CREATE_USAGE

    created = create_group(ctx, _parse_json(args.spec or "", CREATE_USAGE))
    print_done(ctx.json, f"Created: {to_json(created)}", group=created)


def cli_history(ctx: Context, args: argparse.Namespace) -> None:
    limit = _number(args.limit, 10, "tasks history [limit]")
    print_rows(ctx.json, ended_groups(ctx, limit), "No completed task groups", _history)


def _history(rows: list[Row]) -> str:
    table = [
        (short_id(r["id"]), r["name"], r["status"], local_time(r["completed_at"]), r["created_by"])
        for r in rows
    ]
    headers = ("ID", "NAME", "STATUS", timed("COMPLETED"), "CREATED BY")
    return render_table(table, headers, keep=(0, 3))


def cli_heartbeat(ctx: Context, args: argparse.Namespace) -> None:
    if not (args.group_id and args.label and args.status):
        raise UsageError(f"Usage: tasks heartbeat {HEARTBEAT_USAGE}")
    message = " ".join(args.message) or None
    group_id = ctx.resolve_id(args.group_id, "group")
    result = heartbeat(ctx, group_id, args.label, args.status, message)
    line = f"Heartbeat recorded: {args.label} -> {args.status}"
    if args.status != "running" and message:
        line += f" ({message})"
    print_done(ctx.json, line, **_fields(result))


def cli_register_session(ctx: Context, args: argparse.Namespace) -> None:
    if not (args.group_id and args.label and args.session_key):
        raise UsageError("Usage: tasks register-session <trackerId> <agentLabel> <sessionKey>")
    group_id = ctx.resolve_id(args.group_id, "group")
    result = register_session(ctx, group_id, args.label, args.session_key)
    line = f"Session registered: {args.label} -> {args.session_key}"
    print_done(ctx.json, line, **_fields(result))


def _fields(result: Row) -> Row:
    return {key: value for key, value in result.items() if key != "ok"}


def cli_map(ctx: Context, args: argparse.Namespace) -> None:
    mapped = map_team_messages(ctx, _number(args.limit, MAP_LIMIT, "team map [limit]"))
    print_done(ctx.json, f"Mapped {mapped} team message(s)", mapped=mapped)


def cli_team_tasks(ctx: Context, args: argparse.Namespace) -> None:
    usage = "Usage: team tasks <team-id> [limit]"
    if not args.team_id:
        raise UsageError(usage)
    rows = team_tasks(ctx, args.team_id, _number(args.limit, 50, usage))
    print_rows(ctx.json, rows, "No team tasks", _team_tasks)


def _team_tasks(rows: list[Row]) -> str:
    table = [
        (
            r["id"],
            r["member_id"],
            r["status"],
            short_id(r["gate_tracker_id"]),
            r["gate_status"],
            local_time(r["updated_at"]),
            local_time(r["completed_at"]),
        )
        for r in rows
    ]
    headers = ("TASK", "MEMBER", "STATUS", "GATE", "GATE STATUS", timed("UPDATED"), "COMPLETED")
    return render_table(table, headers, keep=(0, 5))


def cli_team_events(ctx: Context, args: argparse.Namespace) -> None:
    usage = "Usage: team events <team-id> [limit] [task-id]"
    if not args.team_id:
        raise UsageError(usage)
    limit = _number(args.limit, 50, usage)
    rows = team_events(ctx, args.team_id, limit, args.task_id)
    print_rows(ctx.json, rows, "No team events", _team_events)


def _team_events(rows: list[Row]) -> str:
    table = [
        (
            r["id"][:8],
            r["member_id"],
            r["task_id"],
            (r["message_id"] or "")[:8] or None,
            r["event_type"],
            local_time(r["created_at"]),
        )
        for r in rows
    ]
    headers = ("ID", "MEMBER", "TASK", "MESSAGE", "TYPE", timed("AT"))
    return render_table(table, headers, keep=(0, 5))


def cli_gate(ctx: Context, args: argparse.Namespace) -> None:
    if not (args.team_id and args.task_id and args.members):
        raise UsageError(
            f"Usage: team gate {GATE_USAGE}"
            """ (example: team gate core-team deploy-001 '["writer","reviewer"]' 900)"""
        )
    example = """Invalid JSON for members list. Example: '["writer","reviewer"]'"""
    members = _parse_json(args.members, example)
    timeout = _number(args.timeout, 600, f"team gate {GATE_USAGE}", "timeout-s")
    gate = open_gate(ctx, args.team_id, args.task_id, members, timeout)
    print_done(ctx.json, f"Gate opened: {to_json(gate)}", gate=gate)


def cli_check_gates(ctx: Context, args: argparse.Namespace) -> None:
    print_json(check_gates(ctx, _number(args.limit, GATE_CHECK_LIMIT, "team check-gates [limit]")))


def cli_team_ack(ctx: Context, args: argparse.Namespace) -> None:
    if not args.message_id:
        raise UsageError("Usage: team ack <message-id> [actor] [note]")
    acked = team_ack(ctx, args.message_id, args.actor or "team-member", " ".join(args.note) or None)
    fields = _fields(acked)
    print_done(ctx.json, f"Team ACK: {to_json(fields)}", **fields)
