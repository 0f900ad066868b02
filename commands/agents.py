"""The agents registry (spec §5.6, §22): `agents list|get|register`; the service
functions, and the CLI handlers over them."""

from __future__ import annotations

from typing import Any

from .context import Context
from .output import CommandError

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
