"""Several daemons on one PostgreSQL log (issue 13): throughput of due runs with 1, 2 and 3
daemons, the due->start lag across hosts, and the failover time after a kill -9.

    .venv/bin/python scripts/bench/cluster.py [--burst 600] [--jobs 1000] [--window 60]
        [--hosts 1,2,3] [--url postgresql://postgres@127.0.0.1:5432/test]

Each measurement gets a database of its own (made through `--url`'s server, dropped at the
end) and a home per daemon (its read models), all on this machine: "hosts" here are homes.

* Throughput: `--burst` one-shot shell jobs (`true`) due at one whole second; runs per
  second from that instant until the last run has started, for each daemon count.
* Spread and failover: three daemons, `--jobs` one-shot jobs due across `--window`
  seconds (seeded beforehand through the library); each run's shell appends
  `<job> <run id> <epoch>` to one file. Half way through, one daemon is killed with
  SIGKILL. Lag = start - due (due is a whole second); failover time = the largest lag of
  a job due from 1 s before the kill to `LEASE_S + 3` s after it. Then: every run ends (no run
  left pending or running), no job has two runs ("0 slots fired twice"), and the starts
  per host (by the run's owner) show the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_harness import at_spec, percentile  # noqa: E402

OCSCHED = [sys.executable, "-m", "ocsched"]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
ACTIVE = ("pending", "queued", "running")


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of `admin_url`, dropped afterwards."""
    import psycopg

    name = f"ocsched_cluster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield admin_url.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


class Host:
    """A home with its own read models and an `ocsched daemon` on the shared log."""

    def __init__(self, root: Path, name: str, url: str) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir(parents=True)
        self.env = {**os.environ, "SCHEDULER_HOME": str(self.home), "SCHEDULER_DB": url}
        self.env.update(TZ="UTC", OCSCHED_ACTOR=name)
        self.process: subprocess.Popen | None = None
        self.log_path = root / f"{name}.log"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*OCSCHED, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"ocsched {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [*OCSCHED, "daemon"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while " started; database " not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def runs(self) -> sqlite3.Connection:
        connection = sqlite3.connect(f"file:{self.home / 'read-models.db'}?mode=ro", uri=True)
        connection.row_factory = sqlite3.Row
        return connection


@contextlib.contextmanager
def cluster(url: str, count: int) -> Iterator[list[Host]]:
    """`count` daemons on `url`, started one after another (the first makes the tables),
    each seen live by the others before this returns; all stopped on exit."""
    root = Path(tempfile.mkdtemp(prefix="ocsched-cluster-"))
    hosts = [Host(root, f"host{index}", url) for index in range(count)]
    try:
        hosts[0].cli("status")
        for host in hosts:
            host.start()
        wait_for(lambda: len(live_members(url)) == count, 20, "every daemon's lease")
        yield hosts
    finally:
        for host in hosts:
            host.stop()
        shutil.rmtree(root, ignore_errors=True)


def live_members(url: str) -> list[str]:
    from ocsched.adapters.cluster import members
    from ocsched.adapters.event_store import postgres_env
    from ocsched.adapters.pg_notify import connection_arguments

    return [m.identity for m in members(connection_arguments(postgres_env(url))) if m.live]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed(host: Host, dues: list[float], command: str) -> list[str]:
    """One-shot jobs due at `dues` (epoch seconds, whole), saved through the library in
    batches; `command` is formatted with the job's index. Returns their ids."""
    from ocsched.adapters.event_store import open_event_log
    from ocsched.adapters.settings import Settings
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.job import new_job

    settings = Settings(home=host.home, database=host.env["SCHEDULER_DB"])
    log = open_event_log(settings)
    ids = [f"job-{index:05d}" for index in range(len(dues))]
    try:
        meta = EventMeta(actor="bench", origin="bench", correlation_id="bench")
        now = datetime.now(UTC)
        jobs = [
            new_job(
                at_spec(
                    job_id,
                    datetime.fromtimestamp(due, UTC),
                    delete_after_run=0,
                    payload_message=command.format(index=index),
                ),
                job_id,
                meta,
                now,
            )
            for index, (job_id, due) in enumerate(zip(ids, dues, strict=True))
        ]
        for start in range(0, len(jobs), 500):
            log.save(*jobs[start : start + 500])
    finally:
        log.close()
    return ids


