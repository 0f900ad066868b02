"""The agents read model (spec §22): the anchor's `agents` table, and its queries."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from .projection import Projection
from .rows import Update, Upsert
from .stamps import ts

if TYPE_CHECKING:
    from ocsched.domain.agent import Agent

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


projection = Projection(
    name="agents",
    version=1,
    tables=(TABLE,),
    create_tables=create_tables,
    handlers={
        "agent:Agent.Registered": registered,
        "agent:Agent.Updated": updated,
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
