"""Approval gates from the command line (spec §16.4): approve, reject, list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import Argv
from .context import Context
from .output import CommandError, print_json, render_table, short_id

if TYPE_CHECKING:
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


def cli_approve(ctx: Context, args: list[str]) -> None:
    (job_id,) = Argv(args, "Usage: jobs approve <job-id>").positionals(1, 1)
    result = decide_approval(ctx, job_id, approve=True)
    if ctx.json:
        print_json(result)
    else:
        print(f"Approved: {job_id}")


def cli_reject(ctx: Context, args: list[str]) -> None:
    job_id, *words = Argv(args, "Usage: jobs reject <job-id> [reason]").positionals(1)
    reason = " ".join(words) or None
    result = decide_approval(ctx, job_id, approve=False, reason=reason)
    if ctx.json:
        print_json(result)
    else:
        print(f"Rejected: {job_id}" + (f" -- {reason}" if reason else ""))


def cli_approvals(ctx: Context, args: list[str]) -> None:
    from ocsched.projections import views

    usage = "Usage: approvals list|pending"
    if not args or args[0] not in ("list", "pending"):
        print(usage)
        return
    Argv(args[1:], usage).positionals(0, 0)
    rows = views.pending_approvals(ctx.views())
    if ctx.json:
        print_json(rows)
    elif not rows:
        print("No pending approvals")
    else:
        table = [
            (short_id(r["id"]), r["job_name"], short_id(r["job_id"]), r["requested_at"])
            for r in rows
        ]
        print(render_table(table, ("ID", "JOB", "JOB ID", "REQUESTED")))
