"""Delivery aliases (spec §5.6) and `deliveries list`."""

from __future__ import annotations

from typing import Any

from .argv import Argv
from .context import Context
from .output import CommandError, print_json, render_table, short_id

ALIAS_ADD_USAGE = "Usage: alias add <name> <channel> <target> [description]"


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
        values.append(run_id)
    if status:
        clauses.append("status = ?")
        values.append(status)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return connection.execute(
        f"SELECT * FROM deliveries{where} ORDER BY created_at, rowid", values
    ).fetchall()


def cli_alias(ctx: Context, args: list[str]) -> None:
    sub, rest = (args[0], args[1:]) if args else (None, [])
    if sub == "add":
        if len(rest) < 3:
            raise CommandError(ALIAS_ADD_USAGE)
        name, channel, target, *description = rest
        result = add_alias(ctx, name, channel, target, " ".join(description) or None)
        if ctx.json:
            print_json(result)
        else:
            print(f"Added alias: {name} -> {channel}/{target}")
    elif sub == "remove":
        (name,) = Argv(rest, "Usage: alias remove <name>").positionals(1, 1)
        remove_alias(ctx, name)
        if ctx.json:
            print_json({"ok": True, "alias": name, "removed": True})
        else:
            print(f"Removed alias: {name}")
    elif sub == "list":
        Argv(rest, "Usage: alias list").positionals(0, 0)
        rows = list_aliases(ctx)
        if ctx.json:
            print_json(rows)
        elif not rows:
            print("No aliases defined")
        else:
            table = [(r["alias"], r["channel"], r["target"], r["description"]) for r in rows]
            print(render_table(table, ("ALIAS", "CHANNEL", "TARGET", "DESCRIPTION")))
    else:
        print("Usage: alias add|list|remove")


def cli_deliveries(ctx: Context, args: list[str]) -> None:
    usage = "Usage: deliveries list [--run <id>] [--status pending|delivered|failed]"
    if not args or args[0] != "list":
        print(usage)
        return
    argv = Argv(args[1:], usage)
    run_id, status = argv.option("--run"), argv.option("--status")
    argv.positionals(0, 0)
    rows = list_deliveries(ctx, run_id, status)
    if ctx.json:
        print_json(rows)
    elif not rows:
        print("No deliveries")
    else:
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
        print(render_table(table, headers))
