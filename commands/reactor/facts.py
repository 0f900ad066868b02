"""The daemon's answers to `Facts`: its read models, its repository, its runs.

A burst of due jobs asks the same few questions for every run; the answers that cannot
have changed are not asked of SQLite again. What can change them is either this daemon's
own saves (it says which jobs they touch: `saved`) or other processes' events (the watch
says when they reach the read models: `others_changed`); each is a tick of one counter."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ocsched.domain.reactions.plan import Row
from ocsched.projections import views

IN_CHUNK = 500
"""Ids per `IN (…)` list (SQLite allows 32,766 parameters)."""
ENDING_EVENTS = frozenset({"Deleted", "Disabled"})
"""Job events that only take jobs away: no job gets a parent, an enabled child or a run."""
ENDING_COLUMNS = ("schedule_kind", "delete_after_run")
"""What says that a job's run may delete it (a one-shot job, or `delete_after_run`)."""
KEPT_CHANGES = 20_000
"""Jobs whose last change is remembered; beyond that all are forgotten at once and every
row read before counts as changed (one-shot jobs come and go for as long as the daemon
runs). As many rows read ahead are kept at most."""


class JobRow(dict):
    """A jobs row as read, with the tick at which it was read (`DaemonFacts.current_job`)."""

    __slots__ = ("read_at",)

    def __init__(self, row: Mapping[str, Any] | Iterable[tuple[str, Any]], read_at: int) -> None:
        super().__init__(row)
        self.read_at = read_at


class OwnRuns(dict[str, Row]):
    """This daemon's admitted, unfinished runs (run id -> the job row it runs with),
    indexed by job and by resource pool, so admission looks up a job in constant time."""

    def __init__(self) -> None:
        super().__init__()
        self.by_job: dict[str, dict[str, None]] = {}
        self.by_pool: dict[str, dict[str, None]] = {}

    def __setitem__(self, run_id: str, job: Row) -> None:
        if run_id in self:
            self.pop(run_id)
        super().__setitem__(run_id, job)
        self.by_job.setdefault(job["id"], {})[run_id] = None
        if job.get("resource_pool"):
            self.by_pool.setdefault(job["resource_pool"], {})[run_id] = None

    def setdefault(self, run_id: str, job: Row) -> Row:
        if run_id not in self:
            self[run_id] = job
        return self[run_id]

    def pop(self, run_id: str, *default: Any) -> Any:
        if run_id not in self:
            return default[0] if default else super().pop(run_id)
        job = super().pop(run_id)
        _unindex(self.by_job, job["id"], run_id)
        if job.get("resource_pool"):
            _unindex(self.by_pool, job["resource_pool"], run_id)
        return job

    def __delitem__(self, run_id: str) -> None:
        self.pop(run_id)

    def of_job(self, job_id: str) -> str | None:
        return next(iter(self.by_job.get(job_id, ())), None)

    def in_pool(self, pool: str) -> str | None:
        return next(iter(self.by_pool.get(pool, ())), None)


def _unindex(index: dict[str, dict[str, None]], key: str, run_id: str) -> None:
    runs = index.get(key)
    if runs is not None:
        runs.pop(run_id, None)
        if not runs:
            del index[key]


