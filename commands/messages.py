"""The post office's commands (spec §5.5): `msg`, `messages` and `queue`; the service
functions, and the CLI handlers over them."""

from __future__ import annotations

import argparse
import uuid
from typing import TYPE_CHECKING, Any

from .argv import command, group
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
    from ocsched.domain.message import Message

Row = dict[str, Any]
UNREAD = ("pending", "delivered")


# Service functions: usable from Python, one per behaviour.


def send_message(ctx: Context, from_agent: Any, to_agent: Any, body: Any, **fields: Any) -> Row:
    """Post a message (spec §21.1); returns its row. `fields`: kind, subject, metadata (a
    JSON value or text), priority, channel, delivery_to, team_id, member_id, task_id,
    reply_to, expires_at, job_id, run_id, owner, ack_required."""
    import json

    from ocsched.domain.message import send_message as new_message
    from ocsched.domain.message_rules import MessageError

    metadata = fields.pop("metadata", None)
    if metadata is not None and not isinstance(metadata, str):
        metadata = json.dumps(metadata, separators=(",", ":"))
    try:
        message = new_message(
            str(uuid.uuid4()),
            from_agent=from_agent,
            to_agent=to_agent,
            body=body,
            metadata=metadata,
            meta=ctx.meta(),
            at=ctx.now,
            **fields,
        )
    except MessageError as error:
        raise CommandError(str(error)) from None
    ctx.save(message)
    row = get_message(ctx, message.id)
    assert row is not None
    return row


def get_message(ctx: Context, message_id: str) -> Row | None:
    from ocsched.projections import message_views

    db = ctx.views()
    return None if db is None else message_views.message(db, message_id)


def inbox(ctx: Context, agent: str, limit: int, statuses: tuple[str, ...] = UNREAD) -> list[Row]:
    """Messages to the agent or broadcast, inbox order (spec §21.3)."""
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.inbox(db, agent, statuses, limit)


def team_inbox(
    ctx: Context, team: str, limit: int, member: str | None, task: str | None
) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.team_inbox(db, team, limit, member, task)


def outbox(ctx: Context, agent: str, limit: int) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.outbox(db, agent, limit)


def thread(ctx: Context, message_id: str) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.thread(db, message_id)


def receipts(ctx: Context, message_id: str, limit: int) -> list[Row]:
    from ocsched.projections import message_views

    db = ctx.views()
    return [] if db is None else message_views.receipts(db, message_id, limit)


def unread_count(ctx: Context, agent: str) -> int:
    from ocsched.projections import message_views

    db = ctx.views()
    return 0 if db is None else message_views.unread_count(db, agent)


def _load(ctx: Context, message_id: str) -> Message | None:
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.message import Message

    if get_message(ctx, message_id) is None:
        return None  # (never posted, or pruned)
    try:
        message: Any = ctx.log.repository.get(message_id)
    except AggregateNotFoundError:
        return None
    return message if isinstance(message, Message) else None


def acknowledge(ctx: Context, message_id: str, actor: str, note: str | None) -> Row:
    """Spec §21.4: any status; pending and delivered become read."""
    message = _load(ctx, message_id)
    if message is None:
        raise CommandError(f"Message not found: {message_id}")
    message.acknowledge(actor, note, ctx.meta(), ctx.now)
    ctx.save(message)
    row = get_message(ctx, message_id)
    assert row is not None
    return row


def mark_read(ctx: Context, message_id: str) -> None:
    """`msg read`: pending or delivered -> read with an `ack` receipt; anything else (an
    unknown id too) records nothing."""
    message = _load(ctx, message_id)
    if message is not None and message.read(ctx.meta(), ctx.now, receipt=True):
        ctx.save(message)


def read_all(ctx: Context, agent: str) -> int:
    """Every unread message to the agent or broadcast -> read, without receipts; returns
    how many (a broadcast read is read for everybody, as in the anchor)."""

    rows = inbox(ctx, agent, -1)
    changed = []
    for row in rows:
        message: Message = ctx.log.repository.get(row["id"])
        if message.read(ctx.meta(), ctx.now, receipt=False):
            changed.append(message)
    if changed:
        ctx.save(*changed)
    return len(changed)


def queue(ctx: Context, agent: str, limit: int) -> Row:
    """`queue list`: the unread count, and the newest `limit` unread in inbox order."""
    rows = inbox(ctx, agent, limit)
    delivered = sum(1 for row in rows if row["status"] == "delivered")
    return {
        "agent": agent,
        "pending": unread_count(ctx, agent),
        "delivered": delivered,
        "messages": rows,
    }


