"""`ocsched status` (spec §29.1): what is stored and what comes next."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .argv import command
from .context import Context
from .output import local_time, print_json

if TYPE_CHECKING:
    import argparse


def scheduler_status(ctx: Context) -> dict[str, Any]:
    from ocsched.projections import views

    from .runs import running_runs, stale_runs

    counts = views.job_counts(ctx.views())
    budgets = views.budgets(ctx.views())
    return {
        "db_path": ctx.settings.database if not ctx.settings.uses_postgres else _redacted(ctx),
        "jobs_total": counts["total"],
        "jobs_enabled": counts["enabled"],
        "running_runs": len(running_runs(ctx)),
        "stale_runs": len(stale_runs(ctx)),
        "budgets": budgets,
        "budget_hotspots": [],
        "agents": _agents(ctx),
        "next_job": counts["next"],
    }


def _agents(ctx: Context) -> list[dict[str, Any]]:
    """Each registered agent's status and unread messages (spec §29.1)."""
    from ocsched.projections import agents, message_views

    db = ctx.views()
    if db is None:
        return []
    return [
        {"id": a["id"], "status": a["status"], "unread": message_views.unread_count(db, a["id"])}
        for a in agents.agents(db)
    ]


def _redacted(ctx: Context) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(ctx.settings.database)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username or ''}@{host}{port}{parts.path}"


def register(commands: argparse._SubParsersAction) -> None:
    from .as_of import add_as_of

    status = command(
        commands,
        "status",
        cli_status,
        help="what is stored and what runs next",
        usage="",
        description="What is stored and what runs next.\n`status --label L` is the dispatch"
        " status (ocsched dispatch status --help).",
        examples=["ocsched status", "ocsched --json status"],
    )
    add_as_of(status)


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    from .importing import anchor_hint

    status = scheduler_status(ctx)
    hint = None if status["jobs_total"] else anchor_hint(ctx)
    if ctx.json:
        print_json({**status, "hint": hint} if hint else status)
        return
    if hint:
        print(hint, file=sys.stderr)
    budgets = status["budgets"]
    lines = [
        "=== OpenClaw Scheduler Status ===",
        f"DB:       {status['db_path']}",
        f"Jobs:     {status['jobs_total']} total, {status['jobs_enabled']} enabled",
        f"Running:  {status['running_runs']}",
        f"Stale:    {status['stale_runs']}",
        f"Dispatch: {budgets['pending_dispatches']} pending,"
        f" {budgets['approval_blocked_dispatches']} approval-blocked,"
        f" {budgets['overlap_queued_dispatches']} overlap-queued",
        f"Approvals:{budgets['pending_approvals']} pending",
        f"Output:   {budgets['shell_output_bytes']} bytes stored/offloaded across runs"
        f" ({budgets['offloaded_shell_runs']} offloaded runs)",
        f"Agents:   {len(status['agents'])}",
    ]
    for agent in status["agents"]:
        unread = f" ({agent['unread']} unread)" if agent["unread"] else ""
        lines.append(f"  {agent['id']}: {agent['status']}{unread}")
    if status["next_job"]:
        next_job = status["next_job"]
        when = local_time(next_job["next_run_at"], named=True)
        lines.append(f"Next:     {next_job['name']} at {when}")
    print("\n".join(lines))
