"""`ocsched audit verify` over a large intact log, and what the chain adds to an append.

    .venv/bin/python scripts/bench/audit_verify.py [--events 1000000] [--keep DIR]
        [--database postgresql://…/EMPTY_DB] [--repeat 3]
    .venv/bin/python scripts/bench/audit_verify.py --appends 3000

Verify: one real job is added, updated, disabled and enabled through the CLI, then the log
is filled to `--events` with copies of those four events in turn (state sizes printed;
the mean is about 900 bytes), each under its own aggregate id, inserted through the
store's recorder (so every event gets its hash link, as in use) in transactions of 20,000.
Then `ocsched audit verify` runs as a process, as a user runs it, and its rate is printed
(events verified per second of the whole command, start-up included).

`--appends N`: N single-event saves (one transaction each, as a command's) into a fresh
SQLite log with the chained recorder and with the library's own, alternating in rounds;
prints the median time per append of each and the difference (the chain's cost).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OCSCHED = [sys.executable, "-m", "ocsched"]
BATCH = 20_000
PG_BATCH = 1_000
"""PostgreSQL: the library's insert of 5,000 of these events in one transaction never
returned here (its pipeline; 3,000 took 1.3 s), with or without the chain."""


def fill(home: Path, events: int, database: str | None) -> float:
    from eventsourcing.persistence import StoredEvent

    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings

    env = _env(home, database)
    spec = (
        '{"name":"bench","schedule_cron":"0 3 * * *","session_target":"shell",'
        '"payload_message":"./backup.sh --all","run_timeout_ms":600000,"origin":"system",'
        '"delivery_mode":"none"}'
    )
    added = subprocess.run(
        [*OCSCHED, "--json", "jobs", "add", spec], env=env, check=True, capture_output=True
    )
    job = json.loads(added.stdout)["job"]["id"]
    for command in (
        ["jobs", "update", job, '{"max_retries": 2}'],
        ["jobs", "disable", job],
        ["jobs", "enable", job],
    ):
        subprocess.run([*OCSCHED, *command], env=env, check=True, capture_output=True)
    log = open_event_log(Settings.from_environment(env))
    templates = log.recorder.select_notifications(start=1, limit=10)
    sizes = [len(t.state) for t in templates]
    print(f"templates: {[t.topic.rpartition(':')[2] for t in templates]}, state bytes {sizes}")
    started = time.perf_counter()
    written = len(templates)
    while written < events:
        size = min(BATCH, events - written)
        batch = []
        for k in range(written, written + size):
            template = templates[k % len(templates)]
            batch.append(StoredEvent(f"bench-{k:08d}", 1, template.topic, template.state))
        for start in range(0, size, PG_BATCH if database else size):
            log.recorder.insert_events(batch[start : start + (PG_BATCH if database else size)])
        written += size
    seconds = time.perf_counter() - started
    log.close()
    return seconds


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(home: Path, database: str | None) -> dict[str, str]:
    env = {**os.environ, "SCHEDULER_HOME": str(home)}
    if database:
        env["SCHEDULER_DB"] = database
    return env


def bench_verify(events: int, keep: str | None, repeat: int, database: str | None) -> None:
    home = Path(keep or tempfile.mkdtemp(prefix="audit-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    try:
        seconds = fill(home, events, database)
        print(f"filled {events:,} events in {seconds:.1f} s ({events / seconds:,.0f} events/s)")
        env = _env(home, database)
        for _ in range(repeat):
            cpu_before = _children_cpu()
            started = time.perf_counter()
            result = subprocess.run(
                [*OCSCHED, "audit", "verify"], env=env, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            cpu = _children_cpu() - cpu_before
            print(result.stdout.strip() or result.stderr.strip())
            assert result.returncode == 0, result.stderr
            print(
                f"audit verify of {events:,} events, the whole command: {seconds:.2f} s wall"
                f" = {events / seconds:,.0f} events/s; {cpu:.2f} s CPU (both threads)"
                f" = {events / cpu:,.0f} events per CPU second; load average"
                f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )
    finally:
        if keep is None:
            shutil.rmtree(home, ignore_errors=True)


def bench_appends(appends: int, rounds: int = 5) -> None:
    from ocsched.adapters.event_store import EventLog, persistence_env
    from ocsched.adapters.settings import Settings

    timings: dict[str, list[float]] = {"chained": [], "library": []}
    cpu: dict[str, list[float]] = {"chained": [], "library": []}
    folder = Path(tempfile.mkdtemp(prefix="audit-appends-"))
    try:
        for round_ in range(rounds):
            for kind in timings:
                settings = Settings.from_environment(
                    {"SCHEDULER_DB": str(folder / f"{kind}-{round_}.db"), "HOME": str(folder)}
                )
                env = persistence_env(settings)
                if kind == "library":
                    del env["APPLICATION_RECORDER_TOPIC"]
                log = EventLog(env=env)
                seconds, cpu_seconds = _appends(log, appends)
                timings[kind].append(seconds / appends * 1e6)
                cpu[kind].append(cpu_seconds / appends * 1e6)
                log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{appends:,} single-event appends (one transaction each), median of {rounds} rounds:")
    for label, measured in (("wall", timings), ("CPU", cpu)):
        chained, library = (statistics.median(measured[k]) for k in ("chained", "library"))
        print(
            f"  {label}: library recorder {library:.1f} µs, chained {chained:.1f} µs per append:"
            f" the chain adds {chained - library:+.1f} µs ({(chained / library - 1) * 100:+.1f} %)"
        )
        for kind, values in measured.items():
            print(f"    {kind} rounds: " + ", ".join(f"{v:.1f}" for v in values))


def _appends(log, count: int) -> tuple[float, float]:
    from eventsourcing.persistence import StoredEvent

    state = b'{"timestamp":"2026-12-05T08:00:00.000000Z","meta":{"actor":"bench"},"x":1}'
    events = [
        StoredEvent(f"job-{k}", 1, "ocsched.domain.job:Job.Enabled", state) for k in range(count)
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    for event in events:
        log.recorder.insert_events([event])
    return time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="DIR", help="build the log in DIR and keep it")
    parser.add_argument("--database", help="an empty PostgreSQL database's URL (SCHEDULER_DB)")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs (default 3)")
    parser.add_argument("--appends", type=int, help="measure the chain's cost per append")
    options = parser.parse_args()
    if options.appends:
        bench_appends(options.appends)
    else:
        bench_verify(options.events, options.keep, options.repeat, options.database)


if __name__ == "__main__":
    main()
