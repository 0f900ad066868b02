"""Job commands (spec §5.3): the service functions, and the CLI handlers over them."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from .argv import Argv
from .context import ConcurrentChange, Context
from .output import CommandError, UsageError, print_json, render_table, short_id, to_json

ADD_USAGE = (
    "Usage: jobs add <json> [--dry-run] [--watchdog] [--at <datetime>] [--in <duration>]"
    " [--profile <id>]"
)
UPDATE_USAGE = "Usage: jobs update <id> <json> [--dry-run] [--profile <id>]"
VALIDATE_USAGE = "Usage: jobs validate <json>"

if TYPE_CHECKING:
    from ocsched.domain.job import Job


# Service functions: usable from Python, one per behaviour.


def add_job(
    ctx: Context,
    spec: Any,
    *,
    at: str | None = None,
    within: str | None = None,
    profile: str | None = None,
    watchdog: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Validate and create a job; returns the stored record (or the normalized spec)."""
    from ocsched.domain.errors import ValidationError
    from ocsched.domain.validation import validate_job_spec

    if isinstance(spec, dict):
        spec = dict(spec)
        if watchdog:
            _apply_watchdog_defaults(spec)
        if profile is not None:
            spec["auth_profile"] = profile
        if at is not None or within is not None:
            _apply_one_shot(ctx, spec, at, within)
    normalized = validate_job_spec(spec)
    if dry_run:
        return normalized
    from ocsched.domain.job import new_job

    job_id = normalized.get("id") or str(uuid.uuid4())
    if normalized.get("parent_id"):
        _check_parent(ctx, job_id, normalized["parent_id"], existing=False)
    job = new_job(normalized, job_id, ctx.meta(normalized.get("origin")), ctx.now)
    try:
        ctx.save(job)
    except ConcurrentChange:
        raise ValidationError(f"Job id already used: {job_id}") from None
    return get_job(ctx, job_id)