class DaemonFacts:
    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        load: Callable[[str], Any],
        own_runs: OwnRuns,
        *,
        owner: str = "",
        job_version: Callable[[str], int | None] | None = None,
        job_versions: Callable[[list[str]], dict[str, int | None]] | None = None,
    ) -> None:
        self._db = db
        self._load = load
        self._own_runs = own_runs
        self._owner = owner
        self._job_version = job_version
        self._job_versions = job_versions
        self._tick = 0
        self._others_at = 0
        """The tick at which other processes' events last reached the read models."""
        self._changed_at: dict[str, int] = {}
        """Job id -> the tick of this daemon's last save that changed what `conclude`
        reads of it (its spec or error count: a job event, a run's outcome)."""
        self._parents: tuple[int, frozenset[str]] | None = None
        self._others_active: tuple[int, bool] | None = None
        self._queued_exist: tuple[int, bool] | None = None
        self._prefetched: dict[str, tuple[int, list[str], tuple | None]] = {}
        """Job id -> (tick, column names, its row's values or None) read for due timers (a
        tuple: a burst's rows read ahead take a fifth of the memory of dicts)."""
        self._versions: dict[str, tuple[int, int | None]] = {}
        """Job id -> (tick, version) of jobs fired that their run's end may delete."""

    # Freshness

    def others_changed(self) -> None:
        """Other processes' events have reached the read models."""
        self._tick += 1
        self._others_at = self._tick
        self._versions.clear()
        self._prefetched.clear()

    def changes(self, records: Iterable[Any]) -> list[tuple[str, bool]]:
        """What a plan's records change of the jobs `conclude` reads, taken before their
        events are written: (job id, whether a job may have gained a parent or a child)
        for each job event, and for each run's outcome (its job's error count)."""
        changes: list[tuple[str, bool]] = []
        for record in records:
            for event in record.pending_events:
                kind = type(event).__qualname__
                if kind.startswith("Job."):
                    structural = kind.removeprefix("Job.") not in ENDING_EVENTS
                    changes.append((event.originator_id, structural))
                elif kind == "Run.Finished":
                    changes.append((event.job_id, False))
                elif kind == "Run.Queued":
                    changes.append(("", False))
        return changes

    def saved(self, changes: list[tuple[str, bool]]) -> None:
        """`changes` (from `changes`) were saved, or reached the read models: called for
        both, so a row read in between is read again too."""
        self._tick += 1
        for job_id, structural in changes:
            if not job_id:  # a queued run
                self._queued_exist = None
                continue
            self._changed_at[job_id] = self._tick
            if structural:
                self._parents = None
        if len(self._changed_at) > KEPT_CHANGES:
            self._changed_at.clear()
            self._versions.clear()
            self._others_at = self._tick

    def prefetch(self, job_ids: list[str]) -> None:
        """Read the rows of jobs about to be fired in one query each `IN_CHUNK` (those not
        read since they last changed); `job` answers each once from them. With the rows,
        the versions of those their run's end may delete."""
        tick = self._tick
        wanted = [job_id for job_id in job_ids if not self._prefetched_since_change(job_id)]
        if not wanted:
            return
        if len(self._prefetched) + len(wanted) > KEPT_CHANGES:
            self._prefetched.clear()  # (rows read for timers that never fired)
        columns, rows = _job_values_by_id(self._db(), wanted)
        for job_id in wanted:
            self._prefetched[job_id] = (tick, columns, rows.get(job_id))
        kind, delete_after_run = (columns.index(c) for c in ENDING_COLUMNS)
        ending = [
            job_id
            for job_id, values in rows.items()
            if values[kind] == "at" or values[delete_after_run]
        ]
        if ending and self._job_versions is not None:
            versions = self._job_versions(ending)
            self._versions.update((job_id, (tick, versions.get(job_id))) for job_id in ending)

    def _prefetched_since_change(self, job_id: str) -> bool:
        entry = self._prefetched.get(job_id)
        return entry is not None and self._unchanged(job_id, entry[0])

    # Facts

    def job(self, job_id: str) -> Row | None:
        prefetched = self._prefetched.pop(job_id, None)
        if prefetched is not None and self._unchanged(job_id, prefetched[0]):
            read_at, columns, values = prefetched
            return None if values is None else JobRow(zip(columns, values, strict=True), read_at)
        row = views.job(self._db(), job_id)
        return None if row is None else JobRow(row, self._tick)

    def current_job(self, row: Row) -> Row | None:
        """The job's row now: `row` itself when it was read by `job` and nothing that
        could change it has happened since, else read again."""
        if isinstance(row, JobRow) and self._unchanged(row["id"], row.read_at):
            return row
        return self.job(row["id"])

    def _unchanged(self, job_id: str, tick: int) -> bool:
        """Whether nothing that could change the job's row happened after `tick`."""
        return self._others_at <= tick and self._changed_at.get(job_id, 0) <= tick

    def children(self, job_id: str) -> list[Row]:
        if self._parents is None or self._parents[0] < self._others_at:
            self._parents = (self._tick, _parent_ids(self._db()))
        if job_id not in self._parents[1]:
            return []
        return views.children(self._db(), job_id)

    def dispatch_backlog(self, job_id: str) -> int:
        return views.dispatch_backlog(self._db(), job_id)

    def alias(self, name: str) -> Row | None:
        return views.alias(self._db(), name)

    def pending_approvals(self, job_id: str) -> int:
        return len(views.pending_approvals(self._db(), job_id))

    def queued_runs(self, job_id: str) -> list[Row]:
        """Only this daemon's saves and other processes' events queue a run: while the read
        models hold no queued run, no job has one."""
        if not self._any_queued():
            return []
        return views.queued_runs(self._db(), job_id)

    def queued_runs_in_pool(self, pool: str) -> list[Row]:
        if not self._any_queued():
            return []
        return views.queued_runs(self._db(), pool=pool)

    def _any_queued(self) -> bool:
        if self._queued_exist is None or self._queued_exist[0] < self._others_at:
            self._queued_exist = (self._tick, _queued_exist(self._db()))
        return self._queued_exist[1]

    def active_runs_of(self, job_id: str, pool: str | None) -> list[Row]:
        """Active runs in the read models. Only another process's events make another
        daemon's run active; while the read models hold none, this daemon's own runs
        (known in memory) are all there is."""
        if self._others_active is None or self._others_active[0] < self._others_at:
            self._others_active = (self._tick, _others_active(self._db(), self._owner))
        if not self._others_active[1]:
            return []
        return views.active_runs_of(self._db(), job_id, pool)

    def own_runs(self) -> Mapping[str, Row]:
        return self._own_runs

    def own_run_of(self, job_id: str) -> str | None:
        return self._own_runs.of_job(job_id)

    def own_run_in_pool(self, pool: str) -> str | None:
        return self._own_runs.in_pool(pool)

    def job_version(self, job_id: str) -> int | None:
        cached = self._versions.pop(job_id, None)
        if cached is not None and self._changed_at.get(job_id, 0) <= cached[0]:
            return cached[1]
        if self._job_version is not None:
            return self._job_version(job_id)
        job = self._load(job_id)
        return None if job.deleted else int(job.version)

    def load(self, aggregate_id: str) -> Any:
        return self._load(aggregate_id)


