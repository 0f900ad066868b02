"""Delivery aliases (spec §5.6) and `deliveries list`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import command, group
from .context import Context
from .output import CommandError, print_done, print_rows, render_table, short_id

if TYPE_CHECKING:
    import argparse


def add_alias(ctx: Context, name: str, channel: str, target: str, description: str | None):
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.delivery import Alias, alias_id

    try:
        alias: Alias = ctx.log.repository.get(alias_id(name))
        alias.change(name, channel, target, description, ctx.meta(), ctx.now)
    except AggregateNotFoundError:
        alias = Alias(
            id=alias_id(name),
            name=name,
            channel=channel,
            target=target,
            description=description,
            meta=ctx.meta(),
            timestamp=ctx.now,
        )
    ctx.save(alias)
    return {
        "ok": True,
        "alias": name,
        "channel": channel,
        "target": target,
        "description": description,
    }


def remove_alias(ctx: Context, name: str) -> None:
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.delivery import Alias, alias_id

    alias: Alias | None
    try:
        alias = ctx.log.repository.get(alias_id(name))
    except AggregateNotFoundError:
        alias = None
    if alias is None or alias.removed:
        raise CommandError(f"Alias not found: {name}")
    alias.remove(name, ctx.meta(), ctx.now)
    ctx.save(alias)


def list_aliases(ctx: Context) -> list[dict[str, Any]]:
    connection = ctx.views()
    if connection is None:
        return []
    return connection.execute("SELECT * FROM delivery_aliases ORDER BY alias").fetchall()


def list_deliveries(
    ctx: Context, run_id: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    connection = ctx.views()
    if connection is None:
        return []
    clauses, values = [], []
    if run_id:
        clauses.append("run_id = ?")
        values.append(ctx.resolve_id(run_id, "run"))
    if status:
        clauses.append("status = ?")
        values.append(status)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return connection.execute(
        f"SELECT * FROM deliveries{where} ORDER BY created_at, rowid", values
    ).fetchall()


def register(commands: argparse._SubParsersAction) -> None:
    alias = group(
        commands,
        "alias",
        help="names for delivery targets",
        examples=[
            "ocsched alias add ops telegram -100123456 the ops chat",
            "ocsched alias list",
        ],
    )
    add = command(
        alias,
        "add",
        cli_alias_add,
        help="add an alias, or change an existing one",
        usage="<name> <channel> <target> [description]",
        examples=["ocsched alias add ops telegram -100123456 the ops chat"],
    )
    add.add_argument("name", help="the alias (used as delivery_to)")
    add.add_argument("channel", help="telegram, discord, slack, …")
    add.add_argument("target", help="the chat, channel or user on that channel")
    add.add_argument("description", nargs="*", help="what it is (the rest of the line)")
    command(
        alias, "list", cli_alias_list, help="all aliases", usage="", examples=["ocsched alias list"]
    )
    remove = command(
        alias,
        "remove",
        cli_alias_remove,
        help="remove an alias",
        usage="<name>",
        examples=["ocsched alias remove ops"],
    )
    remove.add_argument("name", help="the alias")
    deliveries = group(
        commands,
        "deliveries",
        help="deliveries of results and notices, with their attempts",
        examples=["ocsched deliveries list --status failed"],
    )
    listing = command(
        deliveries,
        "list",
        cli_deliveries,
        help="deliveries, oldest first",
        usage="[--run <id>] [--status pending|delivered|failed]",
        examples=["ocsched deliveries list", "ocsched deliveries list --run 0c9f2e41"],
    )
    listing.add_argument("--run", metavar="<id>", help="of this run (id or unique prefix)")
    listing.add_argument("--status", metavar="pending|delivered|failed", help="in this status")


def cli_alias_add(ctx: Context, args: argparse.Namespace) -> None:
    description = " ".join(args.description) or None
    result = add_alias(ctx, args.name, args.channel, args.target, description)
    line = f"Added alias: {args.name} -> {args.channel}/{args.target}"
    print_done(ctx.json, line, **{k: v for k, v in result.items() if k != "ok"})


def cli_alias_remove(ctx: Context, args: argparse.Namespace) -> None:
    remove_alias(ctx, args.name)
    print_done(ctx.json, f"Removed alias: {args.name}", alias=args.name, removed=True)


def cli_alias_list(ctx: Context, args: argparse.Namespace) -> None:
    print_rows(ctx.json, list_aliases(ctx), "No aliases defined", _alias_table)


def _alias_table(rows: list[dict[str, Any]]) -> str:
    table = [(r["alias"], r["channel"], r["target"], r["description"]) for r in rows]
    return render_table(table, ("ALIAS", "CHANNEL", "TARGET", "DESCRIPTION"))


def cli_deliveries(ctx: Context, args: argparse.Namespace) -> None:
    rows = list_deliveries(ctx, args.run, args.status)
    print_rows(ctx.json, rows, "No deliveries", _deliveries_table)


def _deliveries_table(rows: list[dict[str, Any]]) -> str:
    table = [
        (
            short_id(r["id"]),
            short_id(r["run_id"]),
            r["status"],
            r["channel"],
            r["target"],
            f"{r['chunks_sent']}/{r['chunks']}",
            r["attempts"],
            r["last_error"],
        )
        for r in rows
    ]
    headers = ("ID", "RUN", "STATUS", "CHANNEL", "TARGET", "SENT", "TRIES", "ERROR")
    return render_table(table, headers, keep=(0, 1))
