"""Run commands (spec §5.4): list, get, output, running, stale."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ocsched.projections import views

from .argv import MAX_WHOLE_NUMBER, Argv, whole_number
from .context import Context
from .output import CommandError, UsageError, print_json, render_table, short_id

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
    return {"ok": True, "run_id": run_id, "kind": kind, "file_path": path, "content": content}


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


def cli_list(ctx: Context, args: list[str]) -> None:
    usage = "Usage: runs list <job-id> [limit]"
    job_id, *rest = Argv(args, usage).positionals(1, 2)
    limit = _whole_number(rest[0] if rest else "20", usage)
    records = list_runs(ctx, job_id, limit)
    if ctx.json:
        print_json(records)
    elif not records:
        print("No runs")
    else:
        print(render_table([_row(r) for r in records], RUN_HEADERS))


RUN_HEADERS = ("ID", "STATUS", "STARTED", "FINISHED", "DURATION MS", "TRIGGER")


def _row(record: dict) -> tuple:
    return (
        short_id(record["id"]),
        record["status"],
        record["started_at"],
        record["finished_at"],
        record["duration_ms"],
        record["trigger"],
    )


def cli_get(ctx: Context, args: list[str]) -> None:
    (run_id,) = Argv(args, "Usage: runs get <run-id>").positionals(1, 1)
    print_json(get_run(ctx, run_id))


def cli_output(ctx: Context, args: list[str]) -> None:
    usage = "Usage: runs output <run-id> [stdout|stderr]"
    run_id, *rest = Argv(args, usage).positionals(1, 2)
    kind = (rest[0] if rest else "stdout").lower()
    if kind not in ("stdout", "stderr"):
        raise UsageError(usage)
    result = run_output(ctx, run_id, kind)
    if ctx.json:
        print_json(result)
    else:
        content = result["content"]
        print(content, end="" if content.endswith("\n") else "\n")


def cli_running(ctx: Context, args: list[str]) -> None:
    Argv(args, "Usage: runs running").positionals(0, 0)
    _print_runs(ctx, running_runs(ctx), "No running runs")


def cli_stale(ctx: Context, args: list[str]) -> None:
    usage = "Usage: runs stale [threshold-s]"
    rest = Argv(args, usage).positionals(0, 1)
    threshold = _whole_number(rest[0], usage) if rest else STALE_THRESHOLD_S
    _print_runs(ctx, stale_runs(ctx, threshold), "No stale runs")


def _print_runs(ctx: Context, records: list[dict], empty: str) -> None:
    if ctx.json:
        print_json(records)
    elif not records:
        print(empty)
    else:
        rows = [(short_id(r["id"]), r["job_name"], r["status"], r["started_at"]) for r in records]
        print(render_table(rows, ("ID", "JOB", "STATUS", "STARTED")))


def _whole_number(text: str, usage: str) -> int:
    number = whole_number(text)
    if number is None:
        raise CommandError(
            f"Expected a positive whole number (at most {MAX_WHOLE_NUMBER}), got: {text}. {usage}"
        )
    return number
