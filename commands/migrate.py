"""`ocsched migrate` (spec §28.1): OpenClaw's built-in cron jobs (`jobs.json`) as jobs.

The anchor's mapping: ids kept, a job already present skipped, `every` intervals and `at`
times turned into cron, announce modes without a target downgraded to `none`. Each job is
added through `jobs add`'s own service function, so it is validated and recorded like
any other (`origin` its own, else `system`); a job the validation refuses is reported and
the rest go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocsched.domain.json_text import parse_json

from .argv import command
from .context import Context
from .output import CommandError, print_json

if TYPE_CHECKING:
    import argparse

Warn = Callable[[str], None]


@dataclass
class Migration:
    path: str
    found: int = 0
    imported: int = 0
    skipped: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def jobs_json_path(ctx: Context) -> str:
    """`OPENCLAW_JOBS_JSON`, else `$HOME/.openclaw/cron/jobs.json`."""
    given = ctx.settings.environment.get("OPENCLAW_JOBS_JSON")
    return given or str(ctx.settings.user_home / ".openclaw" / "cron" / "jobs.json")


def cron_from_schedule(schedule: Any, warn: Warn) -> tuple[str, str]:
    """An OpenClaw schedule (`cron`, `every`, `at`) as (cron expression, zone)."""
    if not isinstance(schedule, dict):
        raise ValueError("Cannot read properties of undefined (reading 'kind')")
    kind = schedule.get("kind")
    tz = schedule.get("tz") or "UTC"
    if kind == "cron":
        return str(schedule.get("expr")), tz
    if kind == "every":
        every_ms = _number(schedule.get("everyMs"))
        if every_ms < 60000:
            shown = _js(schedule.get("everyMs"))
            warn(f"  WARN: {shown}ms interval rounded up to 1 minute (cron minimum)")
        minutes = max(1, _round(every_ms / 60000))
        if minutes < 60:
            return f"*/{minutes} * * * *", tz
        hours = max(1, _round(minutes / 60))
        clamped = min(hours, 23)
        if hours > 23:
            warn(
                f"  WARN: {_js(schedule.get('everyMs'))}ms interval exceeds 23 hours;"
                " clamping to */23 hours"
            )
        if minutes % 60:
            warn(
                f"  WARN: {_js(schedule.get('everyMs'))}ms interval ({minutes}min) cannot be"
                " represented exactly in standard cron; approximating to every"
                f" {clamped} hour(s)"
            )
        return f"0 */{clamped} * * *", tz
    if kind == "at":
        at = _moment(schedule.get("at"))
        if at is None:
            return "NaN NaN NaN NaN *", "UTC"
        return f"{at.minute} {at.hour} {at.day} {at.month} *", "UTC"
    raise ValueError(f"Unknown schedule kind: {_js(kind)}")


def migrate(ctx: Context, path: str, warn: Warn) -> Migration:
    """Add each job of `path` not yet present; what happened to each, in order."""
    from ocsched.domain.errors import DomainError
    from ocsched.projections import views

    from .jobs import add_job

    try:
        with open(path, "rb") as source:
            data = parse_json(source.read())
    except FileNotFoundError:
        raise CommandError(f"No jobs.json found at: {path}") from None
    except OSError as error:
        raise CommandError(f"Failed to parse {path}: {error.strerror}") from None
    except ValueError as error:
        raise CommandError(f"Failed to parse {path}: {error}") from None
    jobs = data.get("jobs") if isinstance(data, dict) else None
    jobs = jobs if isinstance(jobs, list) else []
    report = Migration(path=path, found=len(jobs))
    if ctx.json is False:
        print(f"Found {len(jobs)} job(s) in {path}")
    ids = [job["id"] for job in jobs if isinstance(job, dict) and isinstance(job.get("id"), str)]
    connection = ctx.views()
    existing = views.existing_job_ids(connection, ids) if connection is not None else set()
    for job in jobs:
        job = job if isinstance(job, dict) else {}
        name = _js(job.get("name"))
        if isinstance(job.get("id"), str) and job["id"] in existing:
            report.skipped += 1
            report.results.append({"id": job.get("id"), "name": name, "status": "skipped"})
            _say(ctx, f"  SKIP: {name} (already exists)")
            continue
        try:
            cron, tz = cron_from_schedule(job.get("schedule"), warn)
            spec = job_spec(job, cron, tz, warn)
            add_job(ctx, spec)
        except (DomainError, CommandError, ValueError, TypeError) as error:
            report.results.append(
                {"id": job.get("id"), "name": name, "status": "error", "error": str(error)}
            )
            _complain(ctx, f"  ERR: {name}: {error}")
            continue
        report.imported += 1
        report.results.append(
            {"id": job.get("id"), "name": name, "status": "ok", "cron": cron, "tz": tz}
        )
        _say(ctx, f'  OK: {name} -> cron="{cron}" tz={tz}')
    return report


def job_spec(job: dict[str, Any], cron: str, tz: str, warn: Warn) -> dict[str, Any]:
    """The anchor's field mapping (spec §28.1)."""
    delivery = _object(job.get("delivery"))
    payload = _object(job.get("payload"))
    mode = delivery.get("mode") or "announce"
    target = delivery.get("to") or None
    opt_out = None
    if mode in ("announce", "announce-always") and not target:
        warn(
            f"  WARN: {_js(job.get('name'))}: delivery_mode='{mode}' but no delivery_to"
            " configured; downgrading to 'none'"
        )
        mode, opt_out = "none", "migrated: no delivery target configured"
    schedule = _object(job.get("schedule"))
    spec = {
        "name": job.get("name"),
        "enabled": job.get("enabled") is not False,
        "schedule_cron": cron,
        "schedule_tz": tz,
        "session_target": job.get("sessionTarget") or "isolated",
        "agent_id": job.get("agentId") or "main",
        "payload_kind": payload.get("kind") or "agentTurn",
        "payload_message": payload.get("message") or payload.get("text") or "",
        "payload_model": payload.get("model") or None,
        "payload_thinking": payload.get("thinking") or None,
        "payload_timeout_seconds": payload.get("timeoutSeconds") or 120,
        "overlap_policy": "skip",
        "run_timeout_ms": 300000,
        "delivery_mode": mode,
        "delivery_channel": delivery.get("channel") or None,
        "delivery_to": target,
        "delivery_opt_out_reason": opt_out,
        "delete_after_run": schedule.get("kind") == "at",
        "origin": job.get("origin") or "system",
    }
    if job.get("id") is not None:
        spec["id"] = job["id"]
    return spec


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _say(ctx: Context, line: str) -> None:
    if not ctx.json:
        print(line)


