"""CLI benchmark: whole-process wall time of `jobs add`, `jobs list` (1,000 and 10,000
jobs stored), `status` and the daemon's start to its first run, each beside the same
figure for openclaw-scheduler (the anchor) when `--anchor DIR` is given, as a ratio; the
heaviest imports of `jobs add` (`python -X importtime`); and the jobs projection's rebuild
rate against its read+decode floor.

    .venv/bin/python scripts/bench/cli.py [--anchor DIR [--anchor-node NODE]] [--runs N]
        [--daemon-runs N] [--no-rebuild | --rebuild-only] [--repeat N]

DIR is the anchor's source (its `bin/openclaw-scheduler.js` and `dispatcher.js`); NODE
is `--anchor-node`, else `DIR/../node/node_modules/.bin/node`, else `node` on PATH. Each
command runs alternately for ocsched and the anchor (medians of `--runs`), so the ratio
compares figures taken seconds apart on a machine whose speed drifts. Both stores are
seeded the same way (ocsched through the library, the anchor by copying one job row it
made itself). The daemon figure is from spawning the daemon, on a store holding one shell
job due now (`run_now`), to the moment that job's `date +%s.%N` ran.

Targets on the 2-core reference machine: `jobs add` at or under the anchor's time,
`--json jobs list` with 1,000 jobs <= 120 ms, the daemon's first run <= 0.3 s after its
start (medians), rebuild >= 100,000 events/s over 100,000 job events (10,000 jobs, each
updated 9 times, round by round). The floor is what reading and decoding the same events
costs, through the same reader the rebuild uses (`read_after`, in the same chunks, the
cyclic collector paused as during a page), applying nothing; the rebuild and the floor are
measured alternately, `--repeat` times each (medians).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

OCSCHED = [str(Path(sys.executable).with_name("ocsched"))]
IMPORTS_SHOWN = 12


def shell_spec(index: int) -> dict:
    return {
        "name": f"bench job {index:05d}",
        "schedule_cron": "*/5 * * * *",
        "session_target": "shell",
        "payload_message": "true",
        "run_timeout_ms": 60000,
        "origin": "system",
        "delivery_mode": "none",
    }


def timed_ms(args: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system, the process and its children) in ms. The
    CPU time hardly moves with the machine's load; the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


@dataclass
class Row:
    name: str
    wall: list[float]
    """Median wall time (ms) per tool."""
    cpu: list[float | None]
    """Median CPU time (ms) per tool: the whole process, or a daemon's until its first run."""
    target: str


