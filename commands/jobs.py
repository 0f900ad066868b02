"""Job commands (spec §5.3): the service functions, and the CLI handlers over them."""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

from ocsched.domain.json_text import parse_json

from .argv import group, lazy_command
from .context import ConcurrentChange, Context
from .output import (
    CommandError,
    local_time,
    print_done,
    print_json,
    print_rows,
    render_table,
    short_id,
    timed,
    to_json,
)

if TYPE_CHECKING:
    import argparse

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

    _load_job(ctx, job_id)  # (one that does not exist is an error at once)
    ids = [job_id] + (_descendants(ctx, job_id) if cascade else [])

    def cancel() -> list[Any]:
        """From the log as it is now: a daemon may be starting one of the runs."""
        changed: list[Any] = []
        for current in ids:
            job = _load_job(ctx, current)
            job.disable(ctx.meta(), ctx.now)
            changed += [job] if job.pending_events else []
        for row in views.active_runs(ctx.views(), ("pending", "queued", "running")):
            if row["job_id"] in ids:
                run: Run = ctx.log.repository.get(row["id"])
                if not run.is_finished:
                    outcome = {"error_message": f"Cancelled by {ctx.actor}"}
                    meta = ctx.meta(cause=f"cancel/{job_id}")
                    run.finish("cancelled", outcome, {}, meta, ctx.now)
                    changed.append(run)
        return changed

    ctx.save_fresh(cancel)
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


def list_jobs(
    ctx: Context,
    job_type: str | None = None,
    *,
    after: tuple[str, str] | None = None,
    limit: int = -1,
) -> list[dict[str, Any]]:
    """All jobs by name, or a page: `limit` of them after the (name, id) `after`."""
    from ocsched.projections import views

    return views.jobs(ctx.views(), job_type, after=after, limit=limit)


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


# The command line: `ocsched jobs …`.

SPEC_EXAMPLE = (
    """'{"name":"backup","schedule_cron":"0 3 * * *","session_target":"shell","""
    """"payload_message":"./backup.sh","run_timeout_ms":600000,"origin":"system","""
    """"delivery_mode":"none"}'"""
)


def register(commands: argparse._SubParsersAction) -> None:
    jobs = group(
        commands,
        "jobs",
        help="create, change, run and inspect jobs",
        examples=[
            f"ocsched jobs add {SPEC_EXAMPLE}",
            "ocsched jobs list",
            "ocsched jobs get 75db1016",
            "ocsched jobs run 75db1016",
        ],
    )
    lazy_command(
        jobs,
        "add",
        cli_add,
        help="validate and create a job",
        usage="<json> [--dry-run] [--watchdog] [--at <datetime>] [--in <duration>]"
        " [--profile <id>]",
        description="Validate a job spec (JSON, the fields of `ocsched schema jobs`) and create"
        " the job.\n--at/--in make it a one-shot job (deleted after its run by default).",
        examples=[
            f"ocsched jobs add {SPEC_EXAMPLE}",
            """ocsched jobs add '{"name":"ping","session_target":"shell","""
            """"payload_message":"echo hi"}' --in 10m""",
            """ocsched jobs add '{"name":"x","schedule_cron":"*/5 * * * *"}' --dry-run""",
        ],
        arguments=_add_arguments,
    )
    lazy_command(
        jobs,
        "validate",
        cli_validate,
        help="check a job spec without saving it",
        usage="<json>",
        examples=["""ocsched jobs validate '{"name":"x","schedule_cron":"0 3 * * *"}'"""],
        arguments=_spec_argument,
    )
    lazy_command(
        jobs,
        "update",
        cli_update,
        help="change some fields of a job",
        usage="<id> <json> [--dry-run] [--profile <id>]",
        examples=[
            """ocsched jobs update 75db1016 '{"schedule_cron":"0 4 * * *"}'""",
            """ocsched jobs update 75db1016 '{"enabled":0}' --dry-run""",
        ],
        arguments=_update_arguments,
    )
    lazy_command(
        jobs,
        "get",
        cli_get,
        help="print a job's record (JSON)",
        usage="<id>",
        examples=["ocsched jobs get 75db1016"],
        arguments=_get_arguments,
    )
    lazy_command(
        jobs,
        "list",
        cli_list,
        help="all jobs, by name",
        usage="[--type standard|watchdog]",
        examples=["ocsched jobs list", "ocsched --json jobs list --type watchdog"],
        arguments=_list_arguments,
    )
    for verb, handler, what in (
        ("enable", enable_handler, "enable a job (its next run is computed from now)"),
        ("disable", disable_handler, "disable a job (it keeps its history)"),
        ("delete", cli_delete, "delete a job (its events stay)"),
        ("run", cli_run, "run a job now through the daemon (also a disabled one)"),
    ):
        lazy_command(
            jobs,
            verb,
            handler,
            help=what,
            usage="<id>",
            examples=[f"ocsched jobs {verb} 75db1016"],
            arguments=_job_id,
        )
    lazy_command(
        jobs,
        "tree",
        cli_tree,
        help="jobs with their chained children",
        usage="",
        examples=["ocsched jobs tree"],
        arguments=_no_arguments,
    )
    lazy_command(
        jobs,
        "cancel",
        cli_cancel,
        help="disable a job and its descendants and stop their runs",
        usage="<id> [--no-cascade]",
        examples=["ocsched jobs cancel 75db1016", "ocsched jobs cancel 75db1016 --no-cascade"],
        arguments=_cancel_arguments,
    )
    from .approvals import register_decisions

    register_decisions(jobs)


