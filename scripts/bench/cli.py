"""CLI benchmark: whole-process wall time of `jobs add` and `jobs list`, and the jobs
projection's rebuild rate against its read+decode floor.

    .venv/bin/python scripts/bench/cli.py [--runs N] [--rebuild-only] [--repeat N]

Targets on the 2-core reference machine: `jobs add` <= 100 ms, `--json jobs list` with
1,000 jobs stored <= 120 ms (medians), rebuild >= 100,000 events/s over 100,000 job events
(10,000 jobs, each updated 9 times, round by round). The floor is what reading and
decoding the same events costs, through the same reader the rebuild uses (`read_after`,
in the same chunks, the cyclic collector paused as during a page), applying nothing; the
rebuild and the floor are measured alternately, `--repeat` times each (medians), so their
ratio compares figures taken seconds apart on a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

OCSCHED = [str(Path(sys.executable).with_name("ocsched"))]


def shell_spec(index: int) -> dict:
    return {
        "name": f"bench job {index:05d}",
        "schedule_cron": "*/5 * * * *",
        "session_target": "shell",
        "payload_message": "true",
        "run_timeout_ms": 60000,
        "origin": "system",
        "delivery_mode": "none",
    }


def timed_runs(args: list[str], env: dict, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return times


def seed_jobs(database: str, count: int) -> None:
    """Store `count` jobs through the library (one save), then project them."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job
    from ocsched.projections.runner import catch_up
    from ocsched.projections.store import ReadModelStore

    settings = Settings(home=Path(database).parent, database=database)
    log = open_event_log(settings)
    meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
    now = datetime.now(UTC)
    jobs = [new_job(shell_spec(i), f"job-{i:06d}", meta, now) for i in range(count)]
    for start in range(0, count, 1000):
        log.save(*jobs[start : start + 1000])
    store = ReadModelStore(settings.read_model_path)
    catch_up(log, store)
    log.close()


def build_job_log(database: str, job_count: int, updates_per_job: int) -> None:
    """Create `job_count` jobs, then update every job `updates_per_job` times, round by
    round, so a job's events lie far apart in the log as they do in real use."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job

    settings = Settings(home=Path(database).parent, database=database)
    log = open_event_log(settings)
    meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
    now = datetime.now(UTC)
    jobs = [new_job(shell_spec(i), f"job-{i:06d}", meta, now) for i in range(job_count)]
    for round_number in range(updates_per_job + 1):
        for job in jobs if round_number else ():
            job.update({"max_retries": round_number}, meta, now)
        for start in range(0, job_count, 500):
            log.save(*jobs[start : start + 500])
    log.close()


def rebuild_rate(database: str) -> tuple[int, float]:
    """One rebuild of the jobs projection from the whole log: events, events/s."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.projections.runner import by_name, rebuild
    from ocsched.projections.store import ReadModelStore

    settings = Settings(home=Path(database).parent, database=database)
    log = open_event_log(settings)
    store = ReadModelStore(settings.read_model_path)
    start = time.perf_counter()
    events = rebuild(log, store, by_name("jobs"))
    elapsed = time.perf_counter() - start
    store.datastore.close()
    log.close()
    return events, events / elapsed


def read_decode_rate(database: str) -> tuple[int, float]:
    """The floor of a rebuild: read and decode every event of the log as the rebuild does,
    apply nothing. Events, events/s."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.projections.runner import by_name
    from ocsched.projections.store import READ_CHUNK

    log = open_event_log(Settings(home=Path(database).parent, database=database))
    topics = by_name("jobs").topics
    events = position = 0
    start = time.perf_counter()
    gc.disable()
    try:
        while chunk := log.read_after(position, READ_CHUNK, topics):
            events += len(chunk)
            position = chunk[-1][0]
    finally:
        gc.enable()
    elapsed = time.perf_counter() - start
    log.close()
    return events, events / elapsed


def rebuild_against_floor(database: str, repeat: int) -> tuple[int, float, float]:
    """Rebuild and floor, alternately, `repeat` times each: events, median rates."""
    rebuilds, floors = [], []
    for _ in range(repeat):
        events, rate = rebuild_rate(database)
        rebuilds.append(rate)
        floors.append(read_decode_rate(database)[1])
    return events, statistics.median(rebuilds), statistics.median(floors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rebuild-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="rebuilds (and floors) to run")
    parser.add_argument("--rebuild-only", action="store_true", help="skip the CLI timings")
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ocsched-bench-")
    rows = []
    try:
        env = {**os.environ, "SCHEDULER_HOME": work, "OCSCHED_ACTOR": "bench"}
        env.pop("SCHEDULER_DB", None)
        # As installed for users: byte-compiled modules (the first run writes them).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if not options.rebuild_only:
            database = os.path.join(work, "ocsched.db")
            add = [*OCSCHED, "jobs", "add", json.dumps(shell_spec(0))]
            subprocess.run(add, env=env, check=True, stdout=subprocess.DEVNULL)  # warm the file
            add_times = timed_runs(add, env, options.runs)
            seed_jobs(database, 1000 - options.runs - 1)
            list_times = timed_runs([*OCSCHED, "--json", "jobs", "list"], env, options.runs)
            rows += [
                ("jobs add (one shell job)", f"{statistics.median(add_times):.0f} ms", "<= 100 ms"),
                (
                    "--json jobs list (1,000 jobs)",
                    f"{statistics.median(list_times):.0f} ms",
                    "<= 120 ms",
                ),
            ]
        rebuild_db = os.path.join(work, "rebuild.db")
        build_job_log(rebuild_db, options.rebuild_events // 10, 9)
        events, rate, floor = rebuild_against_floor(rebuild_db, options.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows += [
        (f"rebuild jobs projection ({events:,} events)", f"{rate:,.0f} events/s", ">= 100,000/s"),
        (
            "  read+decode floor (same events)",
            f"{floor:,.0f} events/s",
            f"rebuild = {rate / floor:.2f} x floor",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'median':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")


if __name__ == "__main__":
    main()
