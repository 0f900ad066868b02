"""Queries over the post office's read models (`projections/messages.py`), plain sqlite3.

Rows come back as the anchor returns them: every column of `messages`, `metadata`
parsed from its JSON text. An agent's inbox is what is addressed to it or to `broadcast`,
in spec §21.3's order."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from ocsched.domain.json_text import parse_json

Row = dict[str, Any]

INBOX_ORDER = (
    "CASE kind WHEN 'constraint' THEN 0 WHEN 'decision' THEN 1 WHEN 'fact' THEN 2"
    " WHEN 'task' THEN 3 WHEN 'preference' THEN 4 ELSE 5 END, priority DESC, created_at,"
    " rowid"
)
TO_AGENT = "(to_agent = ? OR to_agent = 'broadcast')"


def with_metadata(row: Row) -> Row:
    """The row with `metadata` parsed (left as text when it is not JSON)."""
    text = row.get("metadata")
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            row["metadata"] = parse_json(text)
    return row


def _rows(db: sqlite3.Connection, sql: str, values: tuple[Any, ...]) -> list[Row]:
    return [with_metadata(row) for row in db.execute(sql, values).fetchall()]


def message(db: sqlite3.Connection, message_id: str) -> Row | None:
    rows = _rows(db, "SELECT * FROM messages WHERE id = ?", (message_id,))
    return rows[0] if rows else None


def inbox(
    db: sqlite3.Connection, agent: str, statuses: tuple[str, ...], limit: int | None
) -> list[Row]:
    """Messages to `agent` or broadcast in one of `statuses`, inbox order; `limit` None or
    below 0: all of them."""
    marks = ",".join("?" for _ in statuses)
    return _rows(
        db,
        f"SELECT * FROM messages WHERE {TO_AGENT} AND status IN ({marks})"
        f" ORDER BY {INBOX_ORDER} LIMIT ?",
        (agent, *statuses, -1 if limit is None else limit),
    )


def unread_count(db: sqlite3.Connection, agent: str) -> int:
    row = db.execute(
        f"SELECT count(*) AS n FROM messages WHERE {TO_AGENT}"
        " AND status IN ('pending', 'delivered')",
        (agent,),
    ).fetchone()
    return int(row["n"])


def outbox(db: sqlite3.Connection, agent: str, limit: int) -> list[Row]:
    return _rows(
        db,
        "SELECT * FROM messages WHERE from_agent = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (agent, limit),
    )


def thread(db: sqlite3.Connection, message_id: str) -> list[Row]:
    return _rows(
        db,
        "SELECT * FROM messages WHERE id = ? OR reply_to = ? ORDER BY created_at, rowid",
        (message_id, message_id),
    )


def team_inbox(
    db: sqlite3.Connection, team: str, limit: int, member: str | None, task: str | None
) -> list[Row]:
    """A team's messages of every status, oldest first; `member` keeps that member's and
    those with no member."""
    clauses, values = ["team_id = ?"], [team]
    if member:
        clauses.append("(member_id IS NULL OR member_id = ?)")
        values.append(member)
    if task:
        clauses.append("task_id = ?")
        values.append(task)
    return _rows(
        db,
        f"SELECT * FROM messages WHERE {' AND '.join(clauses)} ORDER BY created_at, rowid LIMIT ?",
        (*values, limit),
    )


def receipts(db: sqlite3.Connection, message_id: str, limit: int) -> list[Row]:
    return db.execute(
        "SELECT * FROM message_receipts WHERE message_id = ?"
        " ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (message_id, limit),
    ).fetchall()


# What the daemon has to do, and when


def spawns_due(db: sqlite3.Connection, until: str) -> list[Row]:
    """Spawn requests not yet consumed (none delivered by a prompt either)."""
    return db.execute(
        "SELECT t.id FROM message_timers t JOIN messages m ON m.id = t.id"
        " WHERE t.spawn_due IS NOT NULL AND t.spawn_due <= ? AND m.delivered_at IS NULL"
        " ORDER BY t.spawn_due, m.rowid",
        (until,),
    ).fetchall()


def expiries_due(db: sqlite3.Connection, until: str) -> list[Row]:
    return db.execute(
        "SELECT id FROM message_timers WHERE expires_due IS NOT NULL AND expires_due <= ?"
        " ORDER BY expires_due",
        (until,),
    ).fetchall()


def sends_due(db: sqlite3.Connection, agent: str, until: str, limit: int) -> list[Row]:
    """Pending messages the inbox consumer of `agent` sends now: inbox order, less those
    whose last send failed and whose next try is later."""
    return _rows(
        db,
        "SELECT m.* FROM messages m LEFT JOIN message_timers t ON t.id = m.id"
        " WHERE (m.to_agent = ? OR m.to_agent = 'broadcast') AND m.status = 'pending'"
        " AND (t.retry_due IS NULL OR t.retry_due <= ?)"
        f" ORDER BY {INBOX_ORDER.replace('rowid', 'm.rowid')} LIMIT ?",
        (agent, until, limit),
    )


def next_due(db: sqlite3.Connection, agents: list[str]) -> str | None:
    """The earliest moment the daemon has something to do for a message: an expiry, a
    spawn request, a send to try again for one of `agents` (TS text), or None."""
    marks = ",".join("?" for _ in agents) or "NULL"
    row = db.execute(
        "SELECT min(due) AS due FROM ("
        " SELECT min(expires_due) AS due FROM message_timers"
        " UNION ALL SELECT min(spawn_due) FROM message_timers"
        " UNION ALL SELECT min(t.retry_due) FROM message_timers t JOIN messages m ON m.id = t.id"
        f" WHERE t.retry_due IS NOT NULL AND m.to_agent IN ({marks}, 'broadcast'))",
        tuple(agents),
    ).fetchone()
    return row["due"] if row else None


def prune_candidates(db: sqlite3.Connection, before: str) -> list[Row]:
    """Messages created before `before` (the shortest retention's cutoff) that a rule of
    spec §26 may remove."""
    return db.execute(
        "SELECT id, kind, status, created_at FROM messages WHERE created_at < ?"
        " AND (kind IN ('system', 'result') OR status IN ('delivered', 'read', 'expired',"
        " 'failed'))",
        (before,),
    ).fetchall()


def delivery_agents(db: sqlite3.Connection) -> list[Row]:
    """Agents of the registry with a delivery target (spec §22): their inbox consumer runs
    in the daemon. None while the registry has no such columns."""
    try:
        return db.execute(
            "SELECT id, delivery_channel, delivery_to, brand_name FROM agents"
            " WHERE delivery_to IS NOT NULL AND delivery_to != '' ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