def _complain(ctx: Context, line: str) -> None:
    import sys

    if not ctx.json:
        print(line, file=sys.stderr)


def _number(value: Any) -> float:
    """JavaScript's reading of a number field: a missing or odd one is NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return math.nan


def _round(value: float) -> int:
    """`Math.round`: halves go up; NaN stays NaN (then `max(1, NaN)` is NaN in JavaScript,
    which no cron accepts: here 1, the nearest valid reading)."""
    if math.isnan(value) or math.isinf(value):
        return 1
    return math.floor(value + 0.5)


def _moment(value: Any):
    """`new Date(value)` in UTC: ISO text or epoch milliseconds; None when invalid."""
    from datetime import UTC, datetime

    from ocsched.domain.errors import DomainError
    from ocsched.domain.schedule import parse_datetime

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return parse_datetime(value).astimezone(UTC)
        except DomainError:
            return None
    return None


def _js(value: Any) -> str:
    """A value as JavaScript's template literal shows it."""
    if value is None:
        return "undefined"
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


# The command line


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "migrate",
        cli_migrate,
        help="import OpenClaw's cron jobs (jobs.json) as jobs",
        usage="[PATH]",
        description=(
            "Import OpenClaw's built-in cron jobs: $OPENCLAW_JOBS_JSON, else"
            " ~/.openclaw/cron/jobs.json. Ids are kept; a job already present is skipped,"
            " so running it again imports only what is new."
        ),
        examples=[
            "ocsched migrate",
            "OPENCLAW_JOBS_JSON=/backup/jobs.json ocsched migrate",
            "ocsched --json migrate ~/.openclaw/cron/jobs.json",
        ],
    )
    parser.add_argument(
        "path", nargs="?", metavar="PATH", help="the jobs.json (default: see above)"
    )


def cli_migrate(ctx: Context, args: argparse.Namespace) -> None:
    import sys

    path = args.path or jobs_json_path(ctx)
    warnings: list[str] = []

    def warn(line: str) -> None:
        warnings.append(line.strip())
        if not ctx.json:
            print(line, file=sys.stderr)

    report = migrate(ctx, path, warn)
    report.warnings = warnings
    if ctx.json:
        print_json(
            {
                "ok": True,
                "path": report.path,
                "found": report.found,
                "imported": report.imported,
                "skipped": report.skipped,
                "jobs": report.results,
                "warnings": report.warnings,
            }
        )
    else:
        print(f"\nDone: {report.imported} imported, {report.skipped} skipped")
