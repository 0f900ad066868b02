"""Chaos: storage faults against the real daemon.

    .venv/bin/python scripts/chaos/storage_faults.py [--starts 200] [--lock 15] [--disk 15]
        [--jobs 5] [--seed 1] [--only race,lock,disk]

Three scenarios, each on fresh scheduler homes (`scripts/bench/daemon_harness.py`):

* **race**: `--starts` daemon starts on new databases, each with concurrent commands
  (`jobs add` twice, `dispatch status`, `jobs list`) launched at random offsets (0 to
  `--max-offset` s) after the daemon process is spawned, while it creates and catches up its
  read models. Counts daemon exits (before or after its start line) and failed commands.
  Target (issue 9): 200 starts, 0 exits, 0 failed commands.
* **lock**: `--jobs` shell jobs due every second (`* * * * * *`); once each has run, another
  process holds `BEGIN IMMEDIATE` on the database for `--lock` seconds, then releases it.
* **disk**: the same jobs with the database on a small tmpfs (`mount -t tmpfs`, root only;
  skipped with the reason otherwise), filled up while the daemon runs until it reports the
  disk full, kept full for `--disk` seconds, then freed.

For lock and disk it prints, and checks: the daemon still running, never restarted; the
seconds from the release to each job's next `Run.Started` (target: within one period, 1 s,
plus the daemon's own latency); each job's runs after the release; how many events committed
before the fault are gone (target 0); storage errors the daemon logged during the fault (to
show the fault bit); runs not terminal after the daemon stopped (target 0).

Exits 1 when a check fails. Every process it starts is stopped, every home deleted, the
tmpfs unmounted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from daemon_harness import (  # noqa: E402
    OCSCHED,
    BenchHome,
    Daemon,
    print_table,
    read_only,
    seed_jobs,
    shell_spec,
)

PERIOD_S = 1.0
EVERY_SECOND = "* * * * * *"
LATENCY_S = 0.5
"""What the check allows beyond one period: the daemon's own reaction to the release (a
retry's backoff, a catch-up, a timer reload)."""
RUN_COMMAND = "sleep 0.4"
WARM_UP_RUNS = 3
"""Runs each job has started before the fault."""
STARTED_LINE = " started; database "
ACTIVE = ("pending", "queued", "running")

HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
print("released", flush=True)
"""


# The start-up race


def startup_race(
    starts: int, *, seed: int = 1, max_offset: float = 1.2, show: int = 3
) -> dict[str, Any]:
    """`starts` daemon starts on new databases with commands at random offsets."""
    rng = random.Random(seed)
    exits = failed = commands = 0
    examples: list[str] = []
    started = time.monotonic()
    for index in range(starts):
        offsets = [rng.uniform(0, max_offset) for _ in range(4)]
        exited, failures = _one_start(index, offsets)
        commands += 4
        exits += exited is not None
        failed += len(failures)
        if exited is not None and len(examples) < show:
            examples.append(f"start {index}: the daemon exited: {exited}")
        for failure in failures:
            if len(examples) < show:
                examples.append(f"start {index}: {failure}")
    return {
        "starts": starts,
        "exits": exits,
        "commands": commands,
        "failed_commands": failed,
        "examples": examples,
        "seconds": time.monotonic() - started,
    }


def _one_start(index: int, offsets: list[float]) -> tuple[str | None, list[str]]:
    """One daemon start on a new home with four commands at `offsets` seconds after its
    spawn; (how the daemon exited or None, the commands that failed)."""
    failures: list[str] = []
    with BenchHome() as home:
        spec = shell_spec(f"race {index}", schedule_cron="0 0 1 1 *")
        argvs = [
            ["jobs", "add", json.dumps(spec)],
            ["dispatch", "status", "--label", f"race-{index}"],
            ["jobs", "list"],
            ["jobs", "add", json.dumps({**spec, "name": f"race {index} b"})],
        ]
        spawned_at = time.monotonic() + 0.05

        def command(argv: list[str], offset: float) -> None:
            time.sleep(max(0.0, spawned_at + offset - time.monotonic()))
            done = subprocess.run(
                [OCSCHED, *argv], env=home.env, capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:
                line = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
                failures.append(f"{' '.join(argv[:2])} at +{offset:.2f} s: {''.join(line)}")

        threads = [
            threading.Thread(target=command, args=(argv, offset))
            for argv, offset in zip(argvs, offsets, strict=True)
        ]
        for thread in threads:
            thread.start()
        daemon = None
        exited: str | None = None
        try:
            daemon = Daemon(home)
        except RuntimeError as error:
            exited = _last_line(str(error))
        for thread in threads:
            thread.join()
        if daemon is not None:
            time.sleep(0.2)
            code = daemon.process.poll()
            if code is not None:
                exited = f"exit status {code}: {_last_line(daemon.log)}"
            stopped = daemon.stop()
            if exited is None and stopped != 0:
                exited = f"exit status {stopped} on SIGTERM: {_last_line(daemon.log)}"
    return exited, failures


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# A lock held by another process, a full disk


def lock_fault(
    hold_s: float, *, jobs: int = 5, observe_s: float = 4.0, busy_timeout_s: int | None = None
) -> dict[str, Any]:
    """Jobs due every second; another process holds the write lock for `hold_s` s.
    `busy_timeout_s`: the event store's SQLite busy timeout in the daemon
    (`SQLITE_LOCK_TIMEOUT`, default 5 s), below `hold_s` for its writes to fail."""
    with BenchHome() as home:
        if busy_timeout_s is not None:
            home.env["SQLITE_LOCK_TIMEOUT"] = str(busy_timeout_s)

        def fault() -> tuple[float, float]:
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_LOCK, home.database, str(hold_s)],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert holder.stdout is not None
                if holder.stdout.readline().strip() != "locked":
                    raise RuntimeError("the lock holder did not take the lock")
                began = time.time()
                if holder.stdout.readline().strip() != "released":
                    raise RuntimeError("the lock holder did not release the lock")
                return began, time.time()
            finally:
                if holder.poll() is None:
                    holder.kill()
                holder.wait()

        return _fault_scenario(home, fault, jobs=jobs, observe_s=observe_s)


def disk_fault(full_s: float, *, jobs: int = 5, observe_s: float = 4.0) -> dict[str, Any]:
    """Jobs due every second, the database on a small tmpfs filled up for `full_s` s after
    the daemon first reports it full. {"skipped": reason} where no tmpfs can be mounted."""
    mount_point = tempfile.mkdtemp(prefix="ocsched-chaos-disk-")
    try:
        reason = _mount_tmpfs(mount_point, size_mb=16)
        if reason:
            return {"skipped": reason}
        try:
            with BenchHome() as home:
                home.database = os.path.join(mount_point, "ocsched.db")
                home.env["SCHEDULER_DB"] = home.database
                filler = os.path.join(mount_point, "filler")

                def fault() -> tuple[float, float]:
                    began = time.time()
                    _fill(filler)
                    # The daemon writes into the WAL's existing pages until it needs a new
                    # one: wait for its first failed write, then keep the disk full.
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not _storage_errors(home, began):
                        time.sleep(0.1)
                        _fill(filler)
                    time.sleep(full_s)
                    os.remove(filler)
                    return began, time.time()

                return _fault_scenario(home, fault, jobs=jobs, observe_s=observe_s)
        finally:
            _unmount(mount_point)
    finally:
        os.rmdir(mount_point)


def _mount_tmpfs(path: str, *, size_mb: int) -> str | None:
    """Mount a tmpfs of `size_mb` MiB at `path`; the reason when it cannot be."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (run as root, e.g. in a container or VM)"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", path],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}"
    return None