# Each subcommand's arguments, added only when its parser is built (`argv.lazy_command`).


def _add_arguments(add: argparse.ArgumentParser) -> None:
    _spec_argument(add)
    add.add_argument("--dry-run", action="store_true", help="validate only; save nothing")
    add.add_argument("--watchdog", action="store_true", help="a watchdog job (its defaults)")
    add.add_argument("--at", metavar="<datetime>", help="run once at this time (UTC unless given)")
    add.add_argument("--in", dest="within", metavar="<duration>", help="run once after 10m, 2h…")
    add.add_argument("--profile", metavar="<id>", help="the auth profile (auth_profile)")


def _spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="<json>", help="the job spec, a JSON object")


def _update_arguments(update: argparse.ArgumentParser) -> None:
    update.add_argument("id", metavar="<id>", help="the job's id or a unique prefix")
    update.add_argument("patch", metavar="<json>", help="the fields to change, a JSON object")
    update.add_argument("--dry-run", action="store_true", help="validate only; save nothing")
    update.add_argument("--profile", metavar="<id>", help="the auth profile (auth_profile)")


def _get_arguments(get: argparse.ArgumentParser) -> None:
    from .as_of import add_as_of

    _job_id(get)
    add_as_of(get)


def _list_arguments(listing: argparse.ArgumentParser) -> None:
    from .as_of import add_as_of

    listing.add_argument("--type", metavar="standard|watchdog", help="only jobs of this type")
    add_as_of(listing)


def _cancel_arguments(cancel: argparse.ArgumentParser) -> None:
    _job_id(cancel)
    cancel.add_argument("--no-cascade", action="store_true", help="leave the descendants alone")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _job_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="<id>", help="the job's id or a unique prefix (4+ chars)")


def parse_json_argument(text: str, usage_hint: str) -> Any:
    try:
        return parse_json(text)
    except ValueError:
        raise CommandError(f"Invalid JSON. Usage: {usage_hint}") from None


def cli_add(ctx: Context, args: argparse.Namespace) -> None:
    spec = parse_json_argument(args.spec, 'jobs add \'{"name":"..."}\'')
    result = add_job(
        ctx,
        spec,
        at=args.at,
        within=args.within,
        profile=args.profile,
        watchdog=args.watchdog,
        dry_run=args.dry_run,
    )
    _print_result(ctx, result, args.dry_run, "Created")


