"""The agents registry (spec §5.6, §22): `agents list|get|register`; the service
functions, and the CLI handlers over them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import command, group
from .context import Context
from .output import (
    CommandError,
    local_time,
    print_done,
    print_json,
    print_rows,
    render_table,
    timed,
    to_json,
)

if TYPE_CHECKING:
    import argparse

Row = dict[str, Any]


# Service functions: usable from Python, one per behaviour.


def register_agent(
    ctx: Context,
    agent_id: str,
    name: str | None = None,
    *,
    capabilities: list[str] | None = None,
) -> Row:
    """The anchor's upsert (`agents register <id> [name]`): the status back to idle."""
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.agent import Agent, agent_aggregate_id, register
    from ocsched.domain.errors import DomainError

    existing: Agent | None
    try:
        existing = ctx.log.repository.get(agent_aggregate_id(agent_id))
    except AggregateNotFoundError:
        existing = None
    try:
        agent = register(
            existing,
            agent_id,
            name=name,
            capabilities=capabilities,
            meta=ctx.meta(),
            at=ctx.now,
        )
    except DomainError as error:
        raise CommandError(str(error)) from None
    ctx.save(agent)
    row = get_agent(ctx, agent_id)
    assert row is not None
    return row


def get_agent(ctx: Context, agent_id: str) -> Row | None:
    from ocsched.projections import agents

    return agents.agent(ctx.views(), agent_id)


def list_agents(ctx: Context) -> list[Row]:
    from ocsched.projections import agents

    return agents.agents(ctx.views())


# The command line


def register(commands: argparse._SubParsersAction) -> None:
    agents = group(
        commands,
        "agents",
        help="the agents registry: list, get, register",
        examples=["ocsched agents register ops 'Ops Bot'", "ocsched agents list"],
    )
    command(
        agents,
        "list",
        cli_list,
        help="every registered agent, by id",
        usage="",
        examples=["ocsched agents list", "ocsched --json agents list"],
    )
    get = command(
        agents,
        "get",
        cli_get,
        help="print an agent's record (JSON)",
        usage="<id>",
        examples=["ocsched agents get main"],
    )
    get.add_argument("agent_id", metavar="<id>", help="the agent's id")
    add = command(
        agents,
        "register",
        cli_register,
        help="register an agent, or register it again (its status goes back to idle)",
        usage="<agent-id> [name]",
        examples=["ocsched agents register ops", "ocsched agents register ops 'Ops Bot'"],
    )
    add.add_argument("agent_id", metavar="<agent-id>", help="the agent's id")
    add.add_argument("name", nargs="?", help="a display name (default: the id)")


def cli_list(ctx: Context, args: argparse.Namespace) -> None:
    print_rows(ctx.json, list_agents(ctx), "No agents registered", _table)


def _table(rows: list[Row]) -> str:
    table = [
        (r["id"], r["name"], r["status"], local_time(r["last_seen_at"]), r["session_key"])
        for r in rows
    ]
    return render_table(table, ("ID", "NAME", "STATUS", timed("LAST SEEN"), "SESSION"), keep=(0,))


def cli_get(ctx: Context, args: argparse.Namespace) -> None:
    agent = get_agent(ctx, args.agent_id)
    if agent is None:
        raise CommandError(f"Agent not found: {args.agent_id}")
    print_json(agent)


def cli_register(ctx: Context, args: argparse.Namespace) -> None:
    agent = register_agent(ctx, args.agent_id, args.name or args.agent_id)
    print_done(ctx.json, f"Registered: {to_json(agent)}", agent=agent)
