"""Queries over the read models with nothing but sqlite3, so read-only commands stay fast.

`open_views` returns None when the read model is behind the event log; the caller then
catches up through the projection runner and opens again.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from . import NAMES


def open_views(path: str, *, event_table: bool = True) -> sqlite3.Connection | None:
    """A read-only connection, or None when a projection lags (or does not exist yet).

    `event_table`: the events live in the same file, so freshness can be checked here.
    A file that is not a database raises `sqlite3.DatabaseError` (the caller names it).
    """
    if not os.path.exists(path):
        return None
    connection = sqlite3.connect(read_only_uri(path), uri=True, timeout=5)
    connection.row_factory = _dict_row
    if event_table and not _is_fresh(connection):
        connection.close()
        return None
    return connection


# What SQLite answers a read-only connection to a WAL database it cannot open the usual
# way: without write access to the folder it can neither create the -shm index nor take
# the locks that stand for it.
_NEEDS_IMMUTABLE = {"SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT", "SQLITE_CANTOPEN"}


def read_only_uri(path: str) -> str:
    """The URI that opens the database at `path` read-only: `mode=ro`, or, when SQLite
    cannot read it that way (a folder this user may not write, and no -shm file to share),
    `mode=ro&immutable=1` (read as a file nobody changes: no locks, no WAL index; what a
    read-only store is to this user). Raises `sqlite3.DatabaseError` for a file that is not
    a database."""
    uri = f"file:{uri_path(os.path.abspath(path))}?mode=ro"
    probe = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as error:
        if getattr(error, "sqlite_errorname", "") not in _NEEDS_IMMUTABLE:
            raise
        return uri + "&immutable=1"
    finally:
        probe.close()
    return uri


_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def uri_path(path: str) -> str:
    """`urllib.parse.quote(path)` (UTF-8, "/" kept) without importing urllib.parse and
    ipaddress (~3 ms of every command; a test holds them equal)."""
    return "".join(
        chr(byte) if byte in _URI_SAFE else f"%{byte:02X}" for byte in path.encode("utf-8")
    )


def _is_fresh(connection: sqlite3.Connection) -> bool:
    marks = ",".join("?" for _ in NAMES)
    try:
        row = connection.execute(
            "SELECT (SELECT max(rowid) FROM stored_events) AS head,"
            f" (SELECT min(notification_id) FROM tracking WHERE application_name IN ({marks}))"
            " AS position,"
            f" (SELECT count(*) FROM tracking WHERE application_name IN ({marks})) AS tracked",
            (*NAMES, *NAMES),
        ).fetchone()
    except sqlite3.OperationalError:
        return False
    if row["tracked"] != len(NAMES):  # (with an empty log too: tables still being made)
        return False
    return row["head"] is None or row["position"] >= row["head"]


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def job(connection: sqlite3.Connection | None, job_id: str) -> dict[str, Any] | None:
    if connection is None:
        return None
    return connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def jobs(
    connection: sqlite3.Connection | None,
    job_type: str | None = None,
    *,
    after: tuple[str, str] | None = None,
    limit: int = -1,
) -> list[dict]:
    """Jobs by name (then id); `after` a (name, id) and `limit` page through them (the
    `name` index: a page of 10,000 jobs costs what a page of a few does)."""
    if connection is None:
        return []
    clauses, values = [], []
    if job_type:
        clauses.append("coalesce(job_type, 'standard') = ?")
        values.append(job_type)
    if after is not None:
        clauses.append("(name, id) > (?, ?)")
        values += after
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return connection.execute(
        f"SELECT * FROM jobs{where} ORDER BY name, id LIMIT ?", (*values, limit)
    ).fetchall()


def jobs_in_creation_order(connection: sqlite3.Connection | None) -> list[dict]:
    if connection is None:
        return []
    return connection.execute("SELECT * FROM jobs ORDER BY created_at, rowid").fetchall()


def job_counts(connection: sqlite3.Connection | None) -> dict[str, Any]:
    if connection is None:
        return {"total": 0, "enabled": 0, "next": None}
    total, enabled = (
        connection.execute(
            "SELECT count(*) AS total, coalesce(sum(enabled), 0) AS enabled FROM jobs"
        )
        .fetchone()
        .values()
    )
    next_job = connection.execute(
        "SELECT id, name, next_run_at FROM jobs WHERE enabled = 1 AND next_run_at IS NOT NULL"
        " ORDER BY next_run_at LIMIT 1"
    ).fetchone()
    return {"total": total, "enabled": enabled, "next": next_job}


def job_timers(connection: sqlite3.Connection, until: str) -> list[dict]:
    """Enabled root jobs due by `until`: the reactor's clock. Through the `next_run_at`
    index (`+` keeps SQLite from choosing the `parent_id` index for `IS NULL`, a scan of
    every root job: 50 ms with 100,000 jobs, against nothing for the few due)."""
    return connection.execute(
        "SELECT id, next_run_at FROM jobs WHERE next_run_at <= ? AND +enabled = 1"
        " AND +parent_id IS NULL",
        (until,),
    ).fetchall()


def prune_candidates(connection: sqlite3.Connection) -> list[dict]:
    """The jobs a prune rule (spec §26) can apply to: children whose parent is gone, and
    disabled jobs that have run. The others stay in SQLite (a prune pass over 100,000 jobs
    need not hold their rows)."""
    return connection.execute(
        "SELECT * FROM jobs AS j WHERE (j.parent_id IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM jobs AS p WHERE p.id = j.parent_id))"
        " OR (j.enabled = 0 AND j.last_run_at IS NOT NULL)"
    ).fetchall()


def existing_job_ids(connection: sqlite3.Connection, job_ids: Iterable[str]) -> set[str]:
    """Those of the given job ids that exist."""
    wanted = sorted(set(job_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" for _ in chunk)
        rows = connection.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", chunk)
        found.update(row["id"] for row in rows)
    return found


def dispatch_timers(connection: sqlite3.Connection, until: str) -> list[dict]:
    return connection.execute(
        "SELECT id, scheduled_for FROM dispatches WHERE status = 'pending' AND scheduled_for <= ?",
        (until,),
    ).fetchall()


def finished_among(connection: sqlite3.Connection, run_ids: list[str]) -> list[dict]:
    """Those of the given runs whose record is already final."""
    if not run_ids:
        return []
    marks = ",".join("?" for _ in run_ids)
    return connection.execute(
        f"SELECT id, status FROM runs WHERE id IN ({marks})"
        " AND status NOT IN ('pending', 'queued', 'running')",
        run_ids,
    ).fetchall()


def children(connection: sqlite3.Connection | None, job_id: str) -> list[dict]:
    if connection is None:
        return []
    return connection.execute(
        "SELECT * FROM jobs WHERE parent_id = ? ORDER BY created_at, rowid", (job_id,)
    ).fetchall()


def run(connection: sqlite3.Connection | None, run_id: str) -> dict[str, Any] | None:
    if connection is None:
        return None
    return connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()


def runs_of_job(connection: sqlite3.Connection | None, job_id: str, limit: int) -> list[dict]:
    if connection is None:
        return []
    return connection.execute(
        "SELECT * FROM runs WHERE job_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?",
        (job_id, limit),
    ).fetchall()


def active_runs(connection: sqlite3.Connection | None, statuses=("running",)) -> list[dict]:
    """Runs in the given statuses, with their job's name and timeout."""
    if connection is None:
        return []
    marks = ",".join("?" for _ in statuses)
    return connection.execute(
        "SELECT runs.*, jobs.name AS job_name, jobs.run_timeout_ms AS job_timeout_ms,"
        # A watchdog's run is its check command in the shell, whatever its target.
        " CASE WHEN jobs.job_type = 'watchdog' THEN 'shell' ELSE jobs.session_target END"
        " AS session_target, jobs.resource_pool AS resource_pool"
        f" FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id WHERE runs.status IN ({marks})"
        " ORDER BY runs.started_at, runs.rowid",
        statuses,
    ).fetchall()


