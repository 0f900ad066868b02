"""`/metrics`: Prometheus exposition (prometheus_client, imported at the first scrape),
computed from the read models at each scrape by a custom collector, so every value is what
the read models (and the CLI reading them) say at that moment.

Counts of rows are gauges (retention prunes runs, a delivery changes status); histograms
are rebuilt from the rows each time (bucket counts summed by SQLite in one pass).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from ocsched.commands.projections import projection_status
from ocsched.projections import views

from .app import STATE
from .cache import Encoded
from .reads import ReadContext

DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 3600)
"""Due -> start lag: the read models keep whole seconds, so 0.5 counts the runs that started
within the second they were due."""
HOOK_CHANNELS = ("loki", "webhook")
ACTIVE = ("pending", "queued", "running")

STARTED = "(runs.process_id IS NOT NULL OR runs.session_key IS NOT NULL)"
"""A run that started: a process, or an agent turn the gateway accepted."""
LAG_SQL = (
    "SELECT max(0, CAST(strftime('%s', runs.started_at) AS INTEGER)"
    " - CAST(strftime('%s', coalesce(runs.slot, dispatches.scheduled_for)) AS INTEGER)) AS v"
    " FROM runs LEFT JOIN dispatches ON dispatches.id = runs.dispatch_queue_id"
    f" WHERE {STARTED} AND coalesce(runs.slot, dispatches.scheduled_for) IS NOT NULL"
)
DURATION_SQL = "SELECT duration_ms / 1000.0 AS v FROM runs WHERE duration_ms IS NOT NULL"


class ReadModelCollector:
    """One scrape's metrics, read through one worker thread's context."""

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        db = self.ctx.views()
        if db is None:
            return
        runs = GaugeMetricFamily(
            "ocsched_runs",
            "Runs in the runs read model (the newest 100 per job), by job and status",
            labels=["job_id", "status"],
        )
        for row in db.execute("SELECT job_id, status, count(*) AS n FROM runs GROUP BY 1, 2"):
            runs.add_metric([row["job_id"], row["status"]], row["n"])
        yield runs
        yield _histogram(
            db, "ocsched_run_duration_seconds", "Duration of finished runs", DURATION_SQL
        )
        yield _histogram(
            db,
            "ocsched_run_start_lag_seconds",
            "From due (clock slot or dispatch time) to start, of runs that started",
            LAG_SQL,
            LAG_BUCKETS,
        )
        active = GaugeMetricFamily("ocsched_active_runs", "Runs not finished", labels=["status"])
        counts = dict.fromkeys(ACTIVE, 0)
        for row in views.active_runs(db, ACTIVE):
            counts[row["status"]] += 1
        for state, count in counts.items():
            active.add_metric([state], count)
        yield active
        counts_jobs = views.job_counts(db)
        jobs = GaugeMetricFamily("ocsched_jobs", "Jobs, by enabled", labels=["enabled"])
        jobs.add_metric(["1"], counts_jobs["enabled"])
        jobs.add_metric(["0"], counts_jobs["total"] - counts_jobs["enabled"])
        yield jobs
        budgets = views.budgets(db)
        for name, text in (
            ("pending_dispatches", "Dispatches pending or claimed"),
            ("approval_blocked_dispatches", "Dispatches held for an approval"),
            ("overlap_queued_dispatches", "Runs queued behind a busy run"),
            ("pending_approvals", "Approvals waiting for a person"),
        ):
            yield GaugeMetricFamily(f"ocsched_{name}", text, budgets[name])
        yield from _deliveries(db)
        yield _gateway_errors(db)
        lag = GaugeMetricFamily(
            "ocsched_projection_lag_events",
            "Events in the log not yet applied to a read model",
            labels=["projection"],
        )
        head = 0
        for found in projection_status(self.ctx):
            lag.add_metric([found["name"]], found["lag"])
            head = found["head"]
        yield lag
        yield CounterMetricFamily(
            "ocsched_events_appended", "Events appended to the log (its head position)", head
        )


def _histogram(
    db: sqlite3.Connection,
    name: str,
    text: str,
    values_sql: str,
    buckets: tuple[float, ...] = DURATION_BUCKETS,
) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    sums = ", ".join(f"coalesce(sum(v <= {bound}), 0)" for bound in buckets)
    row = list(
        db.execute(f"SELECT {sums}, count(v), coalesce(sum(v), 0) FROM ({values_sql})")
        .fetchone()
        .values()
    )
    counts, total, summed = row[: len(buckets)], row[-2], row[-1]
    pairs = [(repr(float(b)), c) for b, c in zip(buckets, counts, strict=True)]
    return HistogramMetricFamily(name, text, buckets=[*pairs, ("+Inf", total)], sum_value=summed)


def _deliveries(db: sqlite3.Connection) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    by_status = GaugeMetricFamily("ocsched_deliveries", "Deliveries, by status", labels=["status"])
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    for row in db.execute("SELECT status, count(*) AS n FROM deliveries GROUP BY status"):
        counts[row["status"]] = row["n"]
    for status, count in counts.items():
        by_status.add_metric([status], count)
    yield by_status
    yield GaugeMetricFamily(
        "ocsched_delivery_failures",
        "Deliveries given up after their last attempt",
        counts["failed"],
    )


def _gateway_errors(db: sqlite3.Connection) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    errors = GaugeMetricFamily(
        "ocsched_gateway_call_errors",
        "Gateway calls whose last answer was a failure: agent turns that ended in error or"
        " timeout, chat deliveries whose last attempt failed",
        labels=["call"],
    )
    turns = db.execute(
        "SELECT count(*) AS n FROM runs WHERE session_key IS NOT NULL"
        " AND status IN ('error', 'timeout')"
    ).fetchone()["n"]
    marks = ",".join("?" for _ in HOOK_CHANNELS)
    sends = db.execute(
        "SELECT count(*) AS n FROM deliveries WHERE last_error IS NOT NULL"
        f" AND channel NOT IN ({marks})",
        HOOK_CHANNELS,
    ).fetchone()["n"]
    errors.add_metric(["agent"], turns)
    errors.add_metric(["message"], sends)
    return errors


def exposition(ctx: ReadContext) -> Encoded:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadModelCollector(ctx))
    return Encoded(generate_latest(registry), {"Content-Type": CONTENT_TYPE_LATEST})


async def metrics(request: web.Request) -> web.StreamResponse:
    cache = request.app[STATE].cache

    def scrape(ctx: ReadContext) -> Encoded:
        # Every value follows from the read models' positions and the log's head.
        low, total = ctx.positions()
        key = ("/metrics", f"{low}-{total}-{ctx.log.max_position()}")
        return cache.answer(key, lambda: exposition(ctx))

    answer = await request.app[STATE].reads.read(scrape)
    return web.Response(body=answer.body, headers=answer.headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
