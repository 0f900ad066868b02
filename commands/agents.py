"""The agents registry (spec §5.6, §22): `agents list|get|register`; the service
functions, and the CLI handlers over them."""

from __future__ import annotations

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
    delivery_to: str | None = None,
    delivery_channel: str | None = None,
    brand_name: str | None = None,
    clear_delivery: bool = False,
) -> Row:
    """The anchor's upsert (`agents register <id> [name]`): the status back to idle. With
    `delivery_to` (and `delivery_channel`, default telegram) the daemon sends the agent's
    inbox there; `clear_delivery` stops that. None keeps what was recorded."""
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
            delivery_to=delivery_to,
            delivery_channel=delivery_channel,
            brand_name=brand_name,
            clear_delivery=clear_delivery,
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
        examples=[
            "ocsched agents register ops 'Ops Bot'",
            "ocsched agents register ops --delivery-to 123456 --delivery-channel telegram",
            "ocsched agents list",
        ],
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
        description=(
            "Register an agent, or register it again: its status goes back to idle, and\n"
            "the values not given stay as they were (the delivery target among them).\n"
            "With --delivery-to, the daemon sends the agent's inbox (its pending messages)\n"
            "to that target as they arrive; --no-delivery stops that."
        ),
        examples=[
            "ocsched agents register ops",
            "ocsched agents register ops 'Ops Bot'",
            "ocsched agents register ops --delivery-to 123456 --delivery-channel telegram",
            "ocsched agents register ops --delivery-to @oncall --brand 'Ops Desk'",
            "ocsched agents register ops --no-delivery",
        ],
    )
    add.add_argument("agent_id", metavar="<agent-id>", help="the agent's id")
    add.add_argument("name", nargs="?", help="a display name (default: the id)")
    add.add_argument(
        "--delivery-to",
        metavar="<target>",
        help="where the daemon sends the agent's inbox: a chat id, or an @alias",
    )
    add.add_argument(
        "--delivery-channel",
        metavar="<channel>",
        help="the channel of --delivery-to (default when sending: telegram)",
    )
    add.add_argument(
        "--brand",
        metavar="<name>",
        help="the agent's brand name: the header of its inbox's sends (else INBOX_BRAND)",
    )
    add.add_argument(
        "--no-delivery",
        action="store_true",
        help="clear the delivery target and channel: the inbox is no longer sent",
    )


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


REGISTER_USAGE = (
    "agents register <agent-id> [name] [--delivery-to <target>]"
    " [--delivery-channel <channel>] [--brand <name>] [--no-delivery]"
)


def cli_register(ctx: Context, args: argparse.Namespace) -> None:
    if args.no_delivery and (args.delivery_to is not None or args.delivery_channel is not None):
        raise UsageError(
            "--no-delivery cannot be given with --delivery-to or --delivery-channel."
            f" Usage: {REGISTER_USAGE}"
        )
    agent = register_agent(
        ctx,
        args.agent_id,
        args.name or args.agent_id,
        delivery_to=args.delivery_to,
        delivery_channel=args.delivery_channel,
        brand_name=args.brand,
        clear_delivery=args.no_delivery,
    )
    print_done(ctx.json, f"Registered: {to_json(agent)}", agent=agent)