def _unmount(path: str) -> None:
    for _ in range(50):
        if subprocess.run(["umount", path], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", path], capture_output=True)


def _fill(path: str) -> None:
    """Append to `path` until the filesystem has no block left."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(descriptor, chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)


def _fault_scenario(
    home: BenchHome, fault: Callable[[], tuple[float, float]], *, jobs: int, observe_s: float
) -> dict[str, Any]:
    """Seed `jobs` every-second jobs, start a daemon, let each run, apply `fault` (it
    returns when the fault began and ended, epoch seconds), watch what follows."""
    job_ids = [f"every-second-{index}" for index in range(jobs)]
    # Runs that last a while: the fault catches some of them running, so their outcome
    # (`Run.Finished`) is among the saves that fail.
    specs = [
        (job_id, shell_spec(job_id, schedule_cron=EVERY_SECOND, payload_message=RUN_COMMAND))
        for job_id in job_ids
    ]
    seed_jobs(home, specs)
    with Daemon(home) as daemon:
        _wait_for(lambda: min(_started_per_job(home, job_ids, 0).values()) >= WARM_UP_RUNS, 30)
        before = _committed(home)
        began, released = fault()
        _wait_for(lambda: all(_started_per_job(home, job_ids, released).values()), observe_s)
        time.sleep(max(0.0, released + observe_s - time.time()))
        alive = daemon.process.poll() is None
        starts = daemon.log_count(STARTED_LINE)
        errors = _storage_errors(home, began, daemon.log)
        examples = _error_lines(daemon.log, began)
    after = _committed(home)
    first, runs_after = _fires_after(home, job_ids, released, released + observe_s)
    return {
        "jobs": jobs,
        "fault_s": released - began,
        "alive": alive,
        "starts": starts,
        "storage_errors_logged": errors,
        "error_examples": examples,
        "first_fire_after_release_s": first,
        "runs_after_release": runs_after,
        "observed_s": observe_s,
        "events_before": len(before),
        "events_lost": len(before - after),
        "not_terminal": _not_terminal(home),
    }


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _committed(home: BenchHome) -> set[tuple[str, int]]:
    with read_only(home.database) as connection:
        rows = connection.execute("SELECT originator_id, originator_version FROM stored_events")
        return set(rows.fetchall())


def _run_starts(home: BenchHome) -> list[tuple[str, float]]:
    """(job id, epoch seconds) of every `Run.Started` in the log."""
    from ocsched.adapters.event_store import open_event_log

    log = open_event_log(home.settings())
    try:
        topic = "ocsched.domain.run:Run.Started"
        found, position = [], 0
        while True:
            page = log.recorder.select_notifications(
                start=position, limit=1000, topics=[topic], inclusive_of_start=False
            )
            for notification in page:
                event = log.mapper.to_domain_event(notification)
                found.append((event.job_id, event.timestamp.timestamp()))
            if len(page) < 1000:
                return found
            position = page[-1].id
    finally:
        log.close()


def _started_per_job(home: BenchHome, job_ids: list[str], since: float) -> dict[str, int]:
    counts = dict.fromkeys(job_ids, 0)
    for job_id, at in _run_starts(home):
        if at >= since and job_id in counts:
            counts[job_id] += 1
    return counts


def _fires_after(
    home: BenchHome, job_ids: list[str], released: float, until: float
) -> tuple[dict[str, float | None], dict[str, int]]:
    """Each job's seconds from the release to its first run start, and its run starts
    until `until`."""
    first: dict[str, float | None] = dict.fromkeys(job_ids)
    runs = dict.fromkeys(job_ids, 0)
    for job_id, at in _run_starts(home):
        if job_id not in runs or at < released:
            continue
        if at <= until:
            runs[job_id] += 1
        earliest = first[job_id]
        if earliest is None or at - released < earliest:
            first[job_id] = at - released
    return first, runs


def _storage_errors(home: BenchHome, since: float, text: str | None = None) -> int:
    """Lines the daemon logged at WARNING or ERROR since `since` (epoch seconds)."""
    if text is None:
        path = home.path / "daemon.log"
        text = path.read_text() if path.exists() else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(since)))
    return sum(
        line[:19] >= stamp and (" WARNING " in line or " ERROR " in line)
        for line in text.splitlines()
    )


def _error_lines(text: str, since: float, show: int = 4) -> list[str]:
    """The first distinct WARNING/ERROR lines logged since `since`, without timestamps."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(since)))
    found: list[str] = []
    for line in text.splitlines():
        if line[:19] >= stamp and (" WARNING " in line or " ERROR " in line):
            message = line[24:]
            if message not in found:
                found.append(message)
    return found[:show]


def _not_terminal(home: BenchHome) -> int:
    with read_only(home.database) as connection:
        marks = ",".join("?" for _ in ACTIVE)
        row = connection.execute(f"SELECT count(*) FROM runs WHERE status IN ({marks})", ACTIVE)
        return row.fetchone()[0]


# Checks and the report


def failures(name: str, result: dict[str, Any]) -> list[str]:
    """The checks a scenario's figures must pass."""
    if "skipped" in result:
        return []
    found = []
    if name == "race":
        if result["exits"]:
            found.append(f"{result['exits']} daemon exits")
        if result["failed_commands"]:
            found.append(f"{result['failed_commands']} failed commands")
        return found
    if not result["alive"]:
        found.append("the daemon exited")
    if result["starts"] != 1:
        found.append(f"the daemon started {result['starts']} times")
    if not result["storage_errors_logged"]:
        found.append("the daemon logged no storage error: the fault did not bite")
    late = {
        job: first
        for job, first in result["first_fire_after_release_s"].items()
        if first is None or first > PERIOD_S + LATENCY_S
    }
    if late:
        found.append(f"jobs not fired within one period of the release: {late}")
    if result["events_lost"]:
        found.append(f"{result['events_lost']} events committed before the fault are gone")
    if result["not_terminal"]:
        found.append(f"{result['not_terminal']} runs not terminal after the daemon stopped")
    return found


def _sqlite_version() -> str:
    return sqlite3.sqlite_version


def report(name: str, result: dict[str, Any]) -> None:
    if "skipped" in result:
        print(f"{name}: skipped: {result['skipped']}")
        return
    if name == "race":
        rows = [
            ("daemon starts", str(result["starts"]), ""),
            ("daemon exits", str(result["exits"]), "0"),
            ("commands run", str(result["commands"]), ""),
            ("failed commands", str(result["failed_commands"]), "0"),
            ("elapsed", f"{result['seconds']:.0f} s", ""),
        ]
        print(f"race: {result['starts']} starts on new databases, commands at random offsets")
        print_table(rows, "value")
        for example in result["examples"]:
            print(f"  {example}")
        return
    firsts = [v for v in result["first_fire_after_release_s"].values() if v is not None]
    runs = result["runs_after_release"].values()
    rows = [
        ("fault held", f"{result['fault_s']:.1f} s", ""),
        ("storage errors logged", str(result["storage_errors_logged"]), "> 0"),
        ("daemon alive, starts", f"{result['alive']}, {result['starts']}", "True, 1"),
        (
            "first run after release",
            f"max {max(firsts):.2f} s" if len(firsts) == result["jobs"] else "missing",
            f"<= {PERIOD_S + LATENCY_S:.1f} s",
        ),
        (f"runs per job in {result['observed_s']:.0f} s after", f"min {min(runs)}", ""),
        ("events before the fault", str(result["events_before"]), ""),
        ("events lost", str(result["events_lost"]), "0"),
        ("runs not terminal", str(result["not_terminal"]), "0"),
    ]
    print(f"{name}: {result['jobs']} jobs due every second")
    print_table(rows, "value")
    for line in result["error_examples"]:
        print(f"  logged: {line[:200]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=200)
    parser.add_argument("--max-offset", type=float, default=1.2)
    parser.add_argument("--lock", type=float, default=15.0, help="seconds the lock is held")
    parser.add_argument("--disk", type=float, default=15.0, help="seconds the disk stays full")
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--observe", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="race,lock,disk")
    options = parser.parse_args()
    print(f"SQLite {_sqlite_version()}, Python {sys.version.split()[0]}")
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "race": lambda: startup_race(
            options.starts, seed=options.seed, max_offset=options.max_offset
        ),
        "lock": lambda: lock_fault(options.lock, jobs=options.jobs, observe_s=options.observe),
        "disk": lambda: disk_fault(options.disk, jobs=options.jobs, observe_s=options.observe),
    }
    problems = []
    for name in options.only.split(","):
        result = scenarios[name]()
        report(name, result)
        problems += [f"{name}: {problem}" for problem in failures(name, result)]
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