def prune_messages(ctx: Context) -> int:
    """Spec §26's message retention, now; returns how many messages it removed."""
    from datetime import timedelta

    from ocsched.domain.reactions import messages as reactions
    from ocsched.domain.schedule import to_ts
    from ocsched.projections import message_views

    db = ctx.views()
    if db is None:
        return 0
    rows = message_views.prune_candidates(db, to_ts(ctx.now - timedelta(days=3)))
    plan = reactions.prune(
        rows, owner="cli", now=ctx.now, load=ctx.log.repository.get, meta=ctx.meta()
    )
    if plan.records:
        ctx.save(*plan.records)
    return len(plan.records)


# The command line (spec §5.5)

MESSAGES_SEND_USAGE = (
    "--from <label> [--to <agent>] [--kind <kind>] [--channel <channel>]"
    ' [--delivery-to <target>] --body "<text>"'
)


def _limit(text: str | None, default: int, usage: str) -> int:
    from .argv import whole_number

    if text is None:
        return default
    number = whole_number(text)
    if number is None:
        raise UsageError(f"limit must be a whole number from 1. Usage: {usage}")
    return number


def _sent(ctx: Context, row: Row) -> None:
    print_done(ctx.json, f"Sent: {to_json(row)}", message=row)


def cli_msg_send(ctx: Context, args: argparse.Namespace) -> None:
    if not args.body:
        raise UsageError("Usage: msg send <from> <to> <body>")
    _sent(ctx, send_message(ctx, args.sender, args.recipient, " ".join(args.body)))


def cli_messages_send(ctx: Context, args: argparse.Namespace) -> None:
    if not args.sender or not args.body:
        raise UsageError(f"Usage: messages send {MESSAGES_SEND_USAGE}")
    row = send_message(
        ctx,
        args.sender,
        args.recipient or "main",
        args.body,
        kind=args.kind or "status",
        channel=args.channel,
        delivery_to=args.delivery_to,
    )
    _sent(ctx, row)


COLUMN_TITLES = {"from_agent": "FROM", "to_agent": "TO", "member_id": "MEMBER", "task_id": "TASK"}


def _cell(row: Row, column: str) -> Any:
    if column == "created_at":
        return local_time(row[column])
    if column == "subject":
        return (row[column] or "")[:40]
    return row[column]


def _message_table(rows: list[Row], columns: tuple[str, ...]) -> str:
    """The messages as a table: a short id, then `columns` (the creation time, last, in the
    local zone; subjects cut to 40 characters, as the anchor's tables)."""
    table = [(short_id(row["id"]), *(_cell(row, c) for c in columns)) for row in rows]
    titles = [COLUMN_TITLES.get(c, c.upper()) for c in columns]
    titles[-1] = timed("CREATED")
    return render_table(table, ("ID", *titles), keep=(0, len(columns)))


INBOX_COLUMNS = ("from_agent", "kind", "subject", "status", "priority", "created_at")


def cli_inbox(ctx: Context, args: argparse.Namespace) -> None:
    rows = inbox(ctx, args.agent, _limit(args.limit, 20, "msg inbox <agent-id> [limit]"))
    print_rows(ctx.json, rows, "Inbox empty", lambda r: _message_table(r, INBOX_COLUMNS))


def cli_team_inbox(ctx: Context, args: argparse.Namespace) -> None:
    usage = "msg team-inbox <team-id> [limit] [member-id] [task-id]"
    rows = team_inbox(ctx, args.team, _limit(args.limit, 20, usage), args.member, args.task)
    columns = ("from_agent", "to_agent", "member_id", "task_id", "kind", "status", "created_at")
    print_rows(ctx.json, rows, "Team inbox empty", lambda r: _message_table(r, columns))


def cli_outbox(ctx: Context, args: argparse.Namespace) -> None:
    rows = outbox(ctx, args.agent, _limit(args.limit, 20, "msg outbox <agent-id> [limit]"))
    columns = ("to_agent", "kind", "subject", "status", "created_at")
    print_rows(ctx.json, rows, "Outbox empty", lambda r: _message_table(r, columns))


def cli_thread(ctx: Context, args: argparse.Namespace) -> None:
    rows = thread(ctx, _message_id(ctx, args.id))
    if ctx.json:
        print_json(rows)
        return
    for row in rows:
        print(f"[{row['from_agent']} -> {row['to_agent']}] ({row['status']}) {row['created_at']}")
        print(f"  {(row['body'] or '')[:200]}")
        print()


def _message_id(ctx: Context, text: str) -> str:
    return ctx.resolve_id(text, "message")


