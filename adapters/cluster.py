"""Daemons on one PostgreSQL log see each other: membership by leases in a small table.

Each daemon keeps a row in `ocsched_cluster_hosts` (its `host:pid:start` identity), renewed
every `HEARTBEAT_S` by a thread with a connection of its own: the lease runs `LEASE_S`
past each renewal, by the database's clock (hosts' clocks need not agree), with the
daemon's read-model position and its running runs. A daemon that stops says so
(`left_at`); one that dies stops renewing. The rows are not events: heartbeats would
flood the log, and they decide nothing a replay must reproduce.

Due work is spread by rendezvous hashing of each timer over the live members: one owner
per timer, the same on every host that sees the same members, and when a member goes only
its timers move. Each slot still runs once whoever fires it (run ids derive from their
cause); ownership only keeps the others from trying.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger("ocsched")

HEARTBEAT_S = 0.5
LEASE_S = 2.0
"""A member whose lease is not renewed for this long is gone: its timers move to the
others and its runs are recovered. With the heartbeat, the failover bound is
`LEASE_S + HEARTBEAT_S` plus a catch-up (README, "Several hosts"); its runs are
recovered one more `LEASE_S` later."""
PRUNE_AFTER = "1 day"
TABLE = "ocsched_cluster_hosts"

CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    identity text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    lease_until timestamptz NOT NULL,
    left_at timestamptz,
    position bigint NOT NULL DEFAULT 0,
    running integer NOT NULL DEFAULT 0
)"""
RENEW = f"""INSERT INTO {TABLE} AS m
    (identity, host, pid, started_at, heartbeat_at, lease_until, position, running)
    VALUES (%(identity)s, %(host)s, %(pid)s, clock_timestamp(), clock_timestamp(),
            clock_timestamp() + make_interval(secs => %(lease)s), %(position)s, %(running)s)
    ON CONFLICT (identity) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
        lease_until = excluded.lease_until, position = excluded.position,
        running = excluded.running
    WHERE m.left_at IS NULL"""
MEMBERS = f"""SELECT identity, left_at IS NULL AND lease_until > clock_timestamp() AS live,
    left_at IS NOT NULL OR lease_until < clock_timestamp() - make_interval(secs => %s) AS dead
    FROM {TABLE}"""
LEAVE = f"UPDATE {TABLE} SET left_at = clock_timestamp() WHERE identity = %s"
PRUNE = f"DELETE FROM {TABLE} WHERE lease_until < clock_timestamp() - interval '{PRUNE_AFTER}'"
STATUS = f"""SELECT identity, host, pid, started_at, heartbeat_at, lease_until, left_at,
    position, running, left_at IS NULL AND lease_until > clock_timestamp() AS live,
    extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS heartbeat_age_s
    FROM {TABLE} ORDER BY started_at"""


def owner_of(key: str, members: frozenset[str]) -> str:
    """The member that owns `key` (rendezvous hashing: the highest hash of member and key)."""
    return max(members, key=lambda member: _weight(member, key))


def _weight(member: str, key: str) -> bytes:
    return hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()


class Membership:
    """This daemon's lease and its view of the others. `live` and `gone` are replaced
    whole by the heartbeat thread (reads need no lock); `on_change` is called on the
    daemon's loop when a member joins or goes."""

    def __init__(
        self,
        arguments: Mapping[str, Any],
        identity: str,
        *,
        read_models: str,
        running: Callable[[], int],
        on_change: Callable[[], None],
    ) -> None:
        self.arguments = {**arguments, "application_name": "ocsched-cluster"}
        self.identity = identity
        self.read_models = read_models
        self.running = running
        self.on_change = on_change
        self.live: frozenset[str] = frozenset()
        self.gone: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._positions: sqlite3.Connection | None = None

    def owns(self, key: str) -> bool:
        """Whether this daemon should fire `key` now: it is its owner among the live
        members, or its own lease is not known to hold (then every daemon fires; the ids
        still make each slot run once)."""
        live = self.live
        if self.identity not in live:
            return True
        return owner_of(key, live) == self.identity

    def is_gone(self, owner: str | None) -> bool:
        """Whether `owner` is a member that left, or whose lease ran out a lease ago: its
        runs are then recovered by the others. (Its timers move as soon as its lease
        runs out, which is harmless if it is only late; declaring its runs crashed is
        not, so a daemon whose heartbeat was merely held up gets a second lease.)"""
        return owner is not None and owner in self.gone

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="ocsched-cluster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Leave (the others take this daemon's timers at once) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S + 6)

    def _run(self) -> None:
        import psycopg

        delay = HEARTBEAT_S
        while not self._stop.is_set():
            try:
                with psycopg.connect(**self.arguments) as connection:
                    _create_table(connection)
                    connection.execute(PRUNE)
                    while not self._stop.is_set():
                        self._renew(connection)
                        delay = HEARTBEAT_S
                        self._stop.wait(HEARTBEAT_S)
                    connection.execute(LEAVE, (self.identity,))
                    return
            except Exception as error:  # noqa: BLE001 - the lease thread must outlive an outage
                if self._stop.is_set():
                    return
                log.warning(
                    "cluster membership: %s: %s; again in %.1f s",
                    type(error).__name__,
                    error,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, LEASE_S)

    def _renew(self, connection: Any) -> None:
        connection.execute(
            RENEW,
            {
                "identity": self.identity,
                "host": socket.gethostname(),
                "pid": int(self.identity.split(":")[1]),
                "lease": LEASE_S,
                "position": self._position(),
                "running": self.running(),
            },
        )
        rows = connection.execute(MEMBERS, (LEASE_S,)).fetchall()
        live = frozenset(identity for identity, alive, _ in rows if alive)
        gone = frozenset(identity for identity, _, dead in rows if dead)
        if live != self.live or gone != self.gone:
            joined, left = live - self.live, self.live - live
            self.live, self.gone = live, gone
            if joined or left:
                log.info(
                    "cluster: %d live%s%s",
                    len(live),
                    f"; joined {', '.join(sorted(joined))}" if joined else "",
                    f"; gone {', '.join(sorted(left))}" if left else "",
                )
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.on_change)

    def _position(self) -> int:
        """The lowest position of this host's read models (their lag is the head's minus
        this)."""
        try:
            if self._positions is None:
                self._positions = sqlite3.connect(
                    f"file:{self.read_models}?mode=ro", uri=True, check_same_thread=False
                )
            row = self._positions.execute("SELECT min(notification_id) FROM tracking").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0] or 0)


def _create_table(connection: Any) -> None:
    """The table, once; two daemons creating it at once may collide in the catalog."""
    import psycopg

    with contextlib.suppress(psycopg.errors.UniqueViolation):
        connection.execute(CREATE)


@dataclass(frozen=True)
class Member:
    identity: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    lease_until: datetime
    left_at: datetime | None
    position: int
    running: int
    live: bool
    heartbeat_age_s: float


def members(arguments: Mapping[str, Any]) -> list[Member]:
    """Every member's row, oldest first (none when no daemon ever joined)."""
    import psycopg

    with psycopg.connect(**arguments) as connection:
        exists = connection.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = connection.execute(STATUS).fetchall()
    return [Member(*row) for row in rows]