def cli_validate(ctx: Context, args: argparse.Namespace) -> None:
    spec = parse_json_argument(args.spec, 'jobs validate \'{"name":"..."}\'')
    from ocsched.domain.validation import validate_job_spec

    normalized = validate_job_spec(spec)
    print_done(ctx.json, f"Valid: {to_json(normalized)}", valid=True, normalized=normalized)


def cli_update(ctx: Context, args: argparse.Namespace) -> None:
    patch = parse_json_argument(args.patch, 'jobs update <id> \'{"key":"value"}\'')
    job_id = ctx.resolve_id(args.id)
    result = update_job(ctx, job_id, patch, profile=args.profile, dry_run=args.dry_run)
    _print_result(ctx, result, args.dry_run, "Updated")


def cli_get(ctx: Context, args: argparse.Namespace) -> None:
    print_json(get_job(ctx, ctx.resolve_id(args.id)))


def cli_list(ctx: Context, args: argparse.Namespace) -> None:
    records = list_jobs(ctx, args.type)
    print_rows(ctx.json, records, "No jobs", _jobs_table)
    if not records:
        from .importing import anchor_hint

        if hint := anchor_hint(ctx):
            print(hint, file=sys.stderr)


def _jobs_table(records: list[dict]) -> str:
    headers = ("ID", "NAME", "TARGET", "SCHEDULE", "ON", timed("NEXT RUN"), "LAST", "ERR")
    return render_table([_list_row(r) for r in records], headers, keep=(0, 5))


def _list_row(record: dict) -> tuple:
    if record["parent_id"]:
        schedule = f"after {short_id(record['parent_id'])} {record['trigger_on']}"
    elif record["schedule_kind"] == "at":
        schedule = f"at:{local_time(record['schedule_at'], seconds=False) or ''}"  # NEXT RUN's zone
    else:
        schedule = record["schedule_cron"]
    return (
        short_id(record["id"]),
        record["name"],
        record["session_target"],
        schedule,
        "yes" if record["enabled"] else "no",
        local_time(record["next_run_at"], seconds=False),
        record["last_status"],
        record["consecutive_errors"],
    )


def cli_switch(enabled: bool):
    def handler(ctx: Context, args: argparse.Namespace) -> None:
        job_id = ctx.resolve_id(args.id)
        set_enabled(ctx, job_id, enabled)
        line = "Enabled" if enabled else "Disabled"
        print_done(ctx.json, line, job_id=job_id, enabled=enabled)

    return handler


def cli_delete(ctx: Context, args: argparse.Namespace) -> None:
    job_id = ctx.resolve_id(args.id)
    delete_job(ctx, job_id)
    print_done(ctx.json, "Deleted", job_id=job_id, deleted=True)


def cli_tree(ctx: Context, args: argparse.Namespace) -> None:
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


def cli_run(ctx: Context, args: argparse.Namespace) -> None:
    result = run_now(ctx, ctx.resolve_id(args.id))
    line = f"Scheduled for immediate run: {result['name']} (dispatch: {result['dispatch_id']})"
    print_done(ctx.json, line, **{k: v for k, v in result.items() if k != "ok"})


def cli_cancel(ctx: Context, args: argparse.Namespace) -> None:
    cancelled = cancel_job(ctx, ctx.resolve_id(args.id), not args.no_cascade)
    line = f"Cancelled {len(cancelled)} job(s): {', '.join(map(short_id, cancelled))}"
    print_done(ctx.json, line, cancelled=cancelled)


def _print_result(ctx: Context, result: dict, dry_run: bool, verb: str) -> None:
    if dry_run:
        line = f"Valid (dry run, nothing saved): {to_json(result)}"
        print_done(ctx.json, line, dry_run=True, valid=True, normalized=result)
    else:
        print_done(ctx.json, f"{verb}: {to_json(result)}", job=result)


enable_handler = cli_switch(True)
disable_handler = cli_switch(False)