def cli_ack(ctx: Context, args: argparse.Namespace) -> None:
    row = acknowledge(
        ctx, _message_id(ctx, args.id), args.who or "operator", " ".join(args.note) or None
    )
    fields = {key: row[key] for key in ("id", "status", "ack_at", "read_at")}
    print_done(ctx.json, f"Acknowledged: {to_json(fields)}", **fields)


def cli_receipts(ctx: Context, args: argparse.Namespace) -> None:
    usage = "msg receipts <message-id> [limit]"
    rows = receipts(ctx, _message_id(ctx, args.id), _limit(args.limit, 20, usage))

    def table(records: list[Row]) -> str:
        lines = [
            (
                short_id(r["id"]),
                r["event_type"],
                r["attempt"],
                r["actor"],
                (r["detail"] or "")[:80],
                local_time(r["created_at"]),
            )
            for r in records
        ]
        headers = ("ID", "TYPE", "ATTEMPT", "ACTOR", "DETAIL", timed("AT"))
        return render_table(lines, headers, keep=(0, 5))

    print_rows(ctx.json, rows, "No receipts for message", table)


def cli_read(ctx: Context, args: argparse.Namespace) -> None:
    message_id = _message_id(ctx, args.id)
    mark_read(ctx, message_id)
    print_done(ctx.json, "Marked read", message_id=message_id, read=True)


def cli_readall(ctx: Context, args: argparse.Namespace) -> None:
    changes = read_all(ctx, args.agent)
    print_done(ctx.json, f"Marked {changes} read", agent=args.agent, changes=changes)


def cli_unread(ctx: Context, args: argparse.Namespace) -> None:
    count = unread_count(ctx, args.agent)
    if ctx.json:
        print_json({"agent": args.agent, "unread": count})
    else:
        print(f"Unread: {count}")


def cli_queue_list(ctx: Context, args: argparse.Namespace) -> None:
    agent = getattr(args, "agent", None) or "main"
    limit = _limit(getattr(args, "limit", None), 50, "queue list [agent] [limit]")
    result = queue(ctx, agent, limit)
    if ctx.json:
        print_json(result)
    elif not result["messages"]:
        print("Queue empty")
    else:
        print(
            f"Queue for agent: {agent} | {result['pending']} pending |"
            f" {result['delivered']} delivered (showing last {limit})"
        )
        print(_message_table(result["messages"], INBOX_COLUMNS))


def cli_queue_clear(ctx: Context, args: argparse.Namespace) -> None:
    agent = args.agent or "main"
    changes = read_all(ctx, agent)
    print_done(ctx.json, f"Cleared {changes} messages", agent=agent, changes=changes)


def cli_queue_prune(ctx: Context, args: argparse.Namespace) -> None:
    prune_messages(ctx)
    line = "Pruned old messages (delivered >3d, system/result >3d, read/expired/failed >30d)"
    print_done(ctx.json, line, pruned=True)


def register(commands: argparse._SubParsersAction) -> None:
    _register_msg(commands)
    messages = group(
        commands,
        "messages",
        help="send a message with named flags (the sub-agents' checkpoint form)",
        examples=["ocsched messages send --from build-42 --body 'Starting step 2: tests'"],
    )
    send = command(
        messages,
        "send",
        cli_messages_send,
        help="send a message (to main, kind status, unless told)",
        usage=MESSAGES_SEND_USAGE,
        examples=[
            "ocsched messages send --from build-42 --body 'Starting step 2: running tests'",
            "ocsched messages send --from ops --to bob --kind decision --body 'Ship on Friday'",
        ],
    )
    send.add_argument("--from", dest="sender", metavar="<label>", help="who sends it")
    send.add_argument("--to", dest="recipient", metavar="<agent>", help="default: main")
    send.add_argument("--kind", metavar="<kind>", help="default: status")
    send.add_argument("--channel", metavar="<channel>", help="the channel to deliver it on")
    send.add_argument("--delivery-to", metavar="<target>", help="the chat to deliver it to")
    send.add_argument("--body", metavar='"<text>"', help="the message")
    _register_queue(commands)


