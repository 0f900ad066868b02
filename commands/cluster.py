"""`ocsched cluster status`: the daemons sharing one PostgreSQL log (adapters/cluster.py)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ocsched.projections import views

from .argv import command, group
from .context import Context
from .output import CommandError, local_time, print_rows, render_table

if TYPE_CHECKING:
    import argparse


def register(commands: argparse._SubParsersAction) -> None:
    cluster = group(
        commands,
        "cluster",
        help="the daemons sharing one PostgreSQL log: who is alive, what each runs",
        examples=["ocsched cluster status", "ocsched --json cluster status"],
    )
    command(
        cluster,
        "status",
        cli_status,
        help="each daemon: its lease and last heartbeat, the runs it owns, its read models'"
        " lag behind the log",
        examples=["ocsched cluster status"],
    )


def cluster_status(ctx: Context) -> list[dict[str, Any]]:
    """One record per daemon that joined, oldest first."""
    if not ctx.settings.uses_postgres:
        raise CommandError(
            "cluster status needs a shared log: SCHEDULER_DB is not a postgresql:// URL"
            " (with SQLite one daemon per file runs the jobs)"
        )
    from ocsched.adapters.cluster import members
    from ocsched.adapters.event_store import postgres_env
    from ocsched.adapters.pg_notify import connection_arguments

    head = ctx.log.max_position()
    rows = members(connection_arguments(postgres_env(ctx.settings.database)))
    owned = Counter(run["owner"] for run in views.active_runs(ctx.views()))
    return [
        {
            "identity": m.identity,
            "host": m.host,
            "pid": m.pid,
            "state": "live" if m.live else ("left" if m.left_at else "gone"),
            "started_at": m.started_at.isoformat(),
            "last_heartbeat_at": m.heartbeat_at.isoformat(),
            "heartbeat_age_s": round(m.heartbeat_age_s, 3),
            "lease_until": m.lease_until.isoformat(),
            "running_runs": owned.get(m.identity, 0),
            "position": m.position,
            "projection_lag": max(head - m.position, 0),
        }
        for m in rows
    ]


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    print_rows(ctx.json, cluster_status(ctx), "No daemon has joined this log yet.", _table)


def _table(records: list[dict[str, Any]]) -> str:
    rows = [
        (
            r["identity"],
            r["state"],
            f"{r['heartbeat_age_s']:.1f} s ago",
            local_time(r["lease_until"]),
            r["running_runs"],
            r["projection_lag"],
        )
        for r in records
    ]
    headers = ("DAEMON", "STATE", "HEARTBEAT", "LEASE UNTIL", "RUNNING", "LAG")
    return render_table(rows, headers, keep=(0,))
