"""Reactor idle benchmark: what a daemon costs while nothing is due.

    .venv/bin/python scripts/bench/reactor_idle.py [--jobs 100000] [--seconds 60] [--settle 5]

Targets on the 2-core reference machine, with enabled cron jobs that are not due
(`0 0 1 1 *`), over a 60 s window: 100,000 jobs (issue 8, the default): CPU <= 0.1 % of
one core and RSS <= 150 MiB; 10,000 jobs: CPU <= 0.3 % and RSS <= 100 MiB. Seeding
100,000 jobs takes most of a minute.

Method: the jobs are seeded through the library before the daemon starts; the daemon is
given `--settle` seconds to start, catch up and load its timers, then watched for
`--seconds`: CPU is the time the daemon's threads spent on a CPU over the window (from
`/proc/<pid>/task/*/schedstat`, in nanoseconds: `/proc/<pid>/stat`'s 10 ms ticks made an
idle minute's few tens of ms jump by a quarter) divided by the window's wall time; RSS is the
largest `VmRSS` of `/proc/<pid>/status` seen, sampled every 0.25 s. The daemon's read
models' process (`commands/reactor/projector.py`) does the daemon's work: its CPU and RSS
are added to the daemon's. Its watchdog (`adapters/supervisor.py`) is reported on its own
lines and not counted against the targets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from daemon_harness import (
    BenchHome,
    Daemon,
    helpers,
    print_table,
    seed_jobs,
    shell_spec,
    threads_on_cpu,
)

TARGETS = {10_000: (0.3, 100), 100_000: (0.1, 150)}
"""Jobs held -> (CPU % of one core, max RSS MiB); a count between two: the larger's."""


def targets(jobs: int) -> tuple[float, int]:
    return next((t for n, t in sorted(TARGETS.items()) if jobs <= n), TARGETS[max(TARGETS)])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def watch(pids: list[int], seconds: float) -> tuple[dict[int, float], dict[int, int]]:
    """CPU % of one core and max RSS (KiB) of each process over `seconds`."""
    start_cpu = {pid: threads_on_cpu(pid) for pid in pids}
    start = time.monotonic()
    peak = {pid: rss_kib(pid) for pid in pids}
    while (elapsed := time.monotonic() - start) < seconds:
        time.sleep(min(0.25, seconds - elapsed))
        for pid in pids:
            peak[pid] = max(peak[pid], rss_kib(pid))
    wall = time.monotonic() - start
    cpu = {}
    for pid in pids:
        end_cpu = threads_on_cpu(pid)
        if start_cpu[pid].keys() - end_cpu.keys():
            raise SystemExit(f"a thread of process {pid} ended in the window: its time is lost")
        spent = sum(seconds - start_cpu[pid].get(tid, 0.0) for tid, seconds in end_cpu.items())
        cpu[pid] = spent / wall * 100
    return cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the window")
    options = parser.parse_args()
    with BenchHome() as home:
        specs = [
            (f"idle-{i:06d}", shell_spec(f"idle {i:06d}", schedule_cron="0 0 1 1 *"))
            for i in range(options.jobs)
        ]
        seed_jobs(home, specs)
        with Daemon(home) as daemon:
            time.sleep(options.settle)
            children = helpers(daemon.pid)
            cpu, peak = watch([daemon.pid, *children.values()], options.seconds)
    counted = [daemon.pid, *(pid for name, pid in children.items() if name != "watchdog")]
    daemon_cpu = sum(cpu[pid] for pid in counted)
    daemon_rss = sum(peak[pid] for pid in counted)
    target_cpu, target_rss = targets(options.jobs)
    cpu_over = "" if daemon_cpu <= target_cpu else "  MISSED"
    rss_over = "" if daemon_rss <= target_rss * 1024 else "  MISSED"
    name = f"idle daemon, {options.jobs:,} cron jobs, {options.seconds:g} s"
    rows = [
        (f"{name}: CPU", f"{daemon_cpu:.2f} %", f"<= {target_cpu} %{cpu_over}"),
        (f"{name}: max RSS", f"{daemon_rss / 1024:.1f} MiB", f"<= {target_rss} MiB{rss_over}"),
        ("daemon start -> 'started' logged", f"{daemon.startup_seconds * 1000:.0f} ms", ""),
    ]
    for child, pid in children.items():
        note = "not counted" if child == "watchdog" else "counted above"
        rows.append((f"  {child}: CPU ({note})", f"{cpu[pid]:.2f} %", ""))
        rows.append((f"  {child}: max RSS ({note})", f"{peak[pid] / 1024:.1f} MiB", ""))
    print_table(rows, "value")


if __name__ == "__main__":
    main()
