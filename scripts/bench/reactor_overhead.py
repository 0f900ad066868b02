"""The daemon's own work per run, without processes: N shell jobs due at once, carried out
by a stub instead of `bash -c` (it reports a start with no process group and ends at
once, `ok`, empty output), in this process, through the real reactor, handlers, writer
and projections (caught up in the daemon's read models' process, as the daemon does).

    .venv/bin/python scripts/bench/reactor_overhead.py [--jobs 2000] [--rounds 3]
        [--profile PREFIX]

What it prints: wall time and CPU time (this process, all threads, and the read models'
process) from due until all runs are finished in the read model, per run, and the CPU time
of the writer's transactions (a worker thread) and of the read models' catch-ups (that
process, in clock ticks), the rest being the event loop's. CPU per
run is what the daemon adds to each run's spawn on a machine whose cores are busy with the
runs themselves; it is far steadier than the burst's wall time on a shared machine, so
compare it when trying a change, then confirm with `reactor_burst.py`.

`--profile PREFIX`: one round, cProfile of the event loop thread (`PREFIX.loop`) and of
the writer's batches (`PREFIX.threads`), both printed (not the catch-ups: they run in
another process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import math
import os
import pstats
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon_harness import (
    BenchHome,
    at_spec,
    count_finished_runs,
    cpu_seconds,
    poll_pause,
    read_only,
    seed_jobs,
)


async def stub_run_shell(command, *, timeout_ms, shell=None, on_start=None, **_spawn):
    from ocsched.domain.shell_output import ShellResult

    if on_start is not None:
        on_start(1)
    await asyncio.sleep(0)
    return ShellResult(
        stdout=b"",
        stderr=b"",
        returncode=0,
        signal_name=None,
        timed_out=False,
        run_timeout_ms=timeout_ms,
    )


class ThreadCPU:
    """CPU seconds spent in the functions wrapped (whichever thread calls them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def wrap(self, name: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    spent = time.thread_time() - started
                    self.seconds[name] = self.seconds.get(name, 0.0) + spent

        return timed


class ThreadProfile:
    """One cProfile for the functions wrapped, whichever worker thread calls them."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile(time.thread_time)
        self.lock = threading.Lock()

    def wrap(self, function):
        @functools.wraps(function)
        def profiled(*args, **kwargs):
            with self.lock:
                self.profile.enable()
                try:
                    return function(*args, **kwargs)
                finally:
                    self.profile.disable()

        return profiled


def one_round(jobs: int, profile: str | None, spy: str | None = None) -> dict[str, float]:
    from ocsched.adapters import executors
    from ocsched.commands.context import Context
    from ocsched.commands.reactor import scheduler

    with BenchHome() as home:
        due_epoch = math.ceil(time.time() + 2 + jobs / 1500)
        due = datetime.fromtimestamp(due_epoch, UTC)
        seed_jobs(home, [(f"burst-{i:05d}", at_spec(f"b {i:05d}", due)) for i in range(jobs)])
        ctx = Context(settings=home.settings())
        executors.shell.run_shell = stub_run_shell  # type: ignore[attr-defined]
        reactor = scheduler.Reactor(ctx, grace_seconds=5)
        loop_profile = cProfile.Profile(time.thread_time)
        threads = ThreadProfile()
        cpu_of = ThreadCPU()
        writer = reactor.writer
        if profile:
            writer._write = threads.wrap(writer._write)  # type: ignore[method-assign]
        writer._write = cpu_of.wrap("write", writer._write)  # type: ignore[method-assign]

        async def measure() -> dict[str, float]:
            serving = asyncio.create_task(reactor.serve())
            connection = read_only(home.database)
            sampler = start_py_spy(spy) if spy else None
            await asyncio.sleep(max(due_epoch - 0.02 - time.time(), 0))
            assert reactor.projector is not None and reactor.projector.pid is not None
            projector = reactor.projector.pid
            catch_up = cpu_seconds(projector)[0]
            cpu, wall = time.process_time(), time.perf_counter()
            cpu_of.seconds.clear()
            if profile:
                loop_profile.enable()
            while (finished := count_finished_runs(connection)) < jobs:
                await asyncio.sleep(poll_pause(jobs - finished))
            if profile:
                loop_profile.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            catch_up = cpu_seconds(projector)[0] - catch_up
            spent = dict(cpu_of.seconds)
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(timeout=60)
            connection.close()
            reactor.stop()
            await serving
            return {
                "wall": wall,
                "cpu": cpu + catch_up,
                "write": spent.get("write", 0.0),
                "catch_up": catch_up,
            }

        try:
            result = asyncio.run(measure())
        finally:
            ctx.close()
        if profile:
            loop_profile.dump_stats(f"{profile}.loop")
            threads.profile.dump_stats(f"{profile}.threads")
    return result


def start_py_spy(prefix: str) -> subprocess.Popen:
    """py-spy on this process, samples holding the interpreter lock only (`--gil`)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(os.getpid()), "--rate", "500", "--gil"]
    command += ["--threads", "--format", "raw", "--output", f"{prefix}.txt", "--nonblocking"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="PREFIX")
    parser.add_argument("--py-spy", metavar="PREFIX", help="py-spy samples to PREFIX.txt")
    options = parser.parse_args()
    import logging

    logging.getLogger("ocsched").setLevel(logging.WARNING)
    sys.setrecursionlimit(10_000)
    rounds = [
        one_round(options.jobs, options.profile, options.py_spy)
        for _ in range(1 if options.profile or options.py_spy else options.rounds)
    ]
    n = options.jobs
    cpu = statistics.median(r["cpu"] for r in rounds)
    wall = statistics.median(r["wall"] for r in rounds)
    print(f"{n} stub runs due -> all finished in the read model (median of {len(rounds)})")
    print(f"  wall {wall:.2f} s = {wall / n * 1000:.2f} ms per run")
    print(f"  CPU  {cpu:.2f} s = {cpu / n * 1000:.2f} ms per run (all threads)")
    for part in ("write", "catch_up"):
        spent = statistics.median(r[part] for r in rounds)
        print(f"    of which {part:8s} {spent:.2f} s = {spent / n * 1000:.2f} ms per run")
    main_thread = statistics.median(r["cpu"] - r["write"] - r["catch_up"] for r in rounds)
    per_run = main_thread / n * 1000
    print(f"    the rest (event loop) {main_thread:.2f} s = {per_run:.2f} ms per run")
    print("  rounds:", ", ".join(f"{r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU" for r in rounds))
    if options.profile:
        for part in ("loop", "threads"):
            print(f"\n== cProfile: {part} (tottime, top 40) ==")
            pstats.Stats(f"{options.profile}.{part}").sort_stats("tottime").print_stats(40)
            print(f"\n== cProfile: {part} (cumulative, top 40) ==")
            pstats.Stats(f"{options.profile}.{part}").sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