@dataclass
class Tool:
    """One side of the comparison: how to run a CLI command, the daemon, and seed jobs."""

    name: str
    cli: list[str]
    daemon: list[str]
    env: dict
    home: str
    make: Callable[[str], Tool]
    """The same tool on another home."""

    def command(self, *args: str) -> list[str]:
        return [*self.cli, *args]

    def add_job(self, spec: dict) -> None:
        subprocess.run(
            self.command("jobs", "add", json.dumps(spec)),
            env=self.env,
            cwd=self.home,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def ocsched_tool(home: str) -> Tool:
    env = {**os.environ, "SCHEDULER_HOME": home, "OCSCHED_ACTOR": "bench"}
    env.pop("SCHEDULER_DB", None)
    # As installed for users: byte-compiled modules (the first run writes them).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return Tool("ocsched", OCSCHED, [*OCSCHED, "daemon"], env, home, ocsched_tool)


def anchor_tool(home: str, source: Path, node: str) -> Tool:
    env = {**os.environ, "SCHEDULER_DB": os.path.join(home, "scheduler.db")}
    env.pop("SCHEDULER_HOME", None)
    cli = [node, str(source / "bin" / "openclaw-scheduler.js")]
    daemon = [node, str(source / "dispatcher.js")]
    return Tool(
        "openclaw-scheduler", cli, daemon, env, home, lambda other: anchor_tool(other, source, node)
    )


def anchor_node(source: Path, given: str | None) -> str:
    if given:
        return given
    bundled = source.parent / "node" / "node_modules" / ".bin" / "node"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("node")
    if not found:
        sys.exit("no node binary: pass --anchor-node")
    return found


def seed_ocsched(home: str, count: int, first: int) -> None:
    """Store `count` more jobs through the library (saves of 1,000), then project them."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job
    from ocsched.projections.runner import catch_up
    from ocsched.projections.store import ReadModelStore

    settings = Settings(home=Path(home), database=os.path.join(home, "ocsched.db"))
    log = open_event_log(settings)
    meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
    now = datetime.now(UTC)
    jobs = [new_job(shell_spec(i), f"job-{i:06d}", meta, now) for i in range(first, first + count)]
    for start in range(0, count, 1000):
        log.save(*jobs[start : start + 1000])
    store = ReadModelStore(settings.read_model_path)
    catch_up(log, store)
    log.close()


def seed_anchor(tool: Tool, count: int, first: int) -> None:
    """Copy one job the anchor made itself `count` times (new id and name each), in its
    own table: seeding 10,000 jobs through its CLI would take a quarter of an hour."""
    database = tool.env["SCHEDULER_DB"]
    with sqlite3.connect(database) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(jobs)")]
        (model,) = connection.execute("SELECT id FROM jobs LIMIT 1").fetchone()
        values = ", ".join(f":{name}" if name in ("id", "name") else name for name in columns)
        names = ", ".join(columns)
        insert = f"INSERT INTO jobs ({names}) SELECT {values} FROM jobs WHERE id = :model"
        connection.executemany(
            insert,
            (
                {"id": str(uuid.uuid4()), "name": f"bench job {i:05d}", "model": model}
                for i in range(first, first + count)
            ),
        )
    connection.close()


def seed(tool: Tool, count: int, first: int) -> None:
    if tool.name == "ocsched":
        seed_ocsched(tool.home, count, first)
    else:
        seed_anchor(tool, count, first)


def alternate(name: str, tools: list[Tool], args: list[str], runs: int, target: str) -> Row:
    """Median wall and CPU times of `args` for each tool, the tools taking turns."""
    walls: list[list[float]] = [[] for _ in tools]
    cpus: list[list[float]] = [[] for _ in tools]
    for tool in tools:  # warm each tool's files once
        timed_ms(tool.command(*args), tool.env, tool.home)
    for _ in range(runs):
        for index, tool in enumerate(tools):
            wall, cpu = timed_ms(tool.command(*args), tool.env, tool.home)
            walls[index].append(wall)
            cpus[index].append(cpu)
    return Row(
        name,
        [statistics.median(series) for series in walls],
        [statistics.median(series) for series in cpus],
        target,
    )


def process_cpu_ms(pid: int) -> float | None:
    """CPU time (user + system) a live process has used so far (Linux), in ms."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def first_run_s(tool: Tool, work: str) -> tuple[float, float | None] | None:
    """Seconds from spawning the daemon, on a new store holding one shell job due now, to
    that job's command running, and the CPU time (ms) the daemon's process had used by
    then; None (and the daemon's log on stderr) when it did not run within 30 s."""
    home = tempfile.mkdtemp(prefix=f"{tool.name}-daemon-", dir=work)
    side = tool.make(home)
    marker = os.path.join(home, "ran")
    spec = {**shell_spec(0), "payload_message": f"date +%s.%N > {marker}", "run_now": True}
    side.add_job(spec)
    log_path = os.path.join(home, "daemon.log")
    with open(log_path, "w") as log:
        start = time.time()
        daemon = subprocess.Popen(
            side.daemon,
            env=side.env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                text = Path(marker).read_text().strip()
                if text:
                    return float(text) - start, process_cpu_ms(daemon.pid)
            time.sleep(0.002)
        tail = Path(log_path).read_text()[-2000:]
        print(f"{tool.name}: the job did not run within 30 s:\n{tail}", file=sys.stderr)
        return None
    finally:
        stop(daemon)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon's session (its runs and watchdog too), SIGKILL after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        process.wait(timeout=10)


def top_imports(tool: Tool) -> tuple[float, list[tuple[float, str]]]:
    """`jobs add` under `python -X importtime`: all imports' total (ms), and the heaviest
    imports made directly by the program (cumulative ms, what each brought in included)."""
    args = [sys.executable, "-X", "importtime", *tool.command("jobs", "add")]
    args.append(json.dumps(shell_spec(1)))
    for _ in range(2):  # the second: nothing left to create or compile
        completed = subprocess.run(
            args, env=tool.env, cwd=tool.home, check=True, capture_output=True, text=True
        )
    total, top = 0, []
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        total += int(own)
        if not name.startswith("  "):  # imported by the program itself, not by a module
            top.append((int(cumulative) / 1000, name.strip()))
    return total / 1000, sorted(top, reverse=True)[:IMPORTS_SHOWN]


def build_job_log(database: str, job_count: int, updates_per_job: int) -> None:
    """Create `job_count` jobs, then update every job `updates_per_job` times, round by
    round, so a job's events lie far apart in the log as they do in real use."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job

    settings = Settings(home=Path(database).parent, database=database)
    log = open_event_log(settings)
    meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
    now = datetime.now(UTC)
    jobs = [new_job(shell_spec(i), f"job-{i:06d}", meta, now) for i in range(job_count)]
    for round_number in range(updates_per_job + 1):
        for job in jobs if round_number else ():
            job.update({"max_retries": round_number}, meta, now)
        for start in range(0, job_count, 500):
            log.save(*jobs[start : start + 500])
    log.close()


def rebuild_rate(database: str) -> tuple[int, float]:
    """One rebuild of the jobs projection from the whole log: events, events/s."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.projections.runner import by_name, rebuild
    from ocsched.projections.store import ReadModelStore

    settings = Settings(home=Path(database).parent, database=database)
    log = open_event_log(settings)
    store = ReadModelStore(settings.read_model_path)
    start = time.perf_counter()
    events = rebuild(log, store, by_name("jobs"))
    elapsed = time.perf_counter() - start
    store.datastore.close()
    log.close()
    return events, events / elapsed


def read_decode_rate(database: str) -> tuple[int, float]:
    """The floor of a rebuild: read and decode every event of the log as the rebuild does,
    apply nothing. Events, events/s."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.projections.runner import by_name
    from ocsched.projections.store import READ_CHUNK

    log = open_event_log(Settings(home=Path(database).parent, database=database))
    topics = by_name("jobs").topics
    events = position = 0
    start = time.perf_counter()
    gc.disable()
    try:
        while chunk := log.read_after(position, READ_CHUNK, topics):
            events += len(chunk)
            position = chunk[-1][0]
    finally:
        gc.enable()
    elapsed = time.perf_counter() - start
    log.close()
    return events, events / elapsed


def rebuild_against_floor(database: str, repeat: int) -> tuple[int, float, float]:
    """Rebuild and floor, alternately, `repeat` times each: events, median rates."""
    rebuilds, floors = [], []
    for _ in range(repeat):
        events, rate = rebuild_rate(database)
        rebuilds.append(rate)
        floors.append(read_decode_rate(database)[1])
    return events, statistics.median(rebuilds), statistics.median(floors)


def cli_rows(tools: list[Tool], work: str, runs: int, daemon_runs: int) -> list[Row]:
    add = ["jobs", "add", json.dumps(shell_spec(0))]
    rows = [alternate("jobs add (one shell job)", tools, add, runs, "<= anchor")]
    seeded = 1000 - runs - 1  # the jobs added above, and the warm-up's
    for tool in tools:
        seed(tool, seeded, 0)
    list_args = ["--json", "jobs", "list"]
    rows.append(alternate("--json jobs list (1,000 jobs)", tools, list_args, runs, "<= 120 ms"))
    rows.append(alternate("status (1,000 jobs)", tools, ["status"], runs, "<= anchor"))
    for tool in tools:
        seed(tool, 9000, seeded)
    rows.append(
        alternate("--json jobs list (10,000 jobs)", tools, list_args, max(3, runs // 3), "")
    )
    firsts: list[list[float]] = [[] for _ in tools]
    cpus: list[list[float]] = [[] for _ in tools]
    missed = [0 for _ in tools]
    for _ in range(daemon_runs):
        for index, tool in enumerate(tools):
            measured = first_run_s(tool, work)
            if measured is None:
                missed[index] += 1
                continue
            firsts[index].append(measured[0] * 1000)
            if measured[1] is not None:
                cpus[index].append(measured[1])
    target = "<= 300 ms" + "".join(
        f"; {tool.name}: {count} of {daemon_runs} rounds did not run in 30 s"
        for tool, count in zip(tools, missed, strict=True)
        if count
    )
    medians = [statistics.median(f) if f else math.nan for f in firsts]
    cpu = [statistics.median(c) if c else None for c in cpus]
    rows.append(Row("daemon start -> first run", medians, cpu, target))
    return rows


def print_cli(rows: list[Row], anchor: bool) -> None:
    """Wall times (medians), and their ratio to the anchor's; CPU times beside them."""
    width = max(len(row.name) for row in rows)
    head = f"{'measurement':<{width}}  {'ocsched':>9}"
    if anchor:
        head += f"  {'anchor':>9}  {'ratio':>5}"
    print(f"{head}  {'cpu ocsched/anchor':>18}  target")
    for row in rows:
        line = f"{row.name:<{width}}  {row.wall[0]:>6.0f} ms"
        if anchor:
            line += f"  {row.wall[1]:>6.0f} ms  {row.wall[0] / row.wall[1]:>5.2f}"
        cpu = " / ".join(f"{ms:.0f}" for ms in row.cpu if ms is not None)
        print(f"{line}  {cpu + ' ms' if cpu else '-':>18}  {row.target}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--daemon-runs", type=int, default=7)
    parser.add_argument("--anchor", type=Path, help="openclaw-scheduler's source folder")
    parser.add_argument("--anchor-node", help="the node binary for the anchor")
    parser.add_argument("--rebuild-events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="rebuilds (and floors) to run")
    parser.add_argument("--rebuild-only", action="store_true", help="skip the CLI timings")
    parser.add_argument("--no-rebuild", action="store_true", help="skip the rebuild")
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="ocsched-bench-")
    try:
        if not options.rebuild_only:
            tools = [ocsched_tool(tempfile.mkdtemp(prefix="ocsched-", dir=work))]
            if options.anchor:
                source = options.anchor.resolve()
                node = anchor_node(source, options.anchor_node)
                home = tempfile.mkdtemp(prefix="anchor-", dir=work)
                tools.append(anchor_tool(home, source, node))
            rows = cli_rows(tools, work, options.runs, options.daemon_runs)
            total, imports = top_imports(tools[0])
            print_cli(rows, len(tools) > 1)
            print(f"\njobs add, python -X importtime: {total:.0f} ms in all imports; the heaviest")
            print("imports of the program itself (cumulative, with what each brought in):")
            for milliseconds, name in imports:
                print(f"  {milliseconds:6.1f} ms  {name}")
        if not options.no_rebuild:
            rebuild_db = os.path.join(work, "rebuild.db")
            build_job_log(rebuild_db, options.rebuild_events // 10, 9)
            events, rate, floor = rebuild_against_floor(rebuild_db, options.repeat)
            if not options.rebuild_only:
                print()
            print(
                f"rebuild jobs projection ({events:,} events)  {rate:,.0f} events/s"
                "  target >= 100,000/s"
            )
            print(
                f"  read+decode floor (same events)  {floor:,.0f} events/s"
                f"  rebuild = {rate / floor:.2f} x floor"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
