"""Shared pieces of the reactor benchmarks (`reactor_burst.py`, `reactor_lag.py`,
`reactor_idle.py`): a private scheduler home, the real `ocsched daemon` as a subprocess,
jobs seeded through the library, and the result table.

Everything started here is stopped here: `BenchHome` removes its directory, `Daemon.stop`
sends SIGTERM, waits, and kills on timeout (the daemon's watchdog child then kills whatever
run process groups are left, as it does when a daemon dies).

`OCSCHED_BENCH_DAEMON`, when set, is the command line that starts the daemon instead of
`<venv>/bin/ocsched daemon` (split with shlex), e.g. a wrapper that patches the reactor
in-process to try a change before making it.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OCSCHED = str(Path(sys.executable).with_name("ocsched"))

PROFILED_DAEMON = r"""
import cProfile, sys, time
from ocsched.commands.reactor import writer

main_profile = cProfile.Profile()
writer_profile = cProfile.Profile()
original_write = writer.EventWriter._write

def profiled_write(self, groups):
    # The writer runs in a worker thread, one batch at a time; cProfile only sees the
    # thread that enabled it, so batches get their own profile.
    started = time.perf_counter()
    writer_profile.enable()
    try:
        return original_write(self, groups)
    finally:
        writer_profile.disable()
        elapsed = (time.perf_counter() - started) * 1000
        print(f"bench: writer batch of {len(groups)} saves took {elapsed:.1f} ms",
              file=sys.stderr, flush=True)

writer.EventWriter._write = profiled_write
from ocsched.commands.cli import main
main_profile.enable()
try:
    main(["daemon"])
finally:
    main_profile.disable()
    main_profile.dump_stats(sys.argv[1] + ".loop")
    writer_profile.dump_stats(sys.argv[1] + ".writer")
"""


class BenchHome:
    """A private SCHEDULER_HOME in a temporary directory, deleted on exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ocsched-bench-"))
        self.database = str(self.path / "ocsched.db")
        self.env = {**os.environ, "SCHEDULER_HOME": str(self.path), "OCSCHED_ACTOR": "bench"}
        self.env.pop("SCHEDULER_DB", None)
        # As installed for users: byte-compiled modules.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def __enter__(self) -> BenchHome:
        return self

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def settings(self):
        from ocsched.adapters.settings import Settings

        return Settings(home=self.path, database=self.database)


