"""Context retrieval (spec §20) over a real runs read model: `hybrid` ranks the job's
newest candidates by BM25 at prompt time, `recent` and every fallback take the newest."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import pytest

from ocsched.domain.retrieval import match_expression
from ocsched.projections import runs, views
from ocsched.projections.store import ReadModelStore

QUERY = match_expression("Check the database backups")


@pytest.fixture
def read_model(tmp_path) -> Iterator[sqlite3.Connection]:
    """Finished runs of job-1, oldest first, plus runs that are never candidates."""
    path = str(tmp_path / "read.db")
    store = ReadModelStore(path)
    store.ensure_tables(runs.projection)
    store.datastore.close()
    rows = [
        ("run-1", "job-1", "2026-12-01 08:00:00", "database backups completed, database ok"),
        ("run-2", "job-1", "2026-12-02 08:00:00", "the weather was sunny"),
        ("run-3", "job-1", "2026-12-03 08:00:00", "backups skipped"),
        ("run-4", "job-1", "2026-12-04 08:00:00", "lunch menu"),
        ("run-5", "job-2", "2026-12-04 09:00:00", "database backups database backups"),
    ]
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(
            "INSERT INTO runs (id, job_id, started_at, finished_at, summary)"
            " VALUES (?, ?, ?, ?, ?)",
            [(id, job, started, started, summary) for id, job, started, summary in rows],
        )
        connection.execute(  # still running: no candidate
            "INSERT INTO runs (id, job_id, started_at, summary)"
            " VALUES ('run-6', 'job-1', '2026-12-05 08:00:00', 'database backups')"
        )
    connection = views.open_views(path, event_table=False)
    assert connection is not None
    yield connection
    connection.close()


def summaries(rows: list[dict]) -> list[str]:
    return [row["summary"] for row in rows]


def test_hybrid_puts_the_better_matching_summary_first(read_model):
    ranked = views.prior_runs(read_model, "job-1", "run-now", "hybrid", QUERY, 5)
    assert summaries(ranked) == ["database backups completed, database ok", "backups skipped"]
    assert ranked[0]["started_at"] == "2026-12-01 08:00:00"


def test_hybrid_ranks_only_the_newest_candidates(read_model):
    ranked = views.prior_runs(read_model, "job-1", "run-now", "hybrid", QUERY, 5, candidates=2)
    assert summaries(ranked) == ["backups skipped"]


def test_hybrid_without_a_match_falls_back_to_the_newest(read_model):
    query = match_expression("quarterly invoices")
    found = views.prior_runs(read_model, "job-1", "run-now", "hybrid", query, 2)
    assert summaries(found) == ["lunch menu", "backups skipped"]
    assert found == views.prior_runs(read_model, "job-1", "run-now", "recent", None, 2)


def test_a_query_of_only_punctuation_falls_back_to_the_newest(read_model):
    query = match_expression('"?!" -- (*) ...')
    found = views.prior_runs(read_model, "job-1", "run-4", "hybrid", query, 2)
    assert summaries(found) == ["backups skipped", "the weather was sunny"]


def test_a_malformed_match_expression_raises_what_the_reactor_catches(read_model):
    with pytest.raises(sqlite3.Error):  # commands/reactor/handlers.py `_retrieval`
        views.prior_runs(read_model, "job-1", "run-now", "hybrid", '"unbalanced', 2)
