"""Reactor burst benchmark: N shell jobs (payload `true`) due at the same instant; wall
time from that instant until all N runs are finished in the runs read model, against the
spawn floor measured in the same round.

    .venv/bin/python scripts/bench/reactor_burst.py [--jobs 500] [--rounds 3]
        [--kind at|cron] [--lead S] [--idle-jobs N] [--profile PREFIX] [--py-spy PREFIX]
        [--runnable]

Targets (issue 8), on the 2-core reference machine: 500 jobs within 1.3x of the floor,
10,000 within 1.5x (`--jobs 10000 --rounds 1` takes about two minutes). The floor is
what this machine needs just to spawn and reap N `bash -c true` as the daemon does, the
fastest way this project knows (`adapters/shell.run_shell`: glibc's `posix_spawnp`, a
vfork, called without the interpreter lock; two pipes and a pidfd followed on the event
loop; a new session per process), with the daemon's concurrency (`max_concurrent_runs`,
32 on 2 cores), in one asyncio process doing nothing else. It is measured right before
and right after each round (the round's floor is the mean), so each round's ratio compares
figures taken seconds apart on a machine whose speed drifts; the ratio printed is the
median of the rounds' ratios. The floor of plain `asyncio.create_subprocess_exec`
(`Popen` with asyncio's transports and child watcher, how the daemon spawned before) is
printed as well.

How "due" is measured: each round starts a fresh daemon and lets it go idle, then seeds the
jobs through the library with their fire time at a whole second `--lead` seconds ahead
(by default 3 s, plus 1 s per 1,500 jobs for the seeding; `schedule_at` for `--kind at`,
the default: one-shot jobs as `jobs add --at` makes them, deleted after their run; a daily
6-field cron matching that second for `--kind cron`). The daemon notices the new events
within its watch interval and loads the timers long before they are due, so the clock
starts at the due instant itself, which both sides know exactly, and the measurement is
purely "due -> N finished in the read model". Seeding overdue jobs before the daemon starts
would instead mix in the daemon's start-up (imports, catch-up, recovery, the watchdog
process) and leave "due" undefined.

`--idle-jobs N` seeds N enabled cron jobs that are not due (`0 0 1 1 *`) before the daemon
starts: the same burst with many timers held.

The end is seen by polling the runs table with plain sqlite3 (`count(*) where finished_at
is not null`), every 5 ms near the end and less often while many runs remain
(`daemon_harness.poll_pause`: the count scans the table, ~1 ms at 10,000 rows). The
breakdown rows come from the runs' events in the log (`Run.Scheduled`, `Run.Started`,
`Run.Finished` timestamps, microseconds), relative to due; the CPU rows are the daemon's
utime + stime (all threads, and its own helper processes: the read models' process and the
watchdog) and its reaped children's (the runs' shells) over the same span, from
`/proc/<pid>/stat`. CPU is steadier than wall time on a shared machine: compare it when
timing a change.
The event loop rows split its thread's time over the burst, for the daemon and the floor
(`/proc/<pid>/task/<tid>/schedstat`): on a CPU, runnable but waiting for one, and blocked
(mostly in each spawn's vfork wait, until the child has exec'd; also waiting for the
interpreter lock). The loop is the serial path of both; each ms of the daemon's own loop
work comes with up to ~0.5 ms more waiting for a CPU the runs hold, and its blocked time
was close to the floor's on one machine (206 against 197 ms) and not on another (238–253
against 177–184 ms; 2026-12-05).

`--profile PREFIX` runs one round with the daemon under cProfile (the same entry point in a
Python wrapper): `PREFIX.loop` profiles the event loop thread, `PREFIX.writer` the event
writer's batches (a worker thread, which cProfile would not see otherwise); both are
printed. `--py-spy PREFIX` samples the daemon with py-spy (250 Hz, each thread while it
holds the interpreter lock: where its Python time goes) from just before due to the end
(`.venv/bin/pip install py-spy`, not a project dependency), writes the collapsed stacks to
`PREFIX.txt` and prints the functions with the most samples.
`--runnable` samples the machine's runnable tasks every millisecond during each burst
(`/proc/loadavg`): a burst paced by its event loop leaves cores idle while most of its runs
in flight have ended and wait to be reaped (2026-12-05: 2–4 runnable, 22 % of the CPU idle).
`OCSCHED_BENCH_DAEMON` (see `daemon_harness.py`) swaps the daemon command, e.g. for a
wrapper that patches the reactor to try a change.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import pstats
import resource
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
    Daemon,
    at_spec,
    count_finished_runs,
    helpers,
    poll_pause,
    print_table,
    read_only,
    run_events,
    run_timeline,
    seed_jobs,
    shell_spec,
    thread_schedstat,
    with_helpers_cpu,
)

TARGET_RATIO = {500: 1.3, 10_000: 1.5}
"""Issue 8: wall time over the spawn floor, by burst size (sizes between: the larger's)."""
UNLIMITED_FLOOR_MAX = 2000
"""Bursts up to this size also get the floor with every process at once (more would run
into the open-files limit: three pipes per process)."""


def target_ratio(jobs: int) -> float:
    return next(
        (r for n, r in sorted(TARGET_RATIO.items()) if jobs <= n), max(TARGET_RATIO.values())
    )


def job_specs(count: int, due: datetime, kind: str) -> list[tuple[str, dict]]:
    if kind == "at":
        return [(f"burst-{i:05d}", at_spec(f"burst {i:05d}", due)) for i in range(count)]
    cron = f"{due.second} {due.minute} {due.hour} * * *"
    return [
        (f"burst-{i:05d}", shell_spec(f"burst {i:05d}", schedule_cron=cron)) for i in range(count)
    ]


def one_round(options: argparse.Namespace, slots: int) -> dict[str, float]:
    """The floor; a fresh home and daemon; the burst; the daemon stopped, the home
    deleted; the floor again. The round's floor is the mean of the two."""
    floor_before = floor(options.jobs, slots)
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
    floor_after = floor(options.jobs, slots)
    result["floor"] = (floor_before[0] + floor_after[0]) / 2
    result["ratio"] = result["total"] / result["floor"]
    result["floor_cpu"] = (floor_before[1] + floor_after[1]) / 2
    result["cpu_ratio"] = (result["daemon_cpu"] + result["children_cpu"]) / result["floor_cpu"]
    floor_loop = ((floor_before[2] + floor_after[2]) / 2, (floor_before[3] + floor_after[3]) / 2)
    floor_rows = loop_thread((0.0, 0.0), floor_loop, result["floor"])
    result.update({f"floor_{key}": value for key, value in floor_rows.items()})
    return result


def burst(options: argparse.Namespace, home: BenchHome, pid: int) -> dict[str, float]:
    """Seed the jobs due `--lead` seconds ahead into the running daemon's store and time
    due -> all runs finished in the read model; the breakdown from the runs' events."""
    from ocsched.domain.run import clock_run_id
    from ocsched.domain.schedule import to_ts

    lead = options.lead if options.lead is not None else 3 + options.jobs / 1500
    due_epoch = math.ceil(time.time() + lead)
    due = datetime.fromtimestamp(due_epoch, UTC)
    specs = job_specs(options.jobs, due, options.kind)
    seed_seconds = seed_jobs(home, specs)
    if time.time() > due_epoch - 0.3:
        raise SystemExit(f"seeding took {seed_seconds:.2f} s, too close to due: raise --lead")
    connection = read_only(home.database)
    time.sleep(max(due_epoch - 0.1 - time.time(), 0))
    spy = start_py_spy(options.py_spy, pid, gil=not options.on_cpu) if options.py_spy else None
    sampler = RunnableSampler() if options.runnable else None
    helper_pids = helpers(pid).values()
    cpu_before = with_helpers_cpu(pid, helper_pids)
    loop_before = thread_schedstat(pid)
    deadline = due_epoch + max(120, options.jobs / 50)
    while (finished := count_finished_runs(connection)) < options.jobs:
        if time.time() > deadline:
            raise SystemExit(f"only {finished}/{options.jobs} runs finished in time")
        time.sleep(poll_pause(options.jobs - finished))
    all_finished = time.time()
    cpu_after = with_helpers_cpu(pid, helper_pids)
    loop_after = thread_schedstat(pid)
    runnable = sampler.stop(due_epoch) if sampler is not None else {}
    if spy is not None:
        stop_py_spy(spy)
    statuses = dict(connection.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    connection.close()
    if statuses.get("ok") != options.jobs:
        print(f"warning: run statuses {statuses}")
    slot = to_ts(due)
    events = run_events(home, [clock_run_id(job_id, slot) for job_id, _ in specs])

    return {
        **run_timeline(events, due_epoch, all_finished),
        **runnable,
        "daemon_cpu": cpu_after[0] - cpu_before[0],
        "children_cpu": cpu_after[1] - cpu_before[1],
        # (the loop is idle until due: its span is the burst's)
        **loop_thread(loop_before, loop_after, all_finished - due_epoch),
    }


def loop_thread(
    before: tuple[float, float], after: tuple[float, float], span: float
) -> dict[str, float]:
    """How the event loop's thread spent a span: on a CPU, runnable but waiting for one
    (the cores busy with runs), and blocked (a spawn's vfork wait, the interpreter lock,
    idle)."""
    on_cpu, waiting = after[0] - before[0], after[1] - before[1]
    return {"loop_cpu": on_cpu, "loop_wait": waiting, "loop_blocked": span - on_cpu - waiting}


class RunnableSampler:
    """How many tasks the machine has runnable, from `/proc/loadavg` every millisecond in a
    thread of this process (which counts itself while it reads): on 2 cores, a burst whose
    runs kept every core busy shows 3 or more nearly always. `stop(since)` returns the mean
    and the share of samples with at most 2 (at most one core in use besides the sampler)
    taken at or after `since`."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stopping.is_set():
            with open("/proc/loadavg") as loadavg:
                running = int(loadavg.read().split()[3].split("/")[0])
            self.samples.append((time.time(), running))
            time.sleep(0.001)

    def stop(self, since: float) -> dict[str, float]:
        self._stopping.set()
        self._thread.join()
        counts = [running for at, running in self.samples if at >= since]
        if not counts:
            return {}
        return {
            "runnable_mean": statistics.mean(counts),
            "runnable_low": sum(running <= 2 for running in counts) / len(counts),
        }


async def spawn_true(
    count: int, concurrency: int | None, *, as_daemon: bool
) -> tuple[float, float, float, float]:
    """Spawn and reap `count` x `bash -c true`, `concurrency` at a time: through
    `adapters/shell.run_shell` with the daemon's child watcher (`as_daemon`), or with a
    plain `asyncio.create_subprocess_exec` and the default watcher. Returns the seconds it
    took, the CPU seconds of this process and of the processes it reaped, and the event
    loop thread's seconds on a CPU and waiting for one (`loop_thread`)."""
    from ocsched.adapters.shell import run_shell

    slots = asyncio.Semaphore(concurrency or count)

    async def one() -> None:
        async with slots:
            if as_daemon:
                await run_shell("true", timeout_ms=60000, shell="/bin/bash")
                return
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

    cpu = _process_and_children_cpu()
    loop_before = thread_schedstat(os.getpid(), threading.get_native_id())
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    seconds = time.perf_counter() - started
    loop_after = thread_schedstat(os.getpid(), threading.get_native_id())
    on_cpu, waiting = loop_after[0] - loop_before[0], loop_after[1] - loop_before[1]
    return seconds, _process_and_children_cpu() - cpu, on_cpu, waiting


def _process_and_children_cpu() -> float:
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def floor_seconds(
    count: int, concurrency: int | None, rounds: int = 1, *, as_daemon: bool = True
) -> float:
    return floor(count, concurrency, rounds, as_daemon=as_daemon)[0]


def floor(
    count: int, concurrency: int | None, rounds: int = 1, *, as_daemon: bool = True
) -> tuple[float, ...]:
    """The median of `rounds` spawn floors, each in a fresh event loop (in a child
    process, so the daemon's child watcher is set up as the daemon sets it up): seconds,
    CPU seconds (the spawning process and the shells), and the event loop thread's
    seconds on a CPU and waiting for one."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]);"
        "from reactor_burst import spawn_true;"
        "from ocsched.commands.daemon import _use_pidfd_child_watcher;"
        "as_daemon = sys.argv[4] == '1';"
        "as_daemon and _use_pidfd_child_watcher();"
        "limit = int(sys.argv[3]) or None;"
        "print(*asyncio.run(spawn_true(int(sys.argv[2]), limit, as_daemon=as_daemon)))"
    )
    here = str(Path(__file__).parent)
    measures: list[list[float]] = []
    for _ in range(rounds):
        output = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                here,
                str(count),
                str(concurrency or 0),
                "1" if as_daemon else "0",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        measures.append([float(value) for value in output.split()[-4:]])
    return tuple(statistics.median(column) for column in zip(*measures, strict=True))


def start_py_spy(prefix: str, pid: int, *, gil: bool = True) -> subprocess.Popen:
    """py-spy on the daemon: samples of threads holding the interpreter lock (`gil`), or
    of threads on a CPU (in a system call too: the spawns' vfork waits do not count)."""
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--rate", "250", "--threads"]
    process = subprocess.Popen(
        [
            *command,
            *(["--gil"] if gil else []),
            "--format",
            "raw",
            "--output",
            f"{prefix}.txt",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.05)
    return process


def stop_py_spy(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)


def print_py_spy(prefix: str, top: int = 40) -> None:
    """Samples per thread, then per function: self (the innermost frame) and total (on
    the stack), over the threads' non-idle samples."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    idle_frames = ("select (selectors.py", "epoll", "wait (threading.py", "_worker (concurrent")
    for line in Path(f"{prefix}.txt").read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        count = int(count_text)
        threads[frames[0]] += count
        if any(marker in frames[-1] for marker in idle_frames):
            own["(idle) " + frames[-1]] += count
            continue
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            total[frame] += count
    print(f"\n== py-spy samples by thread ({prefix}.txt) ==")
    for name, count in threads.most_common():
        print(f"{count:8d}  {name}")
    print("\n== py-spy: self samples, top ==")
    for name, count in own.most_common(top):
        print(f"{count:8d}  {name}")
    print("\n== py-spy: samples on the stack (inclusive), top ==")
    for name, count in total.most_common(top):
        print(f"{count:8d}  {name}")


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
    parser.add_argument(
        "--lead", type=float, help="seconds from seeding to due (default 3 + jobs / 1500)"
    )
    parser.add_argument("--idle-jobs", type=int, default=0, help="not-due cron jobs held")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="one round under cProfile; stats to PREFIX.*"
    )
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="sample the daemon with py-spy; to PREFIX.txt"
    )
    parser.add_argument(
        "--on-cpu", action="store_true", help="--py-spy: threads on a CPU, not holding the lock"
    )
    parser.add_argument(
        "--runnable",
        action="store_true",
        help="sample the machine's runnable tasks every 1 ms during each burst",
    )
    options = parser.parse_args()
    from ocsched.adapters.settings import Settings

    slots = Settings.from_environment().reactor.max_concurrent_runs
    rounds = [one_round(options, slots) for _ in range(1 if options.profile else options.rounds)]
    n = options.jobs
    plain_floor = floor_seconds(n, slots, as_daemon=False)
    all_at_once = floor_seconds(n, None) if n <= UNLIMITED_FLOOR_MAX else math.nan

    def ms(key: str) -> str:
        return f"{statistics.median(r[key] for r in rounds) * 1000:.0f} ms"

    def ms_pair(key: str) -> str:
        return f"{ms(key)[:-3]} / {ms('floor_' + key)}"

    total = statistics.median(r["total"] for r in rounds)
    floor = statistics.median(r["floor"] for r in rounds)
    ratio = statistics.median(r["ratio"] for r in rounds)
    goal = target_ratio(n)
    rows = [
        (
            f"{n} {options.kind}-jobs due -> all finished in read model"
            + (f" (+{options.idle_jobs:,} idle)" if options.idle_jobs else ""),
            f"{total:.2f} s",
            "",
        ),
        (
            f"floor: {n} x bash -c true as the daemon spawns, {slots} at a time",
            f"{floor:.2f} s",
            "",
        ),
        (
            "ratio (median of the rounds' time / floor)",
            f"{ratio:.2f}x",
            f"<= {goal}x" + ("" if ratio <= goal else "  MISSED"),
        ),
        ("  due -> first Run.Scheduled", ms("first_scheduled"), ""),
        ("  due -> first Run.Started", ms("first_started"), ""),
        ("  due -> 32nd Run.Started", ms("started_32"), ""),
        ("  due -> 64th Run.Started", ms("started_64"), ""),
        ("  due -> last Run.Scheduled", ms("last_scheduled"), ""),
        ("  due -> last Run.Started", ms("last_started"), ""),
        ("  due -> last Run.Finished", ms("last_finished"), ""),
        ("  last Run.Finished -> read model", ms("read_model"), ""),
        ("  daemon CPU (all threads, read models' process, watchdog)", ms("daemon_cpu"), ""),
        ("  CPU of the runs' processes (reaped children)", ms("children_cpu"), ""),
        ("  floor's CPU (the spawning process and the shells)", ms("floor_cpu"), ""),
        (
            "  CPU ratio: (daemon + runs) / floor (what counts when the cores are busy)",
            f"{statistics.median(r['cpu_ratio'] for r in rounds):.2f}x",
            "",
        ),
        ("  event loop thread on a CPU: daemon / floor", ms_pair("loop_cpu"), ""),
        ("  ... runnable, waiting for a CPU: daemon / floor", ms_pair("loop_wait"), ""),
        ("  ... blocked (vfork waits, the lock, idle)", ms_pair("loop_blocked"), ""),
        (
            f"floor: plain create_subprocess_exec, default watcher, {slots} at a time",
            f"{plain_floor:.2f} s",
            "",
        ),
        (f"floor: as the daemon spawns, all {n} at once", f"{all_at_once:.2f} s", ""),
        ("daemon start -> 'started' logged", ms("startup"), ""),
    ]
    if options.runnable:
        rows.append(
            (
                "runnable tasks, sampled every 1 ms (the sampler one of them): mean",
                f"{statistics.median(r.get('runnable_mean', math.nan) for r in rounds):.1f}",
                "",
            )
        )
        rows.append(
            (
                "  samples with at most 2 runnable (a core left to the sampler or idle)",
                f"{statistics.median(r.get('runnable_low', math.nan) for r in rounds) * 100:.0f} %",
                "",
            )
        )
    print_table(rows)
    print(
        "rounds (time / floor = ratio):",
        ", ".join(f"{r['total']:.2f} s / {r['floor']:.2f} s = {r['ratio']:.2f}x" for r in rounds),
    )
    for r in rounds:
        if r["mistaken"] or r["errors"]:
            print(
                f"daemon log: {r['mistaken']} lines '<status> elsewhere; stopping its processes'"
                f" for this daemon's own runs, {r['errors']} lines with 'error'"
            )
    if options.profile:
        print_profile(options.profile)
    if options.py_spy:
        print_py_spy(options.py_spy)


if __name__ == "__main__":
    main()
