"""`ocsched projections status|rebuild [NAME]`."""

from __future__ import annotations

from .argv import Argv
from .context import Context
from .output import CommandError, print_json, render_table


def projection_status(ctx: Context) -> list[dict]:
    from ocsched.projections.runner import status

    return [
        {"name": s.name, "position": s.position, "head": s.head, "lag": s.lag}
        for s in status(ctx.log, ctx.store)
    ]


def rebuild_projections(ctx: Context, name: str | None = None) -> list[dict]:
    from ocsched.projections.runner import all_projections, by_name, rebuild

    try:
        chosen = [by_name(name)] if name else list(all_projections())
    except KeyError as error:
        raise CommandError(str(error.args[0])) from None
    return [{"name": p.name, "events": rebuild(ctx.log, ctx.store, p)} for p in chosen]


def cli_projections(ctx: Context, args: list[str]) -> None:
    usage = "Usage: projections status | projections rebuild [NAME]"
    sub = args[0] if args else None
    if sub == "status":
        Argv(args[1:], usage).positionals(0, 0)
        rows = projection_status(ctx)
        if ctx.json:
            print_json(rows)
        else:
            table = [(r["name"], r["position"], r["head"], r["lag"]) for r in rows]
            print(render_table(table, ("PROJECTION", "POSITION", "HEAD", "LAG")))
    elif sub == "rebuild":
        names = Argv(args[1:], usage).positionals(0, 1)
        results = rebuild_projections(ctx, names[0] if names else None)
        if ctx.json:
            print_json({"ok": True, "rebuilt": results})
        else:
            for result in results:
                print(f"Rebuilt {result['name']} from {result['events']} events")
    else:
        print(usage)