def starts(path: Path) -> dict[int, list[tuple[str, float]]]:
    """Each job index's starts: (run id, epoch)."""
    found: dict[int, list[tuple[str, float]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            index, run_id, epoch = line.split()
            found.setdefault(int(index), []).append((run_id, float(epoch)))
    return found


def settled(host: Host, count: int) -> bool:
    """Whether `count` runs are recorded in `host`'s read models and none is active."""
    with contextlib.closing(host.runs()) as connection, contextlib.suppress(sqlite3.Error):
        total = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        marks = ",".join("?" * len(ACTIVE))
        active = connection.execute(
            f"SELECT count(*) FROM runs WHERE status IN ({marks})", ACTIVE
        ).fetchone()[0]
        return bool(total >= count and active == 0)
    return False


def throughput(url: str, daemons: int, jobs: int, lead: float = 4.0) -> float:
    """Runs started per second from the due instant of `jobs` one-shot jobs."""
    with cluster(url, daemons) as hosts:
        out = hosts[0].home.parent / "starts"
        due = math.ceil(time.time() + lead)
        seed(hosts[0], [due] * jobs, f'echo "{{index}} $OCSCHED_RUN_ID $(date +%s.%N)" >> {out}')
        wait_for(lambda: sum(map(len, starts(out).values())) >= jobs, 120, "every run to start")
        last = max(epoch for runs in starts(out).values() for _, epoch in runs)
        wait_for(lambda: settled(hosts[0], jobs), 60, "every run to end")
    return jobs / (last - due)


def spread_and_failover(url: str, jobs: int, window: float, kill: bool = True) -> dict[str, Any]:
    """Three daemons, `jobs` due across `window` seconds, one killed half way."""
    from ocsched.adapters.cluster import LEASE_S

    with cluster(url, 3) as hosts:
        out = hosts[0].home.parent / "starts"
        first = math.ceil(time.time() + 3 + jobs / 2000)
        dues = [first + math.floor(i * window / jobs) for i in range(jobs)]
        command = f'echo "{{index}} $OCSCHED_RUN_ID $(date +%s.%N)" >> {out}; sleep 0.5'
        seed(hosts[0], dues, command)
        killed_at = None
        victim = hosts[1]
        if kill:
            # A quarter second into a second: that second's runs are in flight.
            time.sleep(max(0.0, first + math.floor(window / 2) + 0.25 - time.time()))
            victim.stop(signal.SIGKILL)
            killed_at = time.time()
        survivor = hosts[0]
        wait_for(lambda: settled(survivor, jobs), window + 60, "every run to end")
        found = starts(out)
        with contextlib.closing(survivor.runs()) as connection:
            rows = connection.execute("SELECT job_id, status, owner FROM runs").fetchall()
    runs_per_job = Counter(row["job_id"] for row in rows)
    lags = [(i, epoch - dues[i]) for i, runs in found.items() for _, epoch in runs]
    result: dict[str, Any] = {
        "jobs": jobs,
        "runs": len(rows),
        "slots fired twice": sum(1 for n in runs_per_job.values() if n > 1)
        + sum(1 for runs in found.values() if len(runs) > 1),
        "jobs without a run": jobs - len(runs_per_job),
        "active runs left": sum(1 for row in rows if row["status"] in ACTIVE),
        "statuses": dict(Counter(row["status"] for row in rows)),
        "runs per daemon": dict(Counter(row["owner"] for row in rows)),
        "lag p50 s": percentile([lag for _, lag in lags], 0.5),
        "lag p99 s": percentile([lag for _, lag in lags], 0.99),
    }
    if killed_at is not None:
        near = [lag for i, lag in lags if killed_at - 1 <= dues[i] <= killed_at + LEASE_S + 3]
        calm = [lag for i, lag in lags if not killed_at - 1 <= dues[i] <= killed_at + LEASE_S + 3]
        result["failover (largest lag of a job due near the kill) s"] = max(near, default=0)
        result["lag p99, jobs due away from the kill s"] = percentile(calm, 0.99)
        result["killed"] = victim.name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--hosts", default="1,2,3")
    parser.add_argument("--url", default=ADMIN_URL)
    options = parser.parse_args()
    for count in [int(n) for n in options.hosts.split(",") if n]:
        with database(options.url) as url:
            rate = throughput(url, count, options.burst)
        print(f"throughput, {count} daemon(s), {options.burst} due at once: {rate:.0f} runs/s")
    if options.jobs:
        with database(options.url) as url:
            result = spread_and_failover(url, options.jobs, options.window)
        for key, value in result.items():
            shown = f"{value * 1000:.0f} ms" if key.endswith(" s") else value
            print(f"{key}: {shown}")


if __name__ == "__main__":
    main()