def dispatch_backlog(connection: sqlite3.Connection | None, job_id: str) -> int:
    if connection is None:
        return 0
    return connection.execute(
        "SELECT count(*) AS n FROM dispatches"
        " WHERE job_id = ? AND status IN ('pending', 'claimed')",
        (job_id,),
    ).fetchone()["n"]


def queued_runs(
    connection: sqlite3.Connection, job_id: str | None = None, *, pool: str | None = None
) -> list[dict]:
    """Queued runs of a job, or of the jobs in a resource pool, oldest first."""
    where, value = ("jobs.resource_pool", pool) if pool else ("runs.job_id", job_id)
    return connection.execute(
        "SELECT runs.* FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id"
        f" WHERE runs.status = 'queued' AND {where} = ? ORDER BY runs.dispatched_at, runs.rowid",
        (value,),
    ).fetchall()


def dispatch(connection: sqlite3.Connection, dispatch_id: str) -> dict[str, Any] | None:
    return connection.execute("SELECT * FROM dispatches WHERE id = ?", (dispatch_id,)).fetchone()


def newest_dispatches(connection: sqlite3.Connection | None, limit: int) -> list[dict]:
    """The jobs' dispatch queue (manual, chain, retry, replay), newest first, with the job's
    name."""
    if connection is None:
        return []
    return connection.execute(
        "SELECT dispatches.*, jobs.name AS job_name FROM dispatches"
        " LEFT JOIN jobs ON jobs.id = dispatches.job_id"
        " ORDER BY dispatches.created_at DESC, dispatches.rowid DESC LIMIT ?",
        (limit,),
    ).fetchall()