def _register_msg(commands: argparse._SubParsersAction) -> None:
    msg = group(
        commands,
        "msg",
        help="messages between agents: send, inboxes, threads, acknowledgements",
        examples=[
            "ocsched msg send ops main the backup is late",
            "ocsched msg inbox main",
            "ocsched msg ack 3f2a9c1e operator seen",
        ],
    )
    send = command(
        msg,
        "send",
        cli_msg_send,
        help="send a text message (the rest of the line is the body)",
        usage="<from> <to> <body>",
        examples=["ocsched msg send ops main the backup is late"],
    )
    send.add_argument("sender", metavar="<from>", help="who sends it")
    send.add_argument("recipient", metavar="<to>", help="an agent id, or broadcast")
    send.add_argument("body", metavar="<body>", nargs=argparse.REMAINDER, help="the text")
    for name, handler, what, usage in (
        (
            "inbox",
            cli_inbox,
            "pending and delivered messages to an agent, inbox order",
            "<agent-id> [limit]",
        ),
        ("outbox", cli_outbox, "messages an agent sent, newest first", "<agent-id> [limit]"),
    ):
        parser = command(
            msg, name, handler, help=what, usage=usage, examples=[f"ocsched msg {name} main 10"]
        )
        parser.add_argument("agent", metavar="<agent-id>", help="the agent")
        parser.add_argument("limit", metavar="[limit]", nargs="?", help="default 20")
    team = command(
        msg,
        "team-inbox",
        cli_team_inbox,
        help="a team's messages of every status, oldest first",
        usage="<team-id> [limit] [member-id] [task-id]",
        examples=["ocsched msg team-inbox red 50 alice"],
    )
    team.add_argument("team", metavar="<team-id>", help="the team")
    team.add_argument("limit", metavar="[limit]", nargs="?", help="default 20")
    team.add_argument("member", metavar="[member-id]", nargs="?", help="that member's and all's")
    team.add_argument("task", metavar="[task-id]", nargs="?", help="that task's only")
    for name, handler, what in (
        ("thread", cli_thread, "a message and its direct replies, oldest first"),
        ("read", cli_read, "mark a message read"),
    ):
        parser = command(
            msg,
            name,
            handler,
            help=what,
            usage="<message-id>",
            examples=[f"ocsched msg {name} 3f2a9c1e"],
        )
        parser.add_argument("id", metavar="<message-id>", help="the message's id or a prefix")
    ack = command(
        msg,
        "ack",
        cli_ack,
        help="acknowledge a message (pending and delivered become read)",
        usage="<message-id> [actor] [note]",
        examples=["ocsched msg ack 3f2a9c1e", "ocsched msg ack 3f2a9c1e alice handled it"],
    )
    ack.add_argument("id", metavar="<message-id>", help="the message's id or a prefix")
    ack.add_argument("who", metavar="[actor]", nargs="?", help="who acknowledges (operator)")
    ack.add_argument("note", metavar="[note]", nargs=argparse.REMAINDER, help="a note")
    receipts_parser = command(
        msg,
        "receipts",
        cli_receipts,
        help="a message's delivery and acknowledgement receipts, newest first",
        usage="<message-id> [limit]",
        examples=["ocsched msg receipts 3f2a9c1e"],
    )
    receipts_parser.add_argument("id", metavar="<message-id>", help="the message's id or a prefix")
    receipts_parser.add_argument("limit", metavar="[limit]", nargs="?", help="default 20")
    for name, handler, what in (
        ("readall", cli_readall, "mark every unread message to an agent (and broadcast) read"),
        ("unread", cli_unread, "count the unread messages to an agent (and broadcast)"),
    ):
        parser = command(
            msg, name, handler, help=what, usage="<agent-id>", examples=[f"ocsched msg {name} main"]
        )
        parser.add_argument("agent", metavar="<agent-id>", help="the agent")


def _register_queue(commands: argparse._SubParsersAction) -> None:
    from .argv import examples_text

    examples = ["ocsched queue", "ocsched queue list bob 10", "ocsched queue clear"]
    parser = commands.add_parser(
        "queue",
        help="an agent's unread messages (bare: queue list main)",
        usage="%(prog)s [list|clear|prune] [args]",
        description="An agent's unread messages; `queue` alone lists main's.",
        epilog=examples_text(examples),
    )
    parser.set_defaults(handler=cli_queue_list)
    queue_commands = parser.add_subparsers(
        title="subcommands", metavar="<subcommand>", prog=parser.prog
    )
    listing = command(
        queue_commands,
        "list",
        cli_queue_list,
        help="pending and delivered messages to an agent, inbox order",
        usage="[agent] [limit]",
        examples=["ocsched queue list", "ocsched --json queue list bob 10"],
    )
    listing.add_argument("agent", metavar="[agent]", nargs="?", help="default: main")
    listing.add_argument("limit", metavar="[limit]", nargs="?", help="default 50")
    clear = command(
        queue_commands,
        "clear",
        cli_queue_clear,
        help="mark every unread message to an agent read",
        usage="[agent]",
        examples=["ocsched queue clear", "ocsched queue clear bob"],
    )
    clear.add_argument("agent", metavar="[agent]", nargs="?", help="default: main")
    command(
        queue_commands,
        "prune",
        cli_queue_prune,
        help="apply message retention now",
        usage="",
        examples=["ocsched queue prune"],
    )
