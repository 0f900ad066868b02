"""Run commands (spec §5.4): list, get, output, running, stale."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ocsched.projections import views

from .argv import MAX_WHOLE_NUMBER, command, group, whole_number
from .context import Context
from .output import (
    CommandError,
    UsageError,
    local_time,
    print_json,
    print_rows,
    render_table,
    short_id,
    timed,
)

if TYPE_CHECKING:
    import argparse

STALE_THRESHOLD_S = 90


def list_runs(ctx: Context, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
    return views.runs_of_job(ctx.views(), job_id, limit)


def get_run(ctx: Context, run_id: str) -> dict[str, Any]:
    record = views.run(ctx.views(), run_id)
    if record is None:
        raise CommandError(f"Run not found: {run_id}")
    return record


def run_output(ctx: Context, run_id: str, kind: str = "stdout") -> dict[str, Any]:
    record = get_run(ctx, run_id)
    path = record[f"shell_{kind}_path"]
    if path:
        try:
            with open(path, encoding="utf-8", errors="replace") as stream:
                content = stream.read()
        except OSError as error:
            raise CommandError(f"Cannot read output file {path}: {error.strerror}") from None
    else:
        content = record[f"shell_{kind}"] or ""
    return {"run_id": run_id, "kind": kind, "file_path": path, "content": content}


def running_runs(ctx: Context) -> list[dict[str, Any]]:
    return views.active_runs(ctx.views(), ("running",))


def stale_runs(ctx: Context, threshold_s: int = STALE_THRESHOLD_S) -> list[dict[str, Any]]:
    """Spec §25.1: shell runs past their timeout; other runs silent past the threshold."""
    from ocsched.domain.schedule import from_ts

    stale = []
    for run in running_runs(ctx):
        started = from_ts(run["started_at"])
        if run["session_target"] == "shell":
            if ctx.now - started > timedelta(milliseconds=run["run_timeout_ms"] or 0):
                stale.append(run)
        else:
            heartbeat = from_ts(run["last_heartbeat"] or run["started_at"])
            if ctx.now - heartbeat > timedelta(seconds=threshold_s):
                stale.append(run)
    return stale


def register(commands: argparse._SubParsersAction) -> None:
    runs = group(
        commands,
        "runs",
        help="a job's runs, their output, running and stale runs",
        examples=["ocsched runs list 75db1016", "ocsched runs output 0c9f2e41 stderr"],
    )
    listing = command(
        runs,
        "list",
        cli_list,
        help="a job's runs, newest first",
        usage="<job-id> [limit]",
        examples=["ocsched runs list 75db1016", "ocsched --json runs list 75db1016 100"],
    )
    listing.add_argument("job_id", metavar="<job-id>", help="the job's id or a unique prefix")
    listing.add_argument("limit", nargs="?", default="20", help="how many (default 20)")
    from .as_of import add_as_of

    add_as_of(listing)
    get = command(
        runs,
        "get",
        cli_get,
        help="print a run's record (JSON)",
        usage="<run-id>",
        examples=["ocsched runs get 0c9f2e41"],
    )
    get.add_argument("run_id", metavar="<run-id>", help="the run's id or a unique prefix")
    explain = command(
        runs,
        "explain",
        "explain:cli_explain",
        help="why a run exists and what happened: its causal chain from the log",
        usage="<run-id>",
        examples=["ocsched runs explain 0c9f2e41", "ocsched --json runs explain 0c9f2e41"],
    )
    explain.add_argument("run_id", metavar="<run-id>", help="the run's id or a unique prefix")
    output = command(
        runs,
        "output",
        cli_output,
        help="a shell run's stdout or stderr",
        usage="<run-id> [stdout|stderr]",
        examples=["ocsched runs output 0c9f2e41", "ocsched runs output 0c9f2e41 stderr"],
    )
    output.add_argument("run_id", metavar="<run-id>", help="the run's id or a unique prefix")
    output.add_argument("kind", nargs="?", default="stdout", metavar="stdout|stderr")
    command(
        runs,
        "running",
        cli_running,
        help="runs in progress",
        usage="",
        examples=["ocsched runs running"],
    )
    stale = command(
        runs,
        "stale",
        cli_stale,
        help="runs past their timeout, or silent past a threshold",
        usage="[threshold-s]",
        examples=["ocsched runs stale", "ocsched runs stale 300"],
    )
    stale.add_argument("threshold", nargs="?", metavar="threshold-s", help="default 90")
    from .stuck_runs import register_stuck

    register_stuck(runs)


def cli_list(ctx: Context, args: argparse.Namespace) -> None:
    limit = _whole_number(args.limit, "Usage: runs list <job-id> [limit]")
    records = list_runs(ctx, ctx.resolve_id(args.job_id), limit)
    print_rows(ctx.json, records, "No runs", _runs_table)


def _runs_table(records: list[dict]) -> str:
    """At 80 columns every column keeps its time of day: the finish is shown without what
    it shares with the start (the day, the year), the duration in ms/s/min/h."""
    headers = ("ID", "STATUS", timed("STARTED"), "FINISHED", "DURATION", "TRIGGER")
    return render_table([_row(r) for r in records], headers, keep=(0, 2, 3))


def _row(record: dict) -> tuple:
    started = local_time(record["started_at"])
    finished = local_time(record["finished_at"])
    if started and finished and finished[:10] == started[:10]:
        finished = finished[11:]
    elif started and finished and finished[:4] == started[:4]:
        finished = finished[5:]
    return (
        short_id(record["id"]),
        record["status"],
        started,
        finished,
        duration(record["duration_ms"]),
        record["trigger"],
    )


def duration(ms: int | None) -> str | None:
    """`850ms`, `12.3s`, `4m05s`, `2h03m`."""
    if ms is None:
        return None
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def cli_get(ctx: Context, args: argparse.Namespace) -> None:
    print_json(get_run(ctx, ctx.resolve_id(args.run_id, "run")))


def cli_output(ctx: Context, args: argparse.Namespace) -> None:
    kind = args.kind.lower()
    if kind not in ("stdout", "stderr"):
        raise UsageError("Usage: runs output <run-id> [stdout|stderr]")
    result = run_output(ctx, ctx.resolve_id(args.run_id, "run"), kind)
    if ctx.json:
        print_json(result)
    else:
        content = result["content"]
        print(content, end="" if content.endswith("\n") else "\n")


def cli_running(ctx: Context, args: argparse.Namespace) -> None:
    print_rows(ctx.json, running_runs(ctx), "No running runs", _active_table)


def cli_stale(ctx: Context, args: argparse.Namespace) -> None:
    threshold = STALE_THRESHOLD_S
    if args.threshold is not None:
        threshold = _whole_number(args.threshold, "Usage: runs stale [threshold-s]")
    print_rows(ctx.json, stale_runs(ctx, threshold), "No stale runs", _active_table)


def _active_table(records: list[dict]) -> str:
    rows = [
        (short_id(r["id"]), r["job_name"], r["status"], local_time(r["started_at"]))
        for r in records
    ]
    return render_table(rows, ("ID", "JOB", "STATUS", timed("STARTED")), keep=(0, 3))


def _whole_number(text: str, usage: str) -> int:
    number = whole_number(text)
    if number is None:
        raise CommandError(
            f"Expected a positive whole number (at most {MAX_WHOLE_NUMBER}), got: {text}. {usage}"
        )
    return number
