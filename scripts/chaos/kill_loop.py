"""Chaos: kill -9 the daemon at random points, start-up bursts included, restart it at once.

    .venv/bin/python scripts/chaos/kill_loop.py [--kills 200] [--burst 50]
        [--burst-share 0.5] [--burst-window 0.6] [--max-delay 2.5] [--sleep 3.0]
        [--seed 9] [--max-settle 300] [--orphan-check 0.3]

A daemon on a temporary home (`scripts/bench/daemon_harness.py`) is killed with SIGKILL
`--kills` times and started again at once. Before a share of the starts (`--burst-share`)
`--burst` one-shot shell jobs are seeded due at an instant already past, so the daemon
meets them as a start-up burst, and it is killed `uniform(0, --burst-window)` s after it
logged its start; the other times `uniform(0, --max-delay)` s after it, wherever it is.
Jobs are at-least-once, so a crashed run is replayed. Each job's command records its side
effect, holding a lock while it runs (the lock stays held by whatever the command left
running, until the last such process is gone):

    exec 9>>locks/<job>; if flock -n 9; then echo start…; sleep S; echo end…;
    else echo overlap…; fi                                   (>> effects.log)

with S drawn per job from 0.3 to `--sleep` s: some commands end within a daemon's life,
others outlive a restart (what a replay beside an orphan needs to show).

After the kills a last daemon runs until every run is terminal, no dispatch is pending and
every job has run to `ok`; it is stopped with SIGTERM, then `ocsched projections rebuild`
runs. Printed, and checked:

* orphans: processes of the job commands (found by a marker in their environment, naming
  the daemon that started them; zombies do not count) of a killed daemon still alive
  `--orphan-check` s after the kill or once the next daemon logged its start, and any
  left after the final stop (target 0);
* runs without a terminal state after the final stop (target 0);
* slots fired twice: clock runs of one job and slot, or one run id executed twice in the
  side-effect log (target 0);
* side effects running twice at the same time: an execution that found its job's lock
  held, or overlapping start/end intervals of one job (target 0);
* jobs whose side effect never completed (target 0);
* `projections rebuild` gives the same read-model tables, row for row;
* kills inside a start-up burst (the killed daemon had not recorded the start of every run
  of its burst), and kills that left a run scheduled with no recorded start;
* tracebacks in the daemons' logs; elapsed time.

Linux only (/proc). The script makes itself the child subreaper while it runs, so what a
killed daemon leaves is reparented to it and reaped (in a container whose PID 1 does not
reap, zombies would pile up). Exits 1 when a check fails. Every process it starts is
stopped, the home deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from daemon_harness import (  # noqa: E402
    OCSCHED,
    BenchHome,
    Daemon,
    at_spec,
    print_table,
    read_only,
    seed_jobs,
)

from ocsched.adapters.processes import processes_with_env  # noqa: E402

MARK_ENV = "OCSCHED_CHAOS_KILL_LOOP"
"""`<token>:<daemon number>` in each daemon's environment, inherited by its runs."""
PR_SET_CHILD_SUBREAPER = 36
IDENTITY = re.compile(r"ocsched daemon (\S+) started; database ")


