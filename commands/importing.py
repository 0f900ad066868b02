"""`ocsched import openclaw-scheduler [PATH]`: an openclaw-scheduler database as events.

The database is opened read-only and never changed. Every row the anchor kept (jobs,
runs, the dispatch queue, approvals, delivery aliases, messages, agents, task groups, the
idempotency ledger's releases) becomes the events of an aggregate (`import_anchor.py`),
with origin `import`, the importing actor, and the row's own times. Ids are checked
before anything is written: an id this database's earlier import made is passed over
(importing twice adds only what is new), an id something else made is a clash and the
import is refused, naming it. Then the aggregates are saved in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .argv import command, group
from .context import Context
from .output import CommandError, print_json, progress

if TYPE_CHECKING:
    import argparse

    from ocsched.adapters.anchor_db import AnchorDatabase
    from ocsched.domain.aggregate import Aggregate, EventMeta
    from ocsched.domain.run import Trigger

BATCH = 2000
"""Aggregates saved per transaction: memory stays flat whatever the database's size."""
KINDS = {
    "jobs": "jobs",
    "job_dispatch_queue": "dispatches",
    "approvals": "approvals",
    "runs": "runs",
    "delivery_aliases": "aliases",
    "messages": "messages",
    "agents": "agents",
    "task_tracker": "task groups",
}
"""The tables imported, in the order they are (a dispatch before the run that ends it,
agents after the runs whose turns touch them), and what `ocsched` calls their rows."""
SINGULAR = {
    "jobs": "job",
    "job_dispatch_queue": "dispatch",
    "approvals": "approval",
    "runs": "run",
    "messages": "message",
    "task_tracker": "task group",
}
NAMED = ("delivery_aliases", "agents")
"""Tables whose rows ocsched knows by name: one already defined is kept, not a clash."""
NOT_IMPORTED = {
    "message_receipts": "a message's delivered, read and acknowledged events stand for them",
    "team_tasks": "the daemon maps team messages onto tasks again (gates are not carried over)",
    "team_mailbox_events": "the daemon maps team messages onto tasks again",
}
CLASHES_NAMED = 10
SKIPPED_SHOWN = 50


@dataclass
class Report:
    source: str
    schema_version: int
    fingerprint: str
    imported: Counter[str] = field(default_factory=Counter)
    already_imported: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    not_imported: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, Any] | None = None
    """With `--labels`: the dispatch ledger's path, entries imported and skipped."""

    def skip(self, table: str, row_id: Any, reason: str) -> None:
        self.skipped.append({"table": table, "id": row_id, "reason": reason})

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "source": self.source,
            "schema_version": self.schema_version,
            "fingerprint": self.fingerprint,
            "imported": {kind: self.imported[kind] for kind in KINDS.values()},
            "already_imported": self.already_imported,
            "skipped": self.skipped,
            "not_imported": self.not_imported,
            **({"labels": self.labels} if self.labels is not None else {}),
        }


@dataclass(frozen=True)
class Row:
    table: str
    row_id: str
    aggregate_id: str


def import_cause(fingerprint: str, table: str, row_id: str) -> str:
    return f"import/{fingerprint}/{table}/{row_id}"


def import_openclaw_scheduler(ctx: Context, path: str | None, labels: str | None = None) -> Report:
    """Import the anchor database at `path` (default `<SCHEDULER_HOME>/scheduler.db`), and
    with `labels` its dispatch ledger (`labels.json`, as `dispatch import-labels` does)."""
    from ocsched.adapters.anchor_db import AnchorDatabase, AnchorDatabaseError

    if ctx.read_only:
        raise ctx.refuse_read_only("nothing was imported")
    if labels is not None:
        _check_ledger(labels)
    source_path = path or str(ctx.settings.home / "scheduler.db")
    try:
        source = AnchorDatabase(source_path)
    except AnchorDatabaseError as error:
        raise CommandError(str(error)) from None
    with source:
        try:
            source.check_version()
            report = Report(source.path, source.version, source.fingerprint)
            done = _already_imported(ctx, source, report)
            _import_rows(ctx, source, report, done)
        except AnchorDatabaseError as error:
            raise CommandError(str(error)) from None
    if labels is not None:
        from .dispatch_service import import_labels

        ledger = import_labels(ctx, labels)
        report.labels = {"path": labels, "imported": ledger.imported, "skipped": ledger.skipped}
    return report


def _check_ledger(path: str) -> None:
    """A ledger that cannot be read or is not a JSON object is refused before anything is
    imported (`import_labels` reads it again, after the database)."""
    from ocsched.domain.json_text import parse_json

    try:
        with open(path, "rb") as ledger:
            if not isinstance(parse_json(ledger.read()), dict):
                raise CommandError(f"{path} is not a labels ledger (a JSON object)")
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise CommandError(f"{path} is not valid JSON") from None


