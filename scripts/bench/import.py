"""Import benchmark: `ocsched import openclaw-scheduler` of an anchor database with
100,000 runs; wall time and the importing process's peak memory.

    .venv/bin/python scripts/bench/import.py [--runs 100000] [--jobs 100] [--rounds 1]
        [--anchor DIR] [--keep DIR]

The database's schema is made by openclaw-scheduler itself (`openclaw-scheduler jobs
list` on a new file: its own migrations; `ocsched.testing.anchor` finds it, as the tests
do), then filled with plain SQL: `--jobs` shell jobs, `--runs` finished runs spread over
them (ok and error, a summary and stdout each, an idempotency key and its ledger row),
and a few hundred messages. The import runs as a child process (`python -m ocsched`)
into a new home; its time is the wall time of that process, its memory the child's peak
resident set (`os.wait4`'s `ru_maxrss` of that child). A
second import of the same file (nothing new) is timed too: reading, and checking every
id against the log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ocsched.testing.anchor import locate  # noqa: E402


def build(database: Path, jobs: int, runs: int) -> None:
    """An anchor database: its schema by openclaw-scheduler, its rows by SQL."""
    if os.environ.get("OCSCHED_ANCHOR_DIR") is None and ARGS.anchor:
        os.environ["OCSCHED_ANCHOR_DIR"] = ARGS.anchor
    anchor = locate()
    if isinstance(anchor, str):
        sys.exit(f"import bench: {anchor}")
    anchor.cli(database, "jobs", "list")
    start = datetime(2025, 1, 1, tzinfo=UTC)

    def ts(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    job_ids = [str(uuid.uuid4()) for _ in range(jobs)]
    with closing(sqlite3.connect(database)) as db:
        db.executemany(
            "INSERT INTO jobs (id, name, schedule_cron, session_target, payload_kind,"
            " payload_message, run_timeout_ms, delivery_mode, origin, created_at, next_run_at)"
            " VALUES (?, ?, '*/5 * * * *', 'shell', 'shellCommand', 'echo hi', 60000,"
            " 'none', 'system', ?, ?)",
            [(job, f"job {i}", ts(start), ts(start + timedelta(days=400))) for i, job in
             enumerate(job_ids)],
        )  # fmt: skip
        rows, ledger = [], []
        for i in range(runs):
            run_id, job = str(uuid.uuid4()), job_ids[i % jobs]
            began = start + timedelta(minutes=5 * (i // jobs), seconds=i % jobs)
            status = "error" if i % 10 == 0 else "ok"
            key = uuid.uuid4().hex
            rows.append(
                (run_id, job, status, ts(began), ts(began + timedelta(seconds=1)), 1000,
                 f"stdout:\nline {i}", None if status == "ok" else "exit 1", 0 if status ==
                 "ok" else 1, f"line {i}\n", len(f"line {i}\n"), key, ts(began))
            )  # fmt: skip
            ledger.append((key, job, run_id, ts(began), ts(began + timedelta(days=7))))
        db.executemany(
            "INSERT INTO runs (id, job_id, status, started_at, finished_at, duration_ms,"
            " summary, error_message, shell_exit_code, shell_stdout, shell_stdout_bytes,"
            " idempotency_key, dispatched_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        db.executemany(
            "INSERT INTO idempotency_ledger (key, job_id, run_id, claimed_at, expires_at)"
            " VALUES (?,?,?,?,?)",
            ledger,
        )
        db.executemany(
            "INSERT INTO messages (id, from_agent, to_agent, body, created_at)"
            " VALUES (?, 'main', 'ops', ?, ?)",
            [(str(uuid.uuid4()), f"message {i} ✓", ts(start)) for i in range(300)],
        )
        db.commit()


def timed_import(database: Path, home: Path) -> tuple[float, float, str]:
    """(seconds, peak MiB of the child, its last line)."""
    env = {**os.environ, "SCHEDULER_HOME": str(home), "OCSCHED_ACTOR": "bench"}
    env.pop("SCHEDULER_DB", None)
    out = home.parent / "import.out"
    began = time.perf_counter()
    with open(out, "w") as output:
        child = subprocess.Popen(
            [sys.executable, "-m", "ocsched", "import", "openclaw-scheduler", str(database)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        # this child's own resource use (RUSAGE_CHILDREN would be the largest of all
        # children so far, openclaw-scheduler's Node included)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    if child.returncode != 0:
        sys.exit(f"import failed: {text}")
    return seconds, usage.ru_maxrss / 1024, text.strip().splitlines()[-1]


def main() -> None:
    scratch = Path(ARGS.keep or tempfile.mkdtemp(prefix="ocsched-import-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    database = scratch / "scheduler.db"
    if not database.exists():
        began = time.perf_counter()
        build(database, ARGS.jobs, ARGS.runs)
        print(f"built {database}: {ARGS.runs} runs, {ARGS.jobs} jobs in"
              f" {time.perf_counter() - began:.1f} s")  # fmt: skip
    for round_ in range(ARGS.rounds):
        home = scratch / f"home-{round_}"
        shutil.rmtree(home, ignore_errors=True)
        seconds, peak, last = timed_import(database, home)
        print(f"import: {seconds:.1f} s, peak RSS {peak:.0f} MiB ({last.strip()})")
        seconds, peak, last = timed_import(database, home)
        print(f"again (nothing new): {seconds:.1f} s, peak RSS {peak:.0f} MiB")
    if not ARGS.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--anchor", help="openclaw-scheduler's source folder")
    parser.add_argument("--keep", help="build (or reuse) the database in this folder")
    ARGS = parser.parse_args()
    main()