class ChildReaper:
    """This process as the child subreaper (Linux): orphans of a killed daemon become its
    children, and `reap()` collects the ones that ended, except the daemons it runs itself
    (their `Popen` waits for them)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.on = self.libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        self.keep: set[int] = set()

    def reap(self) -> None:
        me = os.getpid()
        for pid in _pids():
            if pid in self.keep:
                continue
            fields = _stat(pid)
            if fields and fields[0] == "Z" and int(fields[1]) == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def close(self) -> None:
        if self.on:
            self.libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        self.reap()


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> list[str]:
    """State, ppid, pgrp, … of /proc/<pid>/stat; [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def job_command(job_id: str, home: Path, sleep: float) -> str:
    locks, effects = home / "locks" / job_id, home / "effects.log"
    fields = f"{job_id} ${{OCSCHED_RUN_ID:--}} $$ $EPOCHREALTIME"
    return (
        f"exec 9>>'{locks}'; if flock -n 9; then echo \"start {fields}\" >> '{effects}';"
        f" sleep {sleep}; echo \"end {fields}\" >> '{effects}';"
        f" else echo \"overlap {fields}\" >> '{effects}'; fi"
    )


def seed_burst(
    home: BenchHome, iteration: int, burst: int, sleep: float, rng: random.Random
) -> list[str]:
    due = datetime.now(UTC) - timedelta(seconds=1)
    specs = []
    for index in range(burst):
        job_id = f"k{iteration:04d}-{index:03d}"
        command = job_command(job_id, home.path, round(rng.uniform(0.3, sleep), 2))
        spec = at_spec(job_id, due, payload_message=command, delivery_guarantee="at-least-once")
        specs.append((job_id, spec))
    seed_jobs(home, specs)
    return [job_id for job_id, _ in specs]


def marked_processes(token: str) -> dict[int, tuple[int, str, str]]:
    """Live processes carrying this loop's marker: pid -> (daemon number, kind), kind
    `job` for the runs' processes, `ocsched` for a daemon or its watchdog; and its command
    line."""
    found = {}
    for pid, value in processes_with_env(MARK_ENV).items():
        mark, _, number = value.partition(":")
        if mark != token or not number.isdigit():
            continue
        argv = _cmdline(pid) or [""]
        kind = "ocsched" if "python" in os.path.basename(argv[0]) or "ocsched" in argv[0] else "job"
        found[pid] = (int(number), kind, " ".join(argv)[:80])
    return found


def read_runs(database: str) -> list[dict[str, Any]]:
    connection = read_only(database)
    connection.row_factory = sqlite3.Row
    try:
        columns = "id, job_id, status, trigger, slot, finished_at, process_id, owner, replay_of"
        return [dict(row) for row in connection.execute(f"SELECT {columns} FROM runs")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        connection.close()


def pending_dispatches(database: str) -> int:
    connection = read_only(database)
    try:
        return connection.execute(
            "SELECT count(*) FROM dispatches WHERE status = 'pending'"
        ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def settled(runs: list[dict[str, Any]], jobs: set[str], database: str) -> bool:
    if any(run["finished_at"] is None for run in runs):
        return False
    if {run["job_id"] for run in runs if run["status"] == "ok"} < jobs:
        return False
    return pending_dispatches(database) == 0


def read_model_tables(database: str) -> dict[str, list[tuple]]:
    """Every projection table's rows, in a stable order (a rebuild may insert them in
    another): for comparing before and after `projections rebuild`."""
    from ocsched.projections.runner import all_projections

    connection = read_only(database)
    try:
        tables = {}
        for projection in all_projections():
            for table in projection.tables:
                rows = connection.execute(f"SELECT * FROM [{table}]").fetchall()
                tables[table] = sorted(rows, key=repr)
        return tables
    finally:
        connection.close()


def effects(path: Path) -> list[tuple[str, str, str, int, float]]:
    """The side-effect log: (kind, job, run id, shell pid, time)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            kind, job, run_id, pid, stamp = parts
            found.append((kind, job, run_id, int(pid), float(stamp)))
    return found


def side_effect_figures(lines: list[tuple[str, str, str, int, float]]) -> dict[str, Any]:
    starts: dict[tuple[str, int], float] = {}
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    executions_by_run: Counter[str] = Counter()
    completed: set[str] = set()
    overlaps = 0
    for kind, job, run_id, pid, stamp in lines:
        if kind in ("start", "overlap") and run_id != "-":
            executions_by_run[run_id] += 1
        if kind == "start":
            starts[(job, pid)] = stamp
        elif kind == "end":
            completed.add(job)
            if (job, pid) in starts:
                intervals[job].append((starts[(job, pid)], stamp))
        elif kind == "overlap":
            overlaps += 1
    interval_overlaps = 0
    for spans in intervals.values():
        spans.sort()
        for (_, first_end), (second_start, _) in zip(spans, spans[1:], strict=False):
            if second_start < first_end:
                interval_overlaps += 1
    return {
        "executions": sum(kind in ("start", "overlap") for kind, *_ in lines),
        "lock_overlaps": overlaps,
        "interval_overlaps": interval_overlaps,
        "runs_executed_twice": sorted(r for r, n in executions_by_run.items() if n > 1),
        "jobs_completed": completed,
    }


def run_kill_loop(
    *,
    kills: int = 200,
    burst: int = 50,
    burst_share: float = 0.5,
    burst_window: float = 0.6,
    max_delay: float = 2.5,
    sleep: float = 3.0,
    seed: int = 9,
    max_settle: float = 300.0,
    orphan_check: float = 0.3,
    progress: bool = False,
) -> dict[str, Any]:
    rng = random.Random(seed)
    burst_at = set(rng.sample(range(kills), round(kills * burst_share)))
    token = uuid.uuid4().hex[:12]
    reaper = ChildReaper()
    started_at = time.monotonic()
    identities: list[str] = []
    bursts: dict[int, list[str]] = {}  # daemon number -> its burst's job ids
    orphans: dict[tuple[int, int], tuple[str, str]] = {}  # (pid, daemon) -> kind, command
    tracebacks: list[str] = []
    jobs: set[str] = set()
    with BenchHome() as home:
        (home.path / "locks").mkdir()
        home.env["OCSCHED_MAX_CONCURRENT_RUNS"] = str(burst + 32)
        home.env["SCHEDULER_HEARTBEAT_CHECK_MS"] = "5000"

        def start(number: int) -> Daemon:
            home.env[MARK_ENV] = f"{token}:{number}"
            daemon = Daemon(home)
            reaper.keep.add(daemon.pid)
            match = IDENTITY.search(daemon.log)
            identities.append(match.group(1) if match else "?")
            return daemon

        def collect_log(daemon: Daemon) -> None:
            text = daemon.log
            tracebacks.extend(part[:2000] for part in text.split("Traceback")[1:])

        def look_for_orphans(before: int) -> None:
            for pid, (owner, kind, command) in marked_processes(token).items():
                if owner < before:
                    orphans.setdefault((pid, owner), (kind, command))

        checker: threading.Timer | None = None
        try:
            for number in range(kills):
                if number in burst_at:
                    bursts[number] = seed_burst(home, number, burst, sleep, rng)
                    jobs.update(bursts[number])
                daemon = start(number)
                up_at = time.monotonic()
                if checker is not None:
                    checker.join()
                look_for_orphans(number)  # what the killed daemons left, still there now
                window = burst_window if number in burst_at else max_delay
                delay = rng.uniform(0, window)
                time.sleep(max(0.0, delay - (time.monotonic() - up_at)))
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.process.wait()
                checker = threading.Timer(orphan_check, look_for_orphans, (number + 1,))
                checker.start()
                daemon.stop()
                collect_log(daemon)
                reaper.reap()
                if progress and (number + 1) % 10 == 0:
                    elapsed = time.monotonic() - started_at
                    print(f"  {number + 1} kills, {elapsed:.0f} s", flush=True)
            loop_s = time.monotonic() - started_at
            final = start(kills)
            if checker is not None:
                checker.join()
            look_for_orphans(kills)
            settle_started = time.monotonic()
            while time.monotonic() - settle_started < max_settle:
                if settled(read_runs(home.database), jobs, home.database):
                    break
                time.sleep(0.1)
            settle_s = time.monotonic() - settle_started
            stop_code = final.stop()
            collect_log(final)
            reaper.reap()
            left = marked_processes(token)
            runs = read_runs(home.database)
            before = read_model_tables(home.database)
            rebuild = subprocess.run(
                [OCSCHED, "projections", "rebuild"],
                env=home.env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            after = read_model_tables(home.database)
            lines = effects(home.path / "effects.log")
        finally:
            reaper.close()
    return figures(
        runs=runs,
        lines=lines,
        jobs=jobs,
        bursts=bursts,
        identities=identities,
        burst=burst,
        kills=kills,
        orphans=orphans,
        left=left,
        orphan_check_s=orphan_check,
        rebuild_ok=rebuild.returncode == 0,
        rebuild_diff=sorted(t for t in before if before[t] != after.get(t)),
        tracebacks=tracebacks,
        stop_code=stop_code,
        loop_s=loop_s,
        settle_s=settle_s,
        elapsed_s=time.monotonic() - started_at,
    )


def figures(
    *,
    runs: list[dict[str, Any]],
    lines: list[tuple[str, str, str, int, float]],
    jobs: set[str],
    bursts: dict[int, list[str]],
    identities: list[str],
    burst: int,
    orphans: dict[tuple[int, int], tuple[str, str]],
    left: dict[int, tuple[int, str, str]],
    **extra: Any,
) -> dict[str, Any]:
    by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_owner[run["owner"]].append(run)
    in_burst = 0
    for number, burst_jobs in bursts.items():
        own = [r for r in by_owner.get(identities[number], []) if r["job_id"] in set(burst_jobs)]
        if sum(r["process_id"] is not None for r in own) < burst:
            in_burst += 1
    unstarted_kills = sum(
        any(r["process_id"] is None and r["status"] == "crashed" for r in by_owner.get(i, []))
        for i in identities[:-1]
    )
    clock_slots = Counter((r["job_id"], r["slot"]) for r in runs if r["trigger"] == "clock")
    side = side_effect_figures(lines)
    job_orphans = {key for key, (kind, _) in orphans.items() if kind == "job"}
    return {
        "jobs": len(jobs),
        "runs": len(runs),
        "statuses": dict(Counter(r["status"] for r in runs)),
        "replays": sum(r["trigger"] == "replay" for r in runs),
        "not_terminal": sum(r["finished_at"] is None for r in runs),
        "kills_in_burst": in_burst,
        "kills_unstarted": unstarted_kills,
        "orphans_after_kills": len(job_orphans),
        "kills_with_orphans": len({owner for _, owner in job_orphans}),
        "ocsched_processes_lingering": sum(kind == "ocsched" for kind, _ in orphans.values()),
        "orphans_at_end": sum(kind == "job" for _, kind, _ in left.values()),
        "orphan_commands": dict(Counter(command for kind, command in orphans.values())),
        "processes_at_end": len(left),
        "slots_fired_twice": sum(n > 1 for n in clock_slots.values())
        + len(side["runs_executed_twice"]),
        "side_effects_at_once": side["lock_overlaps"] + side["interval_overlaps"],
        "lock_overlaps": side["lock_overlaps"],
        "interval_overlaps": side["interval_overlaps"],
        "executions": side["executions"],
        "jobs_never_completed": len(jobs - side["jobs_completed"]),
        **extra,
    }


def failures(result: dict[str, Any]) -> list[str]:
    checks = [
        ("orphans after kills", result["orphans_after_kills"]),
        ("orphans at the end", result["orphans_at_end"]),
        ("processes left at the end", result["processes_at_end"]),
        ("runs without a terminal state", result["not_terminal"]),
        ("slots fired twice", result["slots_fired_twice"]),
        ("side effects running twice at once", result["side_effects_at_once"]),
        ("jobs whose side effect never completed", result["jobs_never_completed"]),
        ("tracebacks in the daemon logs", len(result["tracebacks"])),
    ]
    found = [f"{name}: {value}" for name, value in checks if value]
    if not result["rebuild_ok"] or result["rebuild_diff"]:
        found.append(f"projections rebuild differs: {result['rebuild_diff']}")
    if result["stop_code"] != 0:
        found.append(f"the last daemon exited {result['stop_code']}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--burst", type=int, default=50, help="jobs due at a start-up burst")
    parser.add_argument("--burst-share", type=float, default=0.5)
    parser.add_argument("--burst-window", type=float, default=0.6, metavar="S")
    parser.add_argument("--max-delay", type=float, default=2.5, metavar="S")
    parser.add_argument("--sleep", type=float, default=3.0, metavar="S", help="commands' longest")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--max-settle", type=float, default=300.0, metavar="S")
    parser.add_argument(
        "--orphan-check", type=float, default=0.3, metavar="S", help="after each kill"
    )
    options = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("kill_loop.py needs Linux (/proc)")
    result = run_kill_loop(
        kills=options.kills,
        burst=options.burst,
        burst_share=options.burst_share,
        burst_window=options.burst_window,
        max_delay=options.max_delay,
        sleep=options.sleep,
        seed=options.seed,
        max_settle=options.max_settle,
        orphan_check=options.orphan_check,
        progress=True,
    )
    r = result
    rebuilt = "yes" if r["rebuild_ok"] and not r["rebuild_diff"] else f"no {r['rebuild_diff']}"
    elapsed = f"{r['loop_s']:.0f} / {r['settle_s']:.1f} / {r['elapsed_s']:.0f} s"
    orphans_seen = f"  orphans seen {r['orphan_check_s']:.1f} s after a kill or at the restart"
    at_once = f"{r['lock_overlaps']} / {r['interval_overlaps']}"
    rows = [
        (f"{r['kills']} kills (seed {options.seed}), {r['jobs']} jobs", "", ""),
        ("  kills inside a start-up burst", str(r["kills_in_burst"]), ">= 50 of 200"),
        ("  kills leaving a run with no start recorded", str(r["kills_unstarted"]), ""),
        (orphans_seen, str(r["orphans_after_kills"]), "0"),
        ("  kills that left orphans", str(r["kills_with_orphans"]), "0"),
        ("  orphans after the final stop", str(r["orphans_at_end"]), "0"),
        ("  runs without a terminal state", str(r["not_terminal"]), "0"),
        ("  slots fired twice", str(r["slots_fired_twice"]), "0"),
        ("  side effects running twice at once", str(r["side_effects_at_once"]), "0"),
        ("    found the lock held / overlapping intervals", at_once, ""),
        ("  jobs whose side effect never completed", str(r["jobs_never_completed"]), "0"),
        ("  projections rebuild identical", rebuilt, "yes"),
        ("  runs / executions / replays", f"{r['runs']} / {r['executions']} / {r['replays']}", ""),
        ("  runs by status", json.dumps(r["statuses"], sort_keys=True), ""),
        ("  daemon log tracebacks", str(len(r["tracebacks"])), "0"),
        ("  elapsed: kills / settle / total", elapsed, ""),
    ]  # fmt: skip
    print_table(rows, value_header="value")
    commands = sorted(result["orphan_commands"].items(), key=lambda item: -item[1])
    for command, count in commands[:5]:
        print(f"  orphans: {count} x {command}")
    for text in result["tracebacks"][:3]:
        print("Traceback" + text)
    problems = failures(result)
    if problems:
        print("FAILED:", "; ".join(problems))
        raise SystemExit(1)
    print("passed")


if __name__ == "__main__":
    main()