def _job_values_by_id(
    db: sqlite3.Connection, job_ids: list[str]
) -> tuple[list[str], dict[str, tuple]]:
    """The jobs' column names, and each job's row as a tuple of values in their order."""
    rows: dict[str, tuple] = {}
    names: list[str] = []
    cursor = db.cursor()
    cursor.row_factory = None
    for start in range(0, len(job_ids), IN_CHUNK):
        chunk = job_ids[start : start + IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        cursor.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", chunk)
        names = [column[0] for column in cursor.description]
        key = names.index("id")
        for values in cursor:
            rows[values[key]] = values
    return names, rows


def _parent_ids(db: sqlite3.Connection) -> frozenset[str]:
    query = "SELECT DISTINCT parent_id FROM jobs WHERE parent_id IS NOT NULL"
    return frozenset(row["parent_id"] for row in db.execute(query))


def _queued_exist(db: sqlite3.Connection) -> bool:
    query = "SELECT 1 AS found FROM runs WHERE status = 'queued' LIMIT 1"
    return db.execute(query).fetchone() is not None


def _others_active(db: sqlite3.Connection, owner: str) -> bool:
    query = (
        "SELECT 1 AS found FROM runs WHERE status IN ('pending', 'running')"
        " AND coalesce(owner, '') != ? LIMIT 1"
    )
    return db.execute(query, (owner,)).fetchone() is not None