def _already_imported(ctx: Context, source: AnchorDatabase, report: Report) -> set[str]:
    """The aggregate ids of rows this database's earlier imports made; refuses the import
    when another id is taken (nothing is written then)."""
    rows = list(_row_ids(source))
    causes = _first_causes(ctx, [row.aggregate_id for row in rows])
    done: set[str] = set()
    clashes: list[str] = []
    ours = import_cause(report.fingerprint, "", "")[:-1]
    for row in rows:
        if row.aggregate_id not in causes:
            continue
        cause = causes[row.aggregate_id] or ""
        if cause == import_cause(report.fingerprint, row.table, row.row_id):
            report.already_imported += 1
        elif cause.startswith(ours):
            report.skip(row.table, row.row_id, "another row of the database has its id")
        elif row.table in NAMED:
            report.skip(row.table, row.row_id, "already defined in ocsched (kept as it is)")
        else:
            clashes.append(f"{SINGULAR.get(row.table, row.table)} {row.row_id}")
        done.add(row.aggregate_id)
    if clashes:
        more = ", …" if len(clashes) > CLASHES_NAMED else ""
        named = ", ".join(clashes[:CLASHES_NAMED]) + more
        raise CommandError(
            f"{len(clashes)} id(s) of {source.path} are already used in this store by"
            f" something else: {named}; nothing was imported"
        )
    return done


def _row_ids(source: AnchorDatabase) -> Iterator[Row]:
    from ocsched.domain.agent import agent_aggregate_id
    from ocsched.domain.delivery import alias_id

    derived: dict[str, Callable[[str], str]] = {
        "delivery_aliases": alias_id,
        "agents": agent_aggregate_id,
    }
    for table in KINDS:
        key = "alias" if table == "delivery_aliases" else "id"
        make = derived.get(table, str)
        for row in source.query(f"SELECT {key} AS id FROM {table}", needs=(table,)):
            if isinstance(row["id"], str) and row["id"]:
                yield Row(table, row["id"], make(row["id"]))


class _Head(msgspec.Struct):
    meta: dict[str, Any]


