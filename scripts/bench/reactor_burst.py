"""Reactor burst benchmark: 500 shell jobs (payload `true`) due at the same instant; wall
time from that instant until all 500 runs are finished in the runs read model.

    .venv/bin/python scripts/bench/reactor_burst.py [--jobs 500] [--rounds 3]
        [--kind at|cron] [--lead 3] [--idle-jobs N] [--profile PREFIX]

Target on the 2-core reference machine: <= 0.8 s (median of the rounds). The floor printed
below it is what this machine needs just to spawn and reap 500 `bash -c true` with asyncio
(pipes and a new session per process, as `adapters/shell.py` does), 32 at a time as the
reactor (`max_concurrent_runs()` on 2 cores) and all at once.

How "due" is measured: each round starts a fresh daemon and lets it go idle, then seeds the
jobs through the library with their fire time at a whole second `--lead` seconds ahead
(`schedule_at` for `--kind at`, the default: one-shot jobs as `jobs add --at` makes them,
deleted after their run; a daily 6-field cron matching that second for `--kind cron`). The
daemon notices the new events within its watch interval and loads the timers long before
they are due, so the clock starts at the due instant itself, which both sides know
exactly, and the measurement is purely "due -> 500 finished in the read model". Seeding
overdue jobs before the daemon starts would instead mix in the daemon's start-up (imports,
catch-up, recovery, the watchdog process) and leave "due" undefined.

`--idle-jobs N` seeds N enabled cron jobs that are not due (`0 0 1 1 *`) before the daemon
starts: the same burst with many timers held.

The end is seen by polling the runs table with plain sqlite3 every 5 ms (`count(*) where
finished_at is not null`). The breakdown rows come from the runs' events in the log
(`Run.Scheduled`, `Run.Started`, `Run.Finished` timestamps, microseconds), relative to due;
the CPU rows are the daemon's utime + stime (all threads) and its reaped children's (the
runs' shells) over the same span, from `/proc/<pid>/stat`. CPU is steadier than wall time
on a shared machine: compare it when timing a change.

`--profile PREFIX` runs one round with the daemon under cProfile (the same entry point in a
Python wrapper): `PREFIX.loop` profiles the event loop thread, `PREFIX.writer` the event
writer's batches (a worker thread, which cProfile would not see otherwise); both are
printed. `OCSCHED_BENCH_DAEMON` (see `daemon_harness.py`) swaps the daemon command, e.g.
for a wrapper that patches the reactor to try a change.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pstats
import statistics
import time
from datetime import UTC, datetime

from daemon_harness import (
    BenchHome,
    Daemon,
    at_spec,
    count_finished_runs,
    cpu_seconds,
    print_table,
    read_only,
    run_events,
    run_timeline,
    seed_jobs,
    shell_spec,
)

TARGET_SECONDS = 0.8


def job_specs(count: int, due: datetime, kind: str) -> list[tuple[str, dict]]:
    if kind == "at":
        return [(f"burst-{i:05d}", at_spec(f"burst {i:05d}", due)) for i in range(count)]
    cron = f"{due.second} {due.minute} {due.hour} * * *"
    return [
        (f"burst-{i:05d}", shell_spec(f"burst {i:05d}", schedule_cron=cron)) for i in range(count)
    ]


def one_round(options: argparse.Namespace) -> dict[str, float]:
    """A fresh home and daemon; the burst; the daemon stopped, the home deleted."""
    with BenchHome() as home:
        idle = [
            (f"idle-{i:06d}", shell_spec(f"idle {i:06d}", schedule_cron="0 0 1 1 *"))
            for i in range(options.idle_jobs)
        ]
        seed_jobs(home, idle)
        with Daemon(home, profile=options.profile) as daemon:
            time.sleep(0.5)  # idle: start-up catch-up and the first timer load are over
            result = burst(options, home, daemon.pid)
            daemon.stop()
            if options.profile:
                print("".join(line for line in daemon.log.splitlines(True) if "bench:" in line))
            result["startup"] = daemon.startup_seconds
            result["mistaken"] = daemon.log_count("elsewhere; stopping its processes")
            result["errors"] = daemon.log_count("error")
    return result


def burst(options: argparse.Namespace, home: BenchHome, pid: int) -> dict[str, float]:
    """Seed the jobs due `--lead` seconds ahead into the running daemon's store and time
    due -> all runs finished in the read model; the breakdown from the runs' events."""
    from ocsched.domain.run import clock_run_id
    from ocsched.domain.schedule import to_ts

    due_epoch = math.ceil(time.time() + options.lead)
    due = datetime.fromtimestamp(due_epoch, UTC)
    specs = job_specs(options.jobs, due, options.kind)
    seed_seconds = seed_jobs(home, specs)
    if time.time() > due_epoch - 0.3:
        raise SystemExit(f"seeding took {seed_seconds:.2f} s, too close to due: raise --lead")
    connection = read_only(home.database)
    time.sleep(max(due_epoch - 0.1 - time.time(), 0))
    cpu_before = cpu_seconds(pid)
    deadline = due_epoch + 120
    while (finished := count_finished_runs(connection)) < options.jobs:
        if time.time() > deadline:
            raise SystemExit(f"only {finished}/{options.jobs} runs finished after 120 s")
        time.sleep(0.005)
    all_finished = time.time()
    cpu_after = cpu_seconds(pid)
    statuses = dict(connection.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    connection.close()
    if statuses.get("ok") != options.jobs:
        print(f"warning: run statuses {statuses}")
    slot = to_ts(due)
    events = run_events(home, [clock_run_id(job_id, slot) for job_id, _ in specs])

    return {
        **run_timeline(events, due_epoch, all_finished),
        "daemon_cpu": cpu_after[0] - cpu_before[0],
        "children_cpu": cpu_after[1] - cpu_before[1],
    }


async def spawn_true(count: int, concurrency: int | None) -> float:
    """Spawn and reap `count` × `bash -c true` as `adapters/shell.run_shell` does."""
    slots = asyncio.Semaphore(concurrency or count)

    async def one() -> None:
        async with slots:
            process = await asyncio.create_subprocess_exec(
                "/bin/bash",
                "-c",
                "true",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            await process.communicate()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - started


def floor_seconds(count: int, concurrency: int | None, rounds: int = 3) -> float:
    return statistics.median(asyncio.run(spawn_true(count, concurrency)) for _ in range(rounds))


def print_profile(prefix: str) -> None:
    for part in ("loop", "writer"):
        print(f"\n== cProfile of the daemon's {part} (cumulative, top 30) ==")
        stats = pstats.Stats(f"{prefix}.{part}")
        stats.sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind", choices=("at", "cron"), default="at")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds from seeding to due")
    parser.add_argument("--idle-jobs", type=int, default=0, help="not-due cron jobs held")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="one round under cProfile; stats to PREFIX.*"
    )
    options = parser.parse_args()
    from ocsched.adapters.settings import Settings

    slots = Settings.from_environment().reactor.max_concurrent_runs
    rounds = [one_round(options) for _ in range(1 if options.profile else options.rounds)]
    floor_limited = floor_seconds(options.jobs, slots)
    floor_unlimited = floor_seconds(options.jobs, None)

    def ms(key: str) -> str:
        return f"{statistics.median(r[key] for r in rounds) * 1000:.0f} ms"

    total = statistics.median(r["total"] for r in rounds)
    n = options.jobs
    rows = [
        (
            f"{n} {options.kind}-jobs due -> all finished in read model"
            + (f" (+{options.idle_jobs:,} idle)" if options.idle_jobs else ""),
            f"{total:.2f} s",
            f"<= {TARGET_SECONDS} s" + ("" if total <= TARGET_SECONDS else "  MISSED"),
        ),
        ("  due -> first Run.Scheduled", ms("first_scheduled"), ""),
        ("  due -> first Run.Started", ms("first_started"), ""),
        ("  due -> last Run.Scheduled", ms("last_scheduled"), ""),
        ("  due -> last Run.Started", ms("last_started"), ""),
        ("  due -> last Run.Finished", ms("last_finished"), ""),
        ("  last Run.Finished -> read model", ms("read_model"), ""),
        ("  daemon CPU (all threads) from due to the end", ms("daemon_cpu"), ""),
        ("  CPU of the runs' processes (reaped children)", ms("children_cpu"), ""),
        (f"floor: {n} x bash -c true, asyncio, {slots} at a time", f"{floor_limited:.2f} s", ""),
        (f"floor: {n} x bash -c true, asyncio, all at once", f"{floor_unlimited:.2f} s", ""),
        ("daemon start -> 'started' logged", ms("startup"), ""),
    ]
    print_table(rows)
    print("rounds:", ", ".join(f"{r['total']:.2f} s" for r in rounds))
    for r in rounds:
        if r["mistaken"] or r["errors"]:
            print(
                f"daemon log: {r['mistaken']} lines '<status> elsewhere; stopping its processes'"
                f" for this daemon's own runs, {r['errors']} lines with 'error'"
            )
    if options.profile:
        print_profile(options.profile)


if __name__ == "__main__":
    main()
