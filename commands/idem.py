"""`idem`: the idempotency ledger of spec §5.6 / §19, as a view over runs (keys are the
runs' causes; `domain/idempotency.py` says how a run's outcome claims or releases its key)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .argv import command, group
from .context import Context
from .output import CommandError, print_done, print_json, print_rows, render_table, short_id

if TYPE_CHECKING:
    import argparse

    from ocsched.domain.run import Run

STATUS_LIMIT = 20
NOT_FOUND = "Key not found in ledger"


def key_status(ctx: Context, job_id: str, limit: int = STATUS_LIMIT) -> list[dict[str, Any]]:
    """The job's newest ledger rows, newest claim first."""
    from ocsched.domain.idempotency import ledger_row
    from ocsched.projections import views

    db = ctx.views()
    if db is None:
        return []
    job = views.job(db, job_id)
    runs = db.execute(
        "SELECT * FROM runs WHERE job_id = ? AND idempotency_key IS NOT NULL"
        " ORDER BY dispatched_at DESC, rowid DESC",
        (job_id,),
    ).fetchall()
    rows = [row for row in (ledger_row(run, job) for run in runs) if row is not None]
    return [row for row in rows if not _expired(ctx, row)][:limit]


def key_entry(ctx: Context, key: str) -> dict[str, Any] | None:
    """The ledger row of a key: the run its cause made (its id is derived from the key)."""
    from ocsched.domain.idempotency import ledger_row
    from ocsched.projections import views

    db = ctx.views()
    run = views.run(db, run_for(key)) if db is not None else None
    if run is None and db is not None:  # a run imported from openclaw-scheduler: its key
        run = db.execute("SELECT * FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
    if run is None or run.get("idempotency_key") != key:
        return None
    row = ledger_row(run, views.job(db, run["job_id"]))
    return None if row is None or _expired(ctx, row) else row


def release_key(ctx: Context, key: str) -> dict[str, Any]:
    """Show the key released, as the anchor's `idem release` does; its cause keeps the one
    run it made (run the job again with `jobs run`)."""
    entry = key_entry(ctx, key)
    if entry is None:
        raise CommandError(NOT_FOUND)
    if entry["status"] == "released":
        return {"ok": True, "key": key, "already_released": True}
    run: Run = ctx.log.repository.get(entry["run_id"])
    run.release_key(ctx.meta(), ctx.now)
    ctx.save(run)
    return {"ok": True, "key": key, "released": True}


def run_for(key: str) -> str:
    from ocsched.domain.run import RUN_NAMESPACE

    return str(uuid.uuid5(RUN_NAMESPACE, key))


def _expired(ctx: Context, row: dict[str, Any]) -> bool:
    from ocsched.domain.schedule import to_ts

    return bool(row["expires_at"]) and row["expires_at"] < to_ts(ctx.now)


def register(commands: argparse._SubParsersAction) -> None:
    idem = group(
        commands,
        "idem",
        help="idempotency keys: the runs' causes, claimed or released",
        examples=["ocsched idem status 75db1016", "ocsched idem check 'dispatch/4be1…'"],
    )
    status = command(
        idem,
        "status",
        cli_status,
        help="a job's newest 20 keys",
        usage="<job-id>",
        examples=["ocsched idem status 75db1016", "ocsched --json idem status 75db1016"],
    )
    status.add_argument("id", metavar="<job-id>", help="the job's id or a unique prefix")
    check = command(
        idem,
        "check",
        cli_check,
        help="one key's ledger row",
        usage="<key>",
        examples=["ocsched idem check 'clock/75db1016-…/2026-12-05 03:00:00'"],
    )
    check.add_argument("key", metavar="<key>", help="the key, as a run record shows it")
    release = command(
        idem,
        "release",
        cli_release,
        help="mark a key released",
        usage="<key>",
        examples=["ocsched idem release 'dispatch/4be1…'"],
    )
    release.add_argument("key", metavar="<key>", help="the key, as a run record shows it")
    command(
        idem,
        "prune",
        cli_prune,
        help="drop expired keys (the view never shows them: nothing to drop)",
        usage="",
        examples=["ocsched idem prune"],
    )


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    rows = key_status(ctx, ctx.resolve_id(args.id))
    print_rows(ctx.json, rows, "No idempotency entries for this job", _table)


def cli_check(ctx: Context, args: argparse.Namespace) -> None:
    entry = key_entry(ctx, args.key)
    if entry is not None:
        print_json(entry)
    elif ctx.json:
        print_json({"found": False, "key": args.key})
    else:
        print(NOT_FOUND)


def cli_release(ctx: Context, args: argparse.Namespace) -> None:
    result = release_key(ctx, args.key)
    if result.get("already_released"):
        print_done(ctx.json, "Key already released", key=args.key, already_released=True)
    else:
        line = f"Released idempotency key: {args.key[:12]}.."
        print_done(ctx.json, line, key=args.key, released=True)


def cli_prune(ctx: Context, args: argparse.Namespace) -> None:
    print_done(ctx.json, "Pruned 0 expired idempotency entries", pruned=0)


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ["key", "run", "status", "claimed", "released", "expires", "hash"]
    cells = [
        [
            row["key"][:12] + "..",
            short_id(row["run_id"]),
            row["status"],
            row["claimed_at"],
            row["released_at"],
            row["expires_at"],
            row["result_hash"],
        ]
        for row in rows
    ]
    return render_table(cells, headers, keep=(0, 1, 2, 3, 5))