def _first_causes(ctx: Context, ids: list[str]) -> dict[str, str | None]:
    """Which of `ids` the log already holds, each with its first event's cause."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    recorder = ctx.log.recorder
    found: dict[str, str | None] = {}
    mapper = ctx.log.mapper
    plain = not (mapper.compressor or mapper.cipher)  # states readable as stored
    if isinstance(recorder, SQLiteApplicationRecorder) and plain:
        decode = msgspec.json.Decoder(_Head).decode
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            statement = (
                f"SELECT originator_id, state FROM {recorder.events_table_name}"
                f" WHERE originator_version = 1 AND originator_id IN ({','.join('?' * len(chunk))})"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, chunk)
                for originator_id, state in cursor.fetchall():
                    found[originator_id] = decode(state).meta.get("cause")
        return found
    for aggregate_id in ids:
        stored = recorder.select_events(aggregate_id, lte=1, limit=1)
        if stored:
            event: Any = mapper.to_domain_event(stored[0])
            found[aggregate_id] = event.meta.cause
    return found


def _import_rows(ctx: Context, source: AnchorDatabase, report: Report, done: set[str]) -> None:
    total = sum(source.count(table) for table in KINDS)
    batch: list[Aggregate] = []
    counted = 0

    def save() -> None:
        from .context import ConcurrentChange

        if batch:
            try:
                ctx.save(*batch)
            except ConcurrentChange:
                raise CommandError(
                    "another process recorded some of the same ids while the import ran;"
                    " this batch was not saved (earlier ones were): import again to add the rest"
                ) from None
            for aggregate in batch:
                report.imported[KINDS[_table_of[aggregate.id]]] += 1
            batch.clear()
            _table_of.clear()

    _table_of: dict[str, str] = {}
    with progress(ctx.json, total, "openclaw-scheduler rows") as advance:
        for table, _row, made in _converted(ctx, source, report, done):
            counted += 1
            if made is not None:
                batch.append(made)
                _table_of[made.id] = table
                if len(batch) >= BATCH:
                    save()
            if advance is not None and counted % 200 == 0:
                advance(counted)
        save()
        if advance is not None:
            advance(counted)
    for table, reason in NOT_IMPORTED.items():
        rows = source.count(table)
        if rows:
            report.not_imported.append({"table": table, "rows": rows, "reason": reason})
    orphans = _ledger_orphans(source)
    if orphans:
        reason = "its run is not in the database"
        report.not_imported.append(
            {"table": "idempotency_ledger", "rows": orphans, "reason": reason}
        )


def _converted(
    ctx: Context, source: AnchorDatabase, report: Report, done: set[str]
) -> Iterator[tuple[str, str, Aggregate | None]]:
    """(table, row id, the new aggregate or None) for every row of the imported tables."""
    from ocsched.domain.agent import agent_aggregate_id
    from ocsched.domain.delivery import alias_id

    from . import import_anchor as convert

    now = ctx.now

    def meta(table: str, row_id: str) -> EventMeta:
        return ctx.meta(origin="import", cause=import_cause(report.fingerprint, table, row_id))

    made_ids: set[str] = set()

    def converted(table: str, row_id: str, make: Callable[..., Aggregate], *args: Any, key=""):
        if (key or row_id) in made_ids:  # two rows of the database with one id
            report.skip(table, row_id, "another row of the database has its id")
            return table, row_id, None
        made = _convert(report, table, row_id, key or row_id, done, make, *args, meta, now)
        if made is not None:
            made_ids.add(key or row_id)
        return table, row_id, made

    jobs: set[str] = set()
    for row in source.rows("jobs", "created_at, rowid"):
        made = converted("jobs", row["id"], convert.job, row)
        if made[2] is not None or row["id"] in done:
            jobs.add(row["id"])
        yield made

    approvals = {
        row["dispatch_queue_id"]: row
        for row in source.rows("approvals", "requested_at, rowid")
        if row.get("dispatch_queue_id")
    }
    claims = {
        row["dispatch_queue_id"]: row["id"]
        for row in source.query(
            "SELECT id, dispatch_queue_id FROM runs WHERE dispatch_queue_id IS NOT NULL"
            " AND status NOT IN ('awaiting_approval', 'approved') ORDER BY started_at, rowid",
            needs=("runs",),
        )
    }
    sources: dict[str, str | None] = {}
    kinds: dict[str, Trigger] = {}
    for row in source.query(
        "SELECT q.*, r.retry_count AS retried_count FROM job_dispatch_queue q"
        " LEFT JOIN runs r ON r.id = q.retry_of_run_id ORDER BY q.created_at, q.rowid",
        needs=("job_dispatch_queue", "runs"),
    ):
        sources[row["id"]], kinds[row["id"]] = row.get("source_run_id"), row["dispatch_kind"]
        retries = (row["retried_count"] or 0) + 1 if row["dispatch_kind"] == "retry" else 0
        waiting, claim = approvals.get(row["id"]), claims.get(row["id"])
        make = _of_job(convert.dispatch, jobs)
        yield converted("job_dispatch_queue", row["id"], make, row, waiting, claim, retries)

    placeholders = {
        row["id"]: row.get("triggered_by_run")
        for row in source.query(
            "SELECT id, triggered_by_run FROM runs WHERE status = 'awaiting_approval'",
            needs=("runs",),
        )
    }
    for row in source.rows("approvals", "requested_at, rowid"):
        dispatch_id, run_id = row.get("dispatch_queue_id") or "", row.get("run_id") or ""
        parent = sources.get(dispatch_id) or placeholders.get(run_id)
        yield converted("approvals", row["id"], _of_job(convert.approval, jobs), row, parent)

    for row in source.query(_runs_query(source), needs=("runs",)):
        trigger = convert.trigger_of(row, kinds)
        released = row["key_released_at"]
        yield converted("runs", row["id"], _of_job(convert.run, jobs), row, trigger, released)

    for row in source.rows("delivery_aliases", "created_at, rowid"):
        name = row["alias"]
        yield converted("delivery_aliases", name, convert.alias, row, key=alias_id(name))
    for row in source.rows("messages", "created_at, rowid"):
        yield converted("messages", row["id"], convert.message, row)
    for row in source.rows("agents", "created_at, rowid"):
        key = agent_aggregate_id(row["id"])
        yield converted("agents", row["id"], convert.agent, row, key=key)
    members: dict[str, list[dict[str, Any]]] = {}
    for member in source.rows("task_tracker_agents"):
        members.setdefault(member.get("tracker_id") or "", []).append(member)
    for row in source.rows("task_tracker", "created_at, rowid"):
        group_members = members.get(row["id"], [])
        yield converted("task_tracker", row["id"], convert.task_group, row, group_members)


def _of_job(make: Callable[..., Aggregate], jobs: set[str]) -> Callable[..., Aggregate]:
    """`make` for a row of a job: skipped when its job is not imported."""

    def made(row: dict[str, Any], *args: Any) -> Aggregate:
        if row.get("job_id") not in jobs:
            from .import_anchor import Skip

            raise Skip(f"its job {row.get('job_id')} is not imported")
        return make(row, *args)

    return made


def _runs_query(source: AnchorDatabase) -> str:
    """Runs oldest first (the read model keeps each job's newest), with the time the
    idempotency ledger released each one's key."""
    if "idempotency_ledger" not in source.tables:
        return "SELECT *, NULL AS key_released_at FROM runs ORDER BY started_at, rowid"
    return (
        "SELECT runs.*, l.released_at AS key_released_at FROM runs"
        " LEFT JOIN idempotency_ledger l ON l.key = runs.idempotency_key"
        " AND l.run_id = runs.id AND l.status = 'released'"
        " ORDER BY runs.started_at, runs.rowid"
    )


def _convert(
    report: Report,
    table: str,
    row_id: str,
    key: str,
    done: set[str],
    make: Callable[..., Aggregate],
    *args: Any,
) -> Aggregate | None:
    """`make(*args)`, or None for a row imported before (its aggregate id `key` is
    `done`) or skipped (noted with its reason)."""
    from ocsched.domain.errors import DomainError

    from .import_anchor import Skip

    if key in done:
        return None
    if not isinstance(row_id, str) or not row_id:
        report.skip(table, repr(row_id), "its id is not text")
        return None
    try:
        return make(*args)
    except Skip as skip:
        report.skip(table, row_id, str(skip))
    except (DomainError, TypeError, ValueError, msgspec.ValidationError) as error:
        report.skip(table, row_id, f"not a row ocsched can hold: {error}")
    return None


def _ledger_orphans(source: AnchorDatabase) -> int:
    rows = source.query(
        "SELECT COUNT(*) AS n FROM idempotency_ledger l"
        " WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = l.run_id)",
        needs=("idempotency_ledger", "runs"),
    )
    return next(rows, {"n": 0})["n"]


def anchor_hint(ctx: Context) -> str | None:
    """One line for `jobs list` and `status` when the default store is empty and an
    openclaw-scheduler database sits beside it (`<SCHEDULER_HOME>/scheduler.db`): where it
    is and the command that imports it. None otherwise (a store named by SCHEDULER_DB,
    PostgreSQL, a store with any event)."""
    import os

    settings = ctx.settings
    source = settings.home / "scheduler.db"
    if settings.database != str(settings.home / "ocsched.db") or not source.is_file():
        return None
    if os.path.exists(settings.database):
        connection = ctx.views()
        if (
            connection is not None
            and connection.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone()
        ):
            return None
    return (
        f"This store is empty; openclaw-scheduler's database is at {source}:"
        " import it with `ocsched import openclaw-scheduler`"
    )


# The command line


def register(commands: argparse._SubParsersAction) -> None:
    sources = group(
        commands,
        "import",
        help="bring jobs and their history over from openclaw-scheduler",
        examples=["ocsched import openclaw-scheduler"],
    )
    anchor = command(
        sources,
        "openclaw-scheduler",
        cli_import,
        help="import an openclaw-scheduler database (read-only; again adds only what is new)",
        usage="[PATH] [--labels FILE]",
        examples=[
            "ocsched import openclaw-scheduler",
            "ocsched import openclaw-scheduler ~/.openclaw/scheduler/scheduler.db",
            "ocsched --json import openclaw-scheduler /backups/scheduler.db",
            "ocsched import openclaw-scheduler --labels ~/.openclaw/dispatch/labels.json",
        ],
    )
    anchor.add_argument(
        "--labels",
        metavar="FILE",
        help="its dispatch ledger (labels.json) too, as `dispatch import-labels` imports it",
    )
    anchor.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the database (default: $SCHEDULER_HOME/scheduler.db, ~/.openclaw/scheduler/)",
    )


