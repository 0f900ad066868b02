"""Approval gates from the command line (spec §16.4): approve, reject, list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import command, group
from .context import Context
from .output import CommandError, local_time, print_done, print_rows, render_table, short_id, timed

if TYPE_CHECKING:
    import argparse

    from ocsched.domain.approval import Approval
    from ocsched.domain.dispatch import Dispatch


def decide_approval(
    ctx: Context, job_id: str, approve: bool, reason: str | None = None
) -> dict[str, Any]:
    """Resolve the job's newest pending approval (spec §16.4). Approving releases the
    waiting dispatch to the daemon; rejecting cancels it."""
    from ocsched.projections import views

    pending = views.pending_approvals(ctx.views(), job_id)
    if not pending:
        raise CommandError(f"No pending approval for job: {job_id}")
    row = pending[-1]
    approval: Approval = ctx.log.repository.get(row["id"])
    dispatch: Dispatch = ctx.log.repository.get(row["dispatch_id"])
    meta = ctx.meta()
    if approve:
        approval.approve(ctx.actor, meta, ctx.now)
        dispatch.release(approval.id, meta, ctx.now)
    else:
        approval.reject(ctx.actor, reason, meta, ctx.now)
        dispatch.cancel(
            f"rejected by {ctx.actor}" + (f": {reason}" if reason else ""), meta, ctx.now
        )
    ctx.save(approval, dispatch)
    result = {"ok": True, "approval_id": approval.id, "job_id": job_id}
    result["status"] = "approved" if approve else "rejected"
    if not approve:
        result["reason"] = reason
    return result


def register(commands: argparse._SubParsersAction) -> None:
    approvals = group(
        commands,
        "approvals",
        help="approval gates waiting for a person",
        examples=["ocsched approvals list", "ocsched jobs approve 75db1016"],
    )
    from .as_of import add_as_of

    for name in ("list", "pending"):
        listing = command(
            approvals,
            name,
            cli_approvals,
            help="pending approvals, oldest first" + (" (= list)" if name == "pending" else ""),
            usage="",
            examples=[f"ocsched approvals {name}", f"ocsched --json approvals {name}"],
        )
        add_as_of(listing)


def register_decisions(jobs: argparse._SubParsersAction) -> None:
    """`jobs approve` and `jobs reject` (spec §16.4), under the jobs command."""
    approve = command(
        jobs,
        "approve",
        cli_approve,
        help="approve a job's newest pending approval",
        usage="<job-id>",
        examples=["ocsched jobs approve 75db1016"],
    )
    approve.add_argument("id", metavar="<job-id>", help="the job's id or a unique prefix")
    reject = command(
        jobs,
        "reject",
        cli_reject,
        help="reject a job's newest pending approval",
        usage="<job-id> [reason]",
        examples=["ocsched jobs reject 75db1016 not during the freeze"],
    )
    reject.add_argument("id", metavar="<job-id>", help="the job's id or a unique prefix")
    reject.add_argument("reason", nargs="*", help="why (the rest of the line)")


def cli_approve(ctx: Context, args: argparse.Namespace) -> None:
    job_id = ctx.resolve_id(args.id)
    result = decide_approval(ctx, job_id, approve=True)
    print_done(ctx.json, f"Approved: {job_id}", **_fields(result))


def cli_reject(ctx: Context, args: argparse.Namespace) -> None:
    job_id = ctx.resolve_id(args.id)
    reason = " ".join(args.reason) or None
    result = decide_approval(ctx, job_id, approve=False, reason=reason)
    line = f"Rejected: {job_id}" + (f" -- {reason}" if reason else "")
    print_done(ctx.json, line, **_fields(result))


def _fields(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "ok"}


def cli_approvals(ctx: Context, args: argparse.Namespace) -> None:
    from ocsched.projections import views

    print_rows(ctx.json, views.pending_approvals(ctx.views()), "No pending approvals", _table)


def _table(rows: list[dict[str, Any]]) -> str:
    table = [
        (short_id(r["id"]), r["job_name"], short_id(r["job_id"]), local_time(r["requested_at"]))
        for r in rows
    ]
    return render_table(table, ("ID", "JOB", "JOB ID", timed("REQUESTED")), keep=(0, 2, 3))