def update_job(
    ctx: Context, job_id: str, patch: Any, *, profile: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    from ocsched.domain.job import revise
    from ocsched.domain.validation import validate_job_spec

    if isinstance(patch, dict) and profile is not None:
        patch = {**patch, "auth_profile": profile}
    job = _load_job(ctx, job_id)
    normalized = validate_job_spec(patch, job.record())
    if dry_run:
        return normalized
    if normalized.get("parent_id"):
        _check_parent(ctx, job_id, normalized["parent_id"], existing=True)
    if revise(job, normalized, ctx.meta(normalized.get("origin")), ctx.now):
        ctx.save(job)
    return get_job(ctx, job_id)


def set_enabled(ctx: Context, job_id: str, enabled: bool) -> None:
    job = _load_job(ctx, job_id)
    if enabled:
        job.enable(ctx.meta(), ctx.now)
    else:
        job.disable(ctx.meta(), ctx.now)
    if job.pending_events:
        ctx.save(job)


def delete_job(ctx: Context, job_id: str) -> None:
    job = _load_job(ctx, job_id)
    job.delete(ctx.meta(), ctx.now)
    ctx.save(job)


def run_now(ctx: Context, job_id: str) -> dict[str, Any]:
    """Queue a durable manual dispatch, due at once; the daemon runs it, even for a
    disabled job, without moving the job's schedule (spec §17.3)."""
    from datetime import timedelta

    from ocsched.domain.dispatch import Dispatch
    from ocsched.domain.schedule import to_ts
    from ocsched.projections import views

    job = _load_job(ctx, job_id)
    if views.dispatch_backlog(ctx.views(), job_id) >= job.spec.max_queued_dispatches:
        raise CommandError(f"Dispatch backlog limit reached for {job.spec.name}")
    dispatch = Dispatch(
        id=str(uuid.uuid4()),
        job_id=job_id,
        kind="manual",
        scheduled_for=to_ts(ctx.now - timedelta(seconds=1)),
        source_run_id=None,
        retry_count=0,
        meta=ctx.meta(),
        timestamp=ctx.now,
    )
    ctx.save(dispatch)
    return {
        "ok": True,
        "job_id": job_id,
        "name": job.spec.name,
        "dispatch_id": dispatch.id,
        "dispatch_kind": "manual",
    }


def cancel_job(ctx: Context, job_id: str, cascade: bool = True) -> list[str]:
    """Disable the job (and its descendants) and mark their active runs cancelled; the
    daemon that runs them kills their process groups when it sees the event."""
    from ocsched.domain.run import Run
    from ocsched.projections import views

    root = _load_job(ctx, job_id)
    ids = [job_id] + (_descendants(ctx, job_id) if cascade else [])
    changed: list[Any] = []
    for current in ids:
        job = root if current == job_id else _load_job(ctx, current)
        job.disable(ctx.meta(), ctx.now)
        changed += [job] if job.pending_events else []
    for row in views.active_runs(ctx.views(), ("pending", "queued", "running")):
        if row["job_id"] in ids:
            run: Run = ctx.log.repository.get(row["id"])
            if not run.is_finished:
                outcome = {"error_message": f"Cancelled by {ctx.actor}"}
                run.finish("cancelled", outcome, {}, ctx.meta(cause=f"cancel/{job_id}"), ctx.now)
                changed.append(run)
    if changed:
        ctx.save(*changed)
    return ids


def _descendants(ctx: Context, job_id: str) -> list[str]:
    """Depth-first, children in creation order."""
    from ocsched.projections import views

    found: list[str] = []
    for child in views.children(ctx.views(), job_id):
        found += [child["id"], *_descendants(ctx, child["id"])]
    return found


def get_job(ctx: Context, job_id: str) -> dict[str, Any]:
    from ocsched.projections import views

    record = views.job(ctx.views(), job_id)
    if record is None:
        raise CommandError(f"Job not found: {job_id}")
    return record


def list_jobs(ctx: Context, job_type: str | None = None) -> list[dict[str, Any]]:
    from ocsched.projections import views

    return views.jobs(ctx.views(), job_type)


def job_tree(ctx: Context) -> list[dict[str, Any]]:
    """Root jobs with their descendants, children in creation order. A job whose parent
    was deleted shows as a root, so no job is hidden."""
    from ocsched.projections import views

    records = views.jobs_in_creation_order(ctx.views())
    ids = {r["id"] for r in records}
    nodes = {r["id"]: _tree_node(r) for r in records}
    roots = []
    for record in records:
        parent = record["parent_id"]
        if parent in ids:
            nodes[parent]["children"].append(nodes[record["id"]])
        else:
            roots.append(nodes[record["id"]])
    return roots


# Helpers of the service functions.


def _load_job(ctx: Context, job_id: str) -> Job:
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.job import Job

    try:
        job: object = ctx.log.repository.get(job_id)
    except AggregateNotFoundError:
        raise CommandError(f"Job not found: {job_id}") from None
    if not isinstance(job, Job) or job.deleted:
        raise CommandError(f"Job not found: {job_id}")
    return job


def _check_parent(ctx: Context, job_id: str, parent_id: str, *, existing: bool) -> None:
    from ocsched.domain.chain import check_parent
    from ocsched.projections import views

    records = {r["id"]: r for r in views.jobs(ctx.views())}

    def parent_of(candidate: str) -> str | None:
        return records[candidate]["parent_id"]

    def children_of(candidate: str) -> list[str]:
        return [r["id"] for r in records.values() if r["parent_id"] == candidate]

    check_parent(job_id, parent_id, parent_of, children_of if existing else None)


def _apply_one_shot(ctx: Context, spec: dict, at: str | None, within: str | None) -> None:
    from ocsched.domain.errors import DomainError
    from ocsched.domain.schedule import parse_datetime, parse_duration, to_ts

    try:
        if within is not None:
            when = ctx.now + parse_duration(within)
        else:
            assert at is not None, "the caller passes --at or --in"
            when = parse_datetime(at)
    except DomainError as error:
        raise CommandError(f"--at/--in error: {error}") from None
    except OverflowError:  # now + the duration is past the year 9999
        raise CommandError(f'--at/--in error: "{within}" ends after the year 9999') from None
    spec["schedule_kind"] = "at"
    spec["schedule_at"] = spec["next_run_at"] = to_ts(when)
    spec.setdefault("delete_after_run", 1)


def _apply_watchdog_defaults(spec: dict) -> None:
    spec["job_type"] = "watchdog"
    spec.setdefault("session_target", "shell")
    spec.setdefault("payload_kind", "shellCommand")
    spec.setdefault("payload_message", spec.get("watchdog_check_cmd") or "true")
    spec.setdefault("delivery_mode", "none")
    spec.setdefault("watchdog_self_destruct", 1)


def _tree_node(record: dict) -> dict[str, Any]:
    return {
        "id": record["id"],
        "name": record["name"],
        "enabled": bool(record["enabled"]),
        "agent_id": record["agent_id"],
        "trigger_on": record["trigger_on"],
        "trigger_delay_s": record["trigger_delay_s"],
        "children": [],
    }


# CLI handlers: parse argv, call one service function, print.


def parse_json_argument(text: str, usage_hint: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError(f"Invalid JSON. Usage: {usage_hint}") from None


def cli_add(ctx: Context, args: list[str]) -> None:
    argv = Argv(args, ADD_USAGE)
    dry_run, watchdog = argv.flag("--dry-run"), argv.flag("--watchdog")
    at, within, profile = argv.option("--at"), argv.option("--in"), argv.option("--profile")
    (text,) = _one_json(argv)
    spec = parse_json_argument(text, 'jobs add \'{"name":"..."}\'')
    result = add_job(
        ctx, spec, at=at, within=within, profile=profile, watchdog=watchdog, dry_run=dry_run
    )
    _print_result(ctx, result, dry_run, "Created")


def cli_validate(ctx: Context, args: list[str]) -> None:
    (text,) = _one_json(Argv(args, VALIDATE_USAGE))
    spec = parse_json_argument(text, 'jobs validate \'{"name":"..."}\'')
    from ocsched.domain.validation import validate_job_spec

    normalized = validate_job_spec(spec)
    if ctx.json:
        print_json({"ok": True, "valid": True, "normalized": normalized})
    else:
        print(f"Valid: {to_json(normalized)}")


def cli_update(ctx: Context, args: list[str]) -> None:
    argv = Argv(args, UPDATE_USAGE)
    dry_run, profile = argv.flag("--dry-run"), argv.option("--profile")
    job_id, text = argv.positionals(2, 2)
    patch = parse_json_argument(text, 'jobs update <id> \'{"key":"value"}\'')
    result = update_job(ctx, job_id, patch, profile=profile, dry_run=dry_run)
    _print_result(ctx, result, dry_run, "Updated")


def cli_get(ctx: Context, args: list[str]) -> None:
    (job_id,) = Argv(args, "Usage: jobs get <id>").positionals(1, 1)
    print_json(get_job(ctx, job_id))


def cli_list(ctx: Context, args: list[str]) -> None:
    argv = Argv(args, "Usage: jobs list [--type standard|watchdog]")
    job_type = argv.option("--type")
    argv.positionals(0, 0)
    records = list_jobs(ctx, job_type)
    if ctx.json:
        print_json(records)
    elif not records:
        print("No jobs")
    else:
        print(render_table([_list_row(r) for r in records], LIST_HEADERS))


LIST_HEADERS = ("ID", "NAME", "TARGET", "SCHEDULE", "ON", "NEXT RUN", "LAST", "ERR")


def _list_row(record: dict) -> tuple:
    if record["parent_id"]:
        schedule = f"after {short_id(record['parent_id'])} {record['trigger_on']}"
    elif record["schedule_kind"] == "at":
        schedule = f"at:{(record['schedule_at'] or '')[:16]}"
    else:
        schedule = record["schedule_cron"]
    return (
        short_id(record["id"]),
        record["name"],
        record["session_target"],
        schedule,
        "yes" if record["enabled"] else "no",
        (record["next_run_at"] or "-")[:16],
        record["last_status"],
        record["consecutive_errors"],
    )


def cli_switch(enabled: bool):
    def handler(ctx: Context, args: list[str]) -> None:
        verb = "enable" if enabled else "disable"
        (job_id,) = Argv(args, f"Usage: jobs {verb} <id>").positionals(1, 1)
        set_enabled(ctx, job_id, enabled)
        if ctx.json:
            print_json({"ok": True, "job_id": job_id, "enabled": enabled})
        else:
            print("Enabled" if enabled else "Disabled")

    return handler


def cli_delete(ctx: Context, args: list[str]) -> None:
    (job_id,) = Argv(args, "Usage: jobs delete <id>").positionals(1, 1)
    delete_job(ctx, job_id)
    if ctx.json:
        print_json({"ok": True, "job_id": job_id, "deleted": True})
    else:
        print("Deleted")


def cli_tree(ctx: Context, args: list[str]) -> None:
    Argv(args, "Usage: jobs tree").positionals(0, 0)
    roots = job_tree(ctx)
    if ctx.json:
        print_json(roots)
        return
    lines: list[str] = []
    _tree_lines(roots, 0, lines)
    print("\n".join(lines) if lines else "No jobs")


def _tree_lines(nodes: list[dict], depth: int, lines: list[str]) -> None:
    for node in nodes:
        line = f"{'  |- ' * depth}{'[on]' if node['enabled'] else '[ ]'} {node['name']}"
        line += f" ({node['agent_id']})"
        if node["trigger_on"]:
            line += f" [on:{node['trigger_on']}]"
        if node["trigger_delay_s"]:
            line += f" (+{node['trigger_delay_s']}s)"
        lines.append(line)
        _tree_lines(node["children"], depth + 1, lines)


def cli_run(ctx: Context, args: list[str]) -> None:
    (job_id,) = Argv(args, "Usage: jobs run <id>").positionals(1, 1)
    result = run_now(ctx, job_id)
    if ctx.json:
        print_json(result)
    else:
        print(f"Scheduled for immediate run: {result['name']} (dispatch: {result['dispatch_id']})")


def cli_cancel(ctx: Context, args: list[str]) -> None:
    argv = Argv(args, "Usage: jobs cancel <id> [--no-cascade]")
    cascade = not argv.flag("--no-cascade")
    (job_id,) = argv.positionals(1, 1)
    cancelled = cancel_job(ctx, job_id, cascade)
    if ctx.json:
        print_json({"ok": True, "cancelled": cancelled})
    else:
        print(f"Cancelled {len(cancelled)} job(s): {', '.join(map(short_id, cancelled))}")


def _one_json(argv: Argv) -> list[str]:
    if not argv.args:
        raise UsageError(argv.usage)
    return argv.positionals(1, 1)


def _print_result(ctx: Context, result: dict, dry_run: bool, verb: str) -> None:
    if dry_run:
        if ctx.json:
            print_json({"ok": True, "dry_run": True, "valid": True, "normalized": result})
        else:
            print(f"Valid (dry run, nothing saved): {to_json(result)}")
    elif ctx.json:
        print_json({"ok": True, "job": result})
    else:
        print(f"{verb}: {to_json(result)}")


enable_handler = cli_switch(True)
disable_handler = cli_switch(False)