def active_runs_of(connection: sqlite3.Connection, job_id: str, pool: str | None) -> list[dict]:
    """Pending or running runs of a job, or of any job in its resource pool."""
    rows = connection.execute(
        "SELECT id, job_id FROM runs WHERE job_id = ? AND status IN ('pending', 'running')",
        (job_id,),
    ).fetchall()
    if pool:
        rows += connection.execute(
            "SELECT runs.id, runs.job_id FROM runs JOIN jobs ON jobs.id = runs.job_id"
            " WHERE jobs.resource_pool = ? AND runs.status IN ('pending', 'running')",
            (pool,),
        ).fetchall()
    return rows


def delivery_timers(connection: sqlite3.Connection, until: str) -> list[dict]:
    return connection.execute(
        "SELECT id, next_attempt_at FROM deliveries WHERE status = 'pending'"
        " AND next_attempt_at <= ?",
        (until,),
    ).fetchall()


def alias(connection: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    return connection.execute("SELECT * FROM delivery_aliases WHERE alias = ?", (name,)).fetchone()


def pending_approvals(connection: sqlite3.Connection | None, job_id: str | None = None) -> list:
    """Pending approvals, oldest first, with their job's name and timeout settings."""
    if connection is None:
        return []
    where, values = "approvals.status = 'pending'", []
    if job_id is not None:
        where += " AND approvals.job_id = ?"
        values.append(job_id)
    return connection.execute(
        "SELECT approvals.*, jobs.name AS job_name, jobs.approval_timeout_s,"
        " jobs.approval_auto FROM approvals LEFT JOIN jobs ON jobs.id = approvals.job_id"
        f" WHERE {where} ORDER BY approvals.requested_at, approvals.rowid",
        values,
    ).fetchall()


def prior_runs(
    connection: sqlite3.Connection,
    job_id: str,
    before_run: str,
    mode: str,
    query: str | None,
    limit: int,
    candidates: int = 50,
) -> list[dict]:
    """Spec §20: finished runs of the job with a summary, newest first (`recent`), or the
    newest `candidates` ranked by BM25 against `query`, an FTS5 MATCH expression (`hybrid`,
    falling back to recent)."""
    recent_sql = (
        "SELECT started_at, summary FROM runs WHERE job_id = ? AND id != ?"
        " AND summary IS NOT NULL AND finished_at IS NOT NULL"
        " ORDER BY started_at DESC, rowid DESC LIMIT ?"
    )
    if mode == "hybrid" and query:
        rows = connection.execute(recent_sql, (job_id, before_run, candidates)).fetchall()
        ranked = _rank_by_bm25(rows, query, limit)
        if ranked:
            return ranked
    return connection.execute(recent_sql, (job_id, before_run, limit)).fetchall()


def _rank_by_bm25(rows: list[dict], query: str, limit: int) -> list[dict]:
    """The rows whose summary matches `query`, best first by SQLite FTS5's BM25 computed
    over these rows alone (ties: the newer first). The index lives only for this call: the
    read model keeps none, which would cost every run its upkeep. A malformed `query`
    raises sqlite3.OperationalError."""
    index = sqlite3.connect(":memory:")
    try:
        index.execute("CREATE VIRTUAL TABLE c USING fts5(summary, tokenize='porter')")
        index.executemany(
            "INSERT INTO c (rowid, summary) VALUES (?, ?)",
            ((position, row["summary"]) for position, row in enumerate(rows)),
        )
        ranked = index.execute(
            "SELECT rowid FROM c WHERE c MATCH ? ORDER BY bm25(c), rowid LIMIT ?",
            (query, limit),
        ).fetchall()
    finally:
        index.close()
    return [rows[position] for (position,) in ranked]


def running_labels(connection: sqlite3.Connection) -> list[dict]:
    """Running dispatches, imported ones too (`imported` 1 is history, never running)."""
    return connection.execute(
        "SELECT * FROM labels WHERE status = 'running' AND imported != 1"
    ).fetchall()


def labels_awaiting_delivery(connection: sqlite3.Connection, purpose: str) -> list[dict]:
    """Dispatches with a delivery target and no delivery yet for `purpose`: the starting
    notice of running ones (`dispatch-start`), the result of finished ones
    (`dispatch-result`, also of dispatches imported while running)."""
    state = "= 'running'" if purpose == "dispatch-start" else "!= 'running'"
    imported = "imported = 0" if purpose == "dispatch-start" else "imported != 1"
    if purpose == "dispatch-result":  # a done dispatch with a check is delivered once checked
        state += " AND (verify_cmd IS NULL OR status != 'done' OR verified IS NOT NULL)"
    return connection.execute(
        f"SELECT * FROM labels WHERE deliver_to IS NOT NULL AND status {state}"
        f" AND {imported} AND coalesce(delivery_mode, 'announce') != 'none' AND NOT EXISTS"
        " (SELECT 1 FROM deliveries WHERE run_id = labels.dispatch_id AND purpose = ?)",
        (purpose,),
    ).fetchall()


def overloaded_labels(connection: sqlite3.Connection) -> list[dict]:
    """Dispatches in error whose error names an overload (the recovery's candidates)."""
    return connection.execute(
        "SELECT * FROM labels WHERE status = 'error' AND imported != 1"
        " AND error LIKE 'FailoverError (529)%'"
    ).fetchall()


def budgets(connection: sqlite3.Connection | None) -> dict[str, int]:
    """The `status` budgets (spec §29.1)."""
    names = (
        "pending_dispatches",
        "approval_blocked_dispatches",
        "overlap_queued_dispatches",
        "pending_approvals",
        "shell_output_bytes",
        "offloaded_shell_runs",
    )
    if connection is None:
        return dict.fromkeys(names, 0)
    row = connection.execute(
        "SELECT"
        " (SELECT count(*) FROM dispatches WHERE status IN ('pending', 'claimed')),"
        " (SELECT count(*) FROM dispatches WHERE status = 'awaiting_approval'),"
        " (SELECT count(*) FROM runs WHERE status = 'queued'),"
        " (SELECT count(*) FROM approvals WHERE status = 'pending'),"
        " (SELECT coalesce(sum(shell_stdout_bytes + shell_stderr_bytes), 0) FROM runs),"
        " (SELECT count(*) FROM runs WHERE shell_stdout_path IS NOT NULL"
        " OR shell_stderr_path IS NOT NULL)"
    ).fetchone()
    return dict(zip(names, row.values(), strict=True))


def labels_to_verify(connection: sqlite3.Connection) -> list[dict]:
    """Done dispatches whose `--verify-cmd` has not run yet."""
    return connection.execute(
        "SELECT * FROM labels WHERE status = 'done' AND verify_cmd IS NOT NULL"
        " AND verified IS NULL AND imported != 1"
    ).fetchall()