def cli_import(ctx: Context, args: argparse.Namespace) -> None:
    report = import_openclaw_scheduler(ctx, args.path, args.labels)
    if ctx.json:
        print_json(report.as_json())
        return
    print("\n".join(summary_lines(report)))


def summary_lines(report: Report) -> list[str]:
    lines = [f"Imported from {report.source} (openclaw-scheduler schema {report.schema_version}):"]
    width = max(len(kind) for kind in KINDS.values())
    lines += [f"  {kind.ljust(width)}  {report.imported[kind]}" for kind in KINDS.values()]
    if report.already_imported:
        lines.append(f"Already imported before: {report.already_imported} row(s), left as they are")
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped)} row(s):")
        shown = report.skipped[:SKIPPED_SHOWN]
        lines += [f"  {s['table']} {s['id']}: {s['reason']}" for s in shown]
        if len(report.skipped) > SKIPPED_SHOWN:
            more = len(report.skipped) - SKIPPED_SHOWN
            lines.append(f"  … and {more} more (--json lists every one)")
    for table in report.not_imported:
        lines.append(f"Not imported: {table['rows']} {table['table']} row(s): {table['reason']}")
    if report.labels is not None:
        ledger = report.labels
        lines.append(
            f"Dispatch ledger {ledger['path']}: {ledger['imported']} imported,"
            f" {ledger['skipped']} skipped (imported before, or not entries)"
        )
    return lines
