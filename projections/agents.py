"""The agents read model (spec §22): the anchor's `agents` table, and its queries.

An agent is `busy` with its session while an agent turn of its runs, `idle` after (the
anchor's setAgentStatus): read from the runs' own events, whose session key names the
agent (`agent:<id>:…`); an agent never registered gets no row, as in the anchor.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import RowChange, Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.agent import Agent
    from ocsched.domain.run import Run

TABLE = "agents"
COLUMNS: dict[str, type] = {
    "id": str,
    "name": str,
    "status": str,
    "last_seen_at": str,
    "session_key": str,
    "capabilities": str,
    "delivery_channel": str,
    "delivery_to": str,
    "brand_name": str,
    "created_at": str,
}


def create_tables(db: Any) -> None:
    db[TABLE].create(COLUMNS, pk="id")


def registered(event: Agent.Registered):
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(event.values, id=event.agent_id, created_at=ts(event))
    yield Upsert(TABLE, row)


def updated(event: Agent.Updated):
    yield Update(TABLE, event.agent_id, {**event.values, "last_seen_at": ts(event)})


def turn_started(event: Run.Started) -> tuple[RowChange, ...]:
    # (plain functions, not generators: every run's events pass through them)
    agent_id = _agent_of(event.session_key)
    if agent_id is None:
        return ()
    values = {"status": "busy", "session_key": event.session_key, "last_seen_at": ts(event)}
    return (Update(TABLE, agent_id, values),)


def turn_finished(event: Run.Finished) -> tuple[RowChange, ...]:
    agent_id = _agent_of(event.outcome.get("session_key"))
    if agent_id is None:
        return ()
    values = {"status": "idle", "session_key": None, "last_seen_at": ts(event)}
    return (Update(TABLE, agent_id, values),)


def _agent_of(session_key: Any) -> str | None:
    """`main` of `agent:main:scheduler:…`; None for a run without a session (a shell run)."""
    if not isinstance(session_key, str) or not session_key.startswith("agent:"):
        return None
    return session_key.split(":", 2)[1] or None


projection = Projection(
    name="agents",
    version=1,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "agent:Agent.Registered": registered,
        "agent:Agent.Updated": updated,
        "run:Run.Started": turn_started,
        "run:Run.Finished": turn_finished,
    },
)


# Queries (plain sqlite3, for the commands and the daemon)


def agent(db: sqlite3.Connection | None, agent_id: str) -> dict[str, Any] | None:
    if db is None:
        return None
    row = db.execute(f"SELECT {_SHOWN} FROM agents WHERE id = ?", (agent_id,)).fetchone()
    return _parsed(row) if row else None


def agents(db: sqlite3.Connection | None) -> list[dict[str, Any]]:
    if db is None:
        return []
    return [_parsed(row) for row in db.execute(f"SELECT {_SHOWN} FROM agents ORDER BY id")]


_SHOWN = ", ".join(COLUMNS)


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    if row["capabilities"]:
        row["capabilities"] = json.loads(row["capabilities"])
    return row
