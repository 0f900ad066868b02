"""`ocsched runs stuck`: spec §25.3's stuck-run detector as a command (setup schedules it
every 10 minutes, threshold 45: `ocsched service install --with-helpers`).

Candidates are running runs silent (no heartbeat, else since their start) for longer than
the threshold, stalest first. A run whose job is a dispatch's (its name is a label, or
ends in `-deliver:<label>`) is skipped when the ledger says that dispatch is done (the
runs read model lagging behind). Every other candidate is reported, and the command exits
1, so a scheduled run of it fails and its delivery announces the list.

Not carried over: the anchor's auto-steer of a silent sub-agent through `dispatch send`,
with its state file. ocsched's daemon follows every running dispatch itself and resolves
an idle session (spec §31.10, ARCHITECTURE "Sub-agent dispatches"), and it has no
per-label watcher jobs whose runs would stand for a dispatch.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .argv import MAX_WHOLE_NUMBER, command, whole_number
from .context import Context
from .output import CommandError, print_json

if TYPE_CHECKING:
    import argparse

THRESHOLD_MIN = 45
LIMIT = 20
DELIVER_MARK = "-deliver:"


def register_stuck(runs: argparse._SubParsersAction) -> None:
    parser = command(
        runs,
        "stuck",
        cli_stuck,
        help="running runs silent longer than a threshold (the stuck-run detector);"
        " exit 1 when there are some",
        usage="[--threshold-min <minutes>] [--limit <n>]",
        examples=["ocsched runs stuck", "ocsched runs stuck --threshold-min 30 --limit 5"],
    )
    parser.add_argument("--threshold-min", metavar="<minutes>", help=f"default {THRESHOLD_MIN}")
    parser.add_argument("--limit", metavar="<n>", help=f"at most this many (default {LIMIT})")


def stuck_runs(ctx: Context, threshold_min: float, limit: int) -> dict[str, Any]:
    """The stale candidates, those skipped (with the reason) and those to alert."""
    from ocsched.domain.schedule import from_ts
    from ocsched.projections import views

    connection = ctx.views()
    candidates = []
    for run in views.active_runs(connection, ("running",)):
        silent_since = from_ts(run["last_heartbeat"] or run["started_at"])
        stale = ctx.now - silent_since
        if stale > timedelta(minutes=threshold_min):
            candidates.append((silent_since, run, int(stale.total_seconds())))
    candidates.sort(key=lambda found: found[0])
    skipped, alerts = [], []
    for _, run, stale_s in candidates[:limit]:
        label = _label(connection, run["job_name"])
        if label is not None and label["status"] == "done":
            skipped.append(
                {
                    "job": run["job_name"],
                    "label": label["label"],
                    "reason": "ledger status=done (read models behind)",
                }
            )
            continue
        alerts.append(
            {
                "run_id": run["id"],
                "job_name": run["job_name"],
                "job_id": run["job_id"],
                "started_at": run["started_at"],
                "last_heartbeat": run["last_heartbeat"],
                "stale_s": stale_s,
                "timeout_ms": run["run_timeout_ms"],
                "label": label["label"] if label else None,
            }
        )
    return {"threshold_min": threshold_min, "skipped": skipped, "stuck": alerts}


def _label(connection: Any, job_name: str | None) -> dict[str, Any] | None:
    """The dispatch a job stands for: its name as a label, or what follows `-deliver:`."""
    if connection is None or not job_name:
        return None
    names = [job_name]
    if DELIVER_MARK in job_name:
        names.append(job_name.split(DELIVER_MARK, 1)[1])
    for name in names:
        try:
            row = connection.execute("SELECT * FROM labels WHERE label = ?", (name,)).fetchone()
        except Exception:  # noqa: BLE001 - no labels table yet: no dispatch
            return None
        if row is not None:
            return row
    return None


def _threshold(text: str | None) -> float:
    if text is None:
        return THRESHOLD_MIN
    try:
        value = float(text) if text.strip() == text else math.nan
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_WHOLE_NUMBER:  # NaN and infinities too
        raise CommandError(f"--threshold-min must be a number of minutes above 0, got: {text}")
    return value


def cli_stuck(ctx: Context, args: argparse.Namespace) -> None:
    threshold = _threshold(args.threshold_min)
    limit = LIMIT if args.limit is None else whole_number(args.limit)
    if limit is None:
        raise CommandError(f"--limit must be a whole number of 1 or more, got: {args.limit}")
    found = stuck_runs(ctx, threshold, limit)
    if ctx.json:
        print_json(found)
    else:
        _print(found)
    if found["stuck"]:
        raise SystemExit(1)


def _print(found: dict[str, Any]) -> None:
    minutes = f"{found['threshold_min']:g}"
    for skip in found["skipped"]:
        print(f'Skipped: job="{skip["job"]}" label="{skip["label"]}" -- {skip["reason"]}')
    if not found["stuck"]:
        print(f"No stale runs older than {minutes} minute(s).")
        return
    print(f"Detected {len(found['stuck'])} stale run(s) older than {minutes} minute(s):")
    for run in found["stuck"]:
        print(
            f'- run={run["run_id"]} job="{run["job_name"]}" job_id={run["job_id"]}'
            f" started={run['started_at']} last_heartbeat={run['last_heartbeat'] or 'null'}"
            f" stale_s={run['stale_s']} timeout_ms={run['timeout_ms']}"
        )
