"""The audit and replay commands over a large log: `--as-of` (a first answer, the same
moment again, a later moment built on the first's store), `export`, `replay`, `projections
verify` and a filtered `events tail`, each as a process, as a user runs it.

    .venv/bin/python scripts/bench/audit_replay.py [--jobs 10000] [--keep DIR]

The log: `--jobs` shell jobs created at 2026-12-01 00:00 UTC, then each disabled and
enabled in turn, one round an hour, nine rounds (10 events a job: 100,000 with the
default), saved through the library in batches of 1,000 and projected. The live `--json
jobs list` is timed beside the `--as-of` figures (it prints every job either way).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

OCSCHED = [sys.executable, "-m", "ocsched"]
START = datetime(2026, 12, 1, tzinfo=UTC)


def fill(home: Path, count: int) -> int:
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job
    from ocsched.projections.runner import catch_up
    from ocsched.projections.store import ReadModelStore

    sys.path.insert(0, str(Path(__file__).parent))
    from cli import shell_spec

    settings = Settings(home=home, database=str(home / "ocsched.db"))
    log = open_event_log(settings)
    meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
    jobs = [new_job(shell_spec(i), f"job-{i:06d}", meta, START) for i in range(count)]
    for hour in range(10):
        for job in jobs if hour else ():
            switch = job.disable if hour % 2 else job.enable
            switch(meta, START + timedelta(hours=hour))
        for first in range(0, count, 1000):
            log.save(*jobs[first : first + 1000])
    catch_up(log, ReadModelStore(settings.read_model_path))
    events = log.max_position()
    log.close()
    return events


def timed(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([*OCSCHED, *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keep", metavar="DIR", help="build the store here and keep it")
    options = parser.parse_args()
    folder = Path(options.keep or tempfile.mkdtemp(prefix="ocsched-bench-"))
    home = folder / "home"
    try:
        started = time.perf_counter()
        events = fill(home, options.jobs)
        print(f"log: {events} events ({time.perf_counter() - started:.1f} s to fill)")
        env = {**os.environ, "SCHEDULER_HOME": str(home)}
        env.pop("SCHEDULER_DB", None)
        at = {hour: (START + timedelta(hours=hour, minutes=30)).isoformat() for hour in (4, 6)}
        rows = [
            ("live --json jobs list", timed(env, "--json", "jobs", "list")),
            ("--as-of 04:30, first", timed(env, "--json", "jobs", "list", "--as-of", at[4])),
            ("--as-of 04:30, again", timed(env, "--json", "jobs", "list", "--as-of", at[4])),
            (
                "--as-of 06:30 (from 04:30's)",
                timed(env, "--json", "jobs", "list", "--as-of", at[6]),
            ),
        ]
        export = folder / "log.jsonl"
        with export.open("wb") as out:
            started = time.perf_counter()
            subprocess.run([*OCSCHED, "export"], env=env, check=True, stdout=out)
            rows.append(("export", time.perf_counter() - started))
        shutil.rmtree(folder / "replayed", ignore_errors=True)
        rows.append(
            ("replay", timed(env, "replay", str(export), "--into", str(folder / "replayed")))
        )
        rows.append(("projections verify", timed(env, "projections", "verify")))
        rows.append(
            (
                "events tail --type Job.Created -n 1",
                timed(env, "events", "tail", "--type", "Job.Created", "-n", "1"),
            )
        )
        whole_log = ("first", "export", "replay", "verify", "events")
        for name, seconds in rows:
            rate = (
                f"  ({events / seconds:,.0f} events/s)" if any(w in name for w in whole_log) else ""
            )
            print(f"{name:40s} {seconds:6.2f} s{rate}")
    finally:
        if not options.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
