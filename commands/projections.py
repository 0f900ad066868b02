"""`ocsched projections status|rebuild [NAME]`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .argv import command, group
from .context import Context
from .output import CommandError, print_done, print_json, progress, render_table

if TYPE_CHECKING:
    import argparse


def projection_status(ctx: Context) -> list[dict]:
    from ocsched.projections.runner import status

    return [
        {"name": s.name, "position": s.position, "head": s.head, "lag": s.lag}
        for s in status(ctx.log, ctx.store)
    ]


def rebuild_projections(ctx: Context, name: str | None = None) -> list[dict]:
    from ocsched.projections.runner import all_projections, by_name, rebuild_together

    try:
        chosen = [by_name(name)] if name else list(all_projections())
    except KeyError as error:
        raise CommandError(str(error.args[0])) from None
    total = ctx.log.max_position() or 0
    with progress(ctx.json, total, f"rebuild {name or 'all'}") as advance:
        events = rebuild_together(ctx.log, ctx.store, chosen, progress=advance)
    return [{"name": projection.name, "events": events} for projection in chosen]


def register(commands: argparse._SubParsersAction) -> None:
    projections = group(
        commands,
        "projections",
        help="the read models: their lag, rebuilding and verifying them",
        examples=["ocsched projections status", "ocsched projections rebuild jobs"],
    )
    command(
        projections,
        "status",
        cli_status,
        help="each projection's position and lag",
        usage="",
        examples=["ocsched projections status"],
    )
    rebuild = command(
        projections,
        "rebuild",
        cli_rebuild,
        help="rebuild read models from the first event",
        usage="[NAME]",
        examples=["ocsched projections rebuild", "ocsched projections rebuild runs"],
    )
    rebuild.add_argument("name", nargs="?", metavar="NAME", help="one projection (default: all)")
    command(
        projections,
        "verify",
        "replay:cli_verify",
        help="rebuild into a scratch store and compare every row with the live read models",
        usage="",
        examples=["ocsched projections verify", "ocsched --json projections verify"],
    )


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    rows = projection_status(ctx)
    if ctx.json:
        print_json(rows)
    else:
        table = [(r["name"], r["position"], r["head"], r["lag"]) for r in rows]
        print(render_table(table, ("PROJECTION", "POSITION", "HEAD", "LAG")))


def cli_rebuild(ctx: Context, args: argparse.Namespace) -> None:
    results = rebuild_projections(ctx, args.name)
    lines = [f"Rebuilt {result['name']} from {result['events']} events" for result in results]
    print_done(ctx.json, "\n".join(lines), rebuilt=results)