class Daemon:
    """`ocsched daemon` on a bench home, its log in the home directory.

    `profile`: a path prefix; the daemon then runs under cProfile (a Python wrapper around
    the same entry point) and writes `<prefix>.loop` (the event loop thread) and
    `<prefix>.writer` (the event writer's batches) when it stops.
    """

    def __init__(self, home: BenchHome, *, profile: str | None = None) -> None:
        self.home = home
        self.log_path = home.path / "daemon.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        command = [OCSCHED, "daemon"]
        if os.environ.get("OCSCHED_BENCH_DAEMON"):
            command = shlex.split(os.environ["OCSCHED_BENCH_DAEMON"])
        if profile:
            command = [sys.executable, "-c", PROFILED_DAEMON, profile]
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            command, env=home.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.pid = self.process.pid
        try:
            self.startup_seconds = self._wait_started()
        except BaseException:
            self.stop()
            raise

    def _wait_started(self, timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if " started; database " in self.log:
                return time.perf_counter() - self.started_at
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited early:\n{self.log}")
            time.sleep(0.005)
        raise RuntimeError(f"the daemon did not start within {timeout:.0f} s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def log_count(self, text: str) -> int:
        """How many lines of the daemon's log contain `text`."""
        return sum(text in line for line in self.log.splitlines())

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        finally:
            self._log.close()
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def shell_spec(name: str, **fields: Any) -> dict[str, Any]:
    spec = {
        "name": name,
        "session_target": "shell",
        "payload_message": "true",
        "run_timeout_ms": 60000,
        "origin": "system",
        "delivery_mode": "none",
    }
    spec.update(fields)
    return spec


def at_spec(name: str, due: datetime, **fields: Any) -> dict[str, Any]:
    """A one-shot job as `jobs add --at` makes it (deleted after its run by default)."""
    from ocsched.domain.schedule import to_ts

    fields.setdefault("delete_after_run", 1)
    return shell_spec(name, schedule_kind="at", schedule_at=to_ts(due), **fields)


def seed_jobs(home: BenchHome, specs: Sequence[tuple[str, dict]], batch: int = 1000) -> float:
    """Store jobs `(id, spec)` through the library (`new_job` + `EventLog.save` in batches),
    then project them, as `scripts/bench/cli.py` does. Returns the seconds it took."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job
    from ocsched.projections.runner import catch_up
    from ocsched.projections.store import ReadModelStore

    started = time.perf_counter()
    settings = home.settings()
    log = open_event_log(settings)
    try:
        meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
        now = datetime.now(UTC)
        jobs = [new_job(spec, job_id, meta, now) for job_id, spec in specs]
        for start in range(0, len(jobs), batch):
            log.save(*jobs[start : start + batch])
        store = ReadModelStore(settings.read_model_path)
        catch_up(log, store)
        store.datastore.close()
    finally:
        log.close()
    return time.perf_counter() - started


def run_events(home: BenchHome, run_ids: Iterable[str]) -> dict[str, dict[str, datetime]]:
    """Each run's event timestamps (microseconds), by event name: Scheduled, Started, …"""
    from ocsched.adapters.event_store import open_event_log

    log = open_event_log(home.settings())
    try:
        found: dict[str, dict[str, datetime]] = {}
        for run_id in run_ids:
            found[run_id] = {
                type(event).__qualname__.rsplit(".", 1)[-1]: event.timestamp
                for event in log.events.get(run_id)
            }
        return found
    finally:
        log.close()


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process, all its threads, and of its children it
    has reaped, from `/proc/<pid>/stat` (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return own / TICKS_PER_SECOND, reaped / TICKS_PER_SECOND


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def helpers(pid: int) -> dict[str, int]:
    """The daemon's own child processes, by what they are: its read models' process
    (`commands/reactor/projector.py`) and its watchdog (`adapters/supervisor.py`); a run's
    shell is neither."""
    found = {}
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ocsched.commands.reactor.projector" in command:
            found["read models' process"] = child
        elif b"registering" in command:
            found["watchdog"] = child
    return found


def with_helpers_cpu(pid: int, helper_pids: Iterable[int]) -> tuple[float, float]:
    """`cpu_seconds` of the daemon with its helper processes' own CPU added to its own."""
    own, reaped = cpu_seconds(pid)
    for helper in helper_pids:
        with contextlib.suppress(OSError):
            own += cpu_seconds(helper)[0]
    return own, reaped


def thread_schedstat(pid: int, tid: int | None = None) -> tuple[float, float]:
    """Seconds a thread (default: the process's main thread, the daemon's event loop) has
    spent on a CPU and waiting on a run queue for one, from `/proc/<pid>/task/<tid>/schedstat`
    (nanoseconds; the rest of a span it was blocked: in a system call such as a spawn's vfork
    wait, on a lock, or idle)."""
    fields = Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def threads_on_cpu(pid: int) -> dict[int, float]:
    """Seconds each live thread of a process has spent on a CPU (`schedstat`, nanoseconds:
    fine enough for an idle process, where `/proc/<pid>/stat`'s 10 ms ticks are not)."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            seconds[int(task.name)] = thread_schedstat(pid, int(task.name))[0]
    return seconds


def read_only(database: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)


def poll_pause(remaining: int) -> float:
    """How long to wait before counting the finished runs again, with `remaining` still
    to finish: 5 ms near the end (the end is seen within that), longer while many remain.
    The count scans the runs table (~1 ms at 10,000 rows): polled every 5 ms all along, it
    took a fifth of a core from the daemon it measured, which the floor does not share."""
    return min(0.2, max(0.005, remaining * 0.0002))


def count_finished_runs(connection: sqlite3.Connection) -> int:
    with contextlib.suppress(sqlite3.OperationalError):  # the table may not exist yet
        return connection.execute(
            "SELECT count(*) FROM runs WHERE finished_at IS NOT NULL"
        ).fetchone()[0]
    return 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (`statistics.quantiles`, inclusive): the
    p99 of 50 values lies between the two largest."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return cuts[round(fraction * 1000) - 1]


def print_table(rows: Sequence[tuple[str, str, str]], value_header: str = "median") -> None:
    width = max(len(row[0]) for row in rows)
    value_width = max(14, *(len(row[1]) for row in rows))
    print(f"{'measurement':<{width}}  {value_header:>{value_width}}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {target}")


def run_timeline(events: dict, due_epoch: float, all_finished: float) -> dict[str, float]:
    """Seconds from the due instant to the first/last Scheduled, Started and Finished
    event of the runs, and how long the read model trailed the last Finished."""

    def since_due(name: str, pick) -> float:
        times = [e[name].timestamp() for e in events.values() if name in e]
        return pick(times) - due_epoch if times else math.nan

    finished = [e["Finished"].timestamp() for e in events.values() if "Finished" in e]
    starts = sorted(e["Started"].timestamp() for e in events.values() if "Started" in e)
    return {
        "total": all_finished - due_epoch,
        "first_scheduled": since_due("Scheduled", min),
        "last_scheduled": since_due("Scheduled", max),
        "first_started": since_due("Started", min),
        "last_started": since_due("Started", max),
        # The ramp: how soon a second slot's worth of runs starts (32 slots on 2 cores)
        "started_32": starts[31] - due_epoch if len(starts) > 31 else math.nan,
        "started_64": starts[63] - due_epoch if len(starts) > 63 else math.nan,
        "last_finished": since_due("Finished", max),
        "read_model": all_finished - max(finished) if finished else math.nan,
    }
