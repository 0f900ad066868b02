"""Chaos: agent jobs through a gateway that fails a fixed share of the time.

    .venv/bin/python scripts/chaos/gateway_faults.py [--jobs 200] [--fault-rate 0.3]
        [--seed 7] [--reply-delay 0.05] [--slow 1.0] [--lead 3] [--max-wait 300]

Starts the project's fake gateway as a process on 127.0.0.1 (`python -m
ocsched.testing.fake_gateway`) with `--fault-rate` of its WebSocket connects and requests
failing, drawn from a generator seeded with `--seed`: a 5xx or a 529/overload answer before
anything is accepted, the socket dropped before the request is handled or after it took
effect (for `agent`: right after the accepted frame, the turn goes on), or an answer
`--slow` seconds late (the probes are never faulted). Then a daemon on a temporary home
(`scripts/bench/daemon_harness.py`) and `--jobs` isolated agent jobs (as
`scripts/bench/agents.py` makes them, with one retry each) due at the same instant. It
waits, at most `--max-wait` seconds, until every run is terminal and every failed run's
retry has run too, and prints:

* runs terminal / total, and the runs by status;
* turns per run attempt: for each run, the turns the fake ran under its id (the turn's
  idempotency key), as a distribution and its maximum (must be exactly 1 each);
* turns per job (a run recorded as failed and retried would show 2);
* runs recorded as failed whose turn the fake completed successfully (must be 0);
* the faults injected by kind, the `agent` / `agent.wait` requests and connects seen;
* elapsed: from the due instant until every run was terminal.

Exits 1 when a check fails. Every process it starts is stopped, the home deleted.
"""

from __future__ import annotations

import argparse
import json
import math
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from agents import agent_spec  # noqa: E402
from daemon_harness import BenchHome, Daemon, print_table, read_only, seed_jobs  # noqa: E402

TOKEN = "chaos-gateway-token"
MAX_RETRIES = 1


class FakeGatewayProcess:
    """`python -m ocsched.testing.fake_gateway` with faults, on 127.0.0.1; its record read
    over its control API. `stop()` sends SIGTERM, waits, kills on timeout."""

    def __init__(self, *, fault_rate: float, seed: int, reply_delay: float, slow: float) -> None:
        command = [
            sys.executable,
            "-m",
            "ocsched.testing.fake_gateway",
            "--host=127.0.0.1",
            "--port=0",
            f"--token={TOKEN}",
            f"--reply-delay={reply_delay}",
            f"--fault-rate={fault_rate}",
            f"--fault-seed={seed}",
            f"--slow={slow}",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise

    def _read_url(self, timeout: float = 15.0) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake gateway did not start (it printed {line!r})")
        return line

    def env(self) -> dict[str, str]:
        return {"OPENCLAW_GATEWAY_URL": self.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}

    def record(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/__fake__/record", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FakeGatewayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def runs(connection: sqlite3.Connection) -> list[dict[str, Any]]:
    connection.row_factory = sqlite3.Row
    try:
        columns = "id, job_id, status, finished_at, error_message, retry_count, retry_of"
        rows = connection.execute(f"SELECT {columns} FROM runs").fetchall()
    except sqlite3.OperationalError:  # the table may not exist yet
        return []
    return [dict(row) for row in rows]


def settled(found: list[dict[str, Any]], jobs: int) -> bool:
    """Every job has a run, every run is terminal, and every failed run with a retry left
    has its retry."""
    if len({run["job_id"] for run in found}) < jobs:
        return False
    if any(run["finished_at"] is None for run in found):
        return False
    retried = {run["retry_of"] for run in found if run["retry_of"]}
    return all(
        run["id"] in retried
        for run in found
        if run["status"] in ("error", "timeout") and (run["retry_count"] or 0) < MAX_RETRIES
    )


def run_chaos(
    *,
    jobs: int = 200,
    fault_rate: float = 0.3,
    seed: int = 7,
    reply_delay: float = 0.05,
    slow: float = 1.0,
    lead: float = 3.0,
    max_wait: float = 300.0,
) -> dict[str, Any]:
    """One round: the fake, a daemon, `jobs` agent jobs due at once; the figures."""
    with (
        FakeGatewayProcess(
            fault_rate=fault_rate, seed=seed, reply_delay=reply_delay, slow=slow
        ) as fake,
        BenchHome() as home,
    ):
        home.env.update(fake.env())
        home.env["OCSCHED_RETRY_BASE_S"] = "1"  # a wrongly failed run's retry comes at once
        with Daemon(home) as daemon:
            due_epoch = math.ceil(time.time() + lead)
            due = datetime.fromtimestamp(due_epoch, UTC)
            specs = [
                (
                    f"chaos-{i:05d}",
                    {
                        **agent_spec(f"chaos {i:05d}", due),
                        "delete_after_run": 0,
                        "max_retries": MAX_RETRIES,
                    },
                )
                for i in range(jobs)
            ]
            seed_jobs(home, specs)
            if time.time() > due_epoch - 0.2:
                raise SystemExit("seeding took too long for the lead: raise --lead")
            connection = read_only(home.database)
            try:
                deadline = due_epoch + max_wait
                while not settled(found := runs(connection), jobs) and time.time() < deadline:
                    time.sleep(0.05)
                elapsed = time.time() - due_epoch
            finally:
                connection.close()
            daemon.stop()
            log_errors = daemon.log_count("Traceback")
        record = fake.record()  # after the daemon stopped: a late turn would count too
    return figures(found, record, jobs=jobs, elapsed=elapsed, log_errors=log_errors)


def figures(
    found: list[dict[str, Any]], record: dict[str, Any], *, jobs: int, elapsed: float, **extra: Any
) -> dict[str, Any]:
    turns = record["turns"]
    per_run = Counter(turns.get(run["id"], {}).get("count", 0) for run in found)
    per_job: Counter[str] = Counter()
    for run in found:
        per_job[run["job_id"]] += turns.get(run["id"], {}).get("count", 0)
    failed_but_ok = [
        run["id"]
        for run in found
        if run["status"] != "ok" and turns.get(run["id"], {}).get("status") == "ok"
    ]
    return {
        "jobs": jobs,
        "runs": len(found),
        "terminal": sum(run["finished_at"] is not None for run in found),
        "statuses": dict(Counter(run["status"] for run in found)),
        "turns_per_run": dict(sorted(per_run.items())),
        "turns_per_job": dict(sorted(Counter(per_job.values()).items())),
        "failed_but_ok": failed_but_ok,
        "errors": sorted({run["error_message"] for run in found if run["status"] != "ok"}),
        "faults": record["faults"],
        "calls": record["calls"],
        "elapsed": elapsed,
        **extra,
    }


def failures(result: dict[str, Any]) -> list[str]:
    """The checks the figures must pass."""
    found = []
    if result["runs"] == 0 or result["terminal"] != result["runs"]:
        found.append(f"runs terminal {result['terminal']}/{result['runs']}")
    if result["failed_but_ok"]:
        found.append(f"{len(result['failed_but_ok'])} runs failed whose turn succeeded")
    if set(result["turns_per_run"]) != {1}:
        found.append(f"turns per run attempt {result['turns_per_run']}")
    if result["turns_per_job"] != {1: result["jobs"]}:
        found.append(f"turns per job {result['turns_per_job']}")
    return found


def distribution(counts: dict[int, int]) -> str:
    return ", ".join(f"{turns} turn(s): {runs}" for turns, runs in counts.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reply-delay", type=float, default=0.05, metavar="S")
    parser.add_argument("--slow", type=float, default=1.0, metavar="S")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds from seeding to due")
    parser.add_argument("--max-wait", type=float, default=300.0, metavar="S")
    options = parser.parse_args()
    result = run_chaos(
        jobs=options.jobs,
        fault_rate=options.fault_rate,
        seed=options.seed,
        reply_delay=options.reply_delay,
        slow=options.slow,
        lead=options.lead,
        max_wait=options.max_wait,
    )
    calls = result["calls"]
    turns_per_run = result["turns_per_run"]
    rows = [
        (
            f"{result['jobs']} agent jobs, {options.fault_rate:.0%} faults (seed {options.seed})",
            "",
            "",
        ),
        ("  runs terminal / total", f"{result['terminal']} / {result['runs']}", "all"),
        ("  runs by status", json.dumps(result["statuses"]), ""),
        (
            "  turns per run attempt (max)",
            str(max(turns_per_run, default=0)),
            "exactly 1",
        ),
        ("  turns per run attempt (distribution)", distribution(turns_per_run), ""),
        ("  turns per job (distribution)", distribution(result["turns_per_job"]), "1 each"),
        ("  runs failed whose turn succeeded", str(len(result["failed_but_ok"])), "0"),
        ("  faults injected", json.dumps(result["faults"], sort_keys=True), ""),
        (
            "  agent / agent.wait requests, connects",
            f"{calls.get('agent', 0)} / {calls.get('agent.wait', 0)}, {calls.get('connect', 0)}",
            "",
        ),
        ("  daemon log tracebacks", str(result["log_errors"]), "0"),
        ("  elapsed, due -> every run terminal", f"{result['elapsed']:.1f} s", ""),
    ]
    print_table(rows, value_header="value")
    for message in result["errors"][:5]:
        print(f"  error recorded: {message}")
    problems = failures(result) + (["tracebacks in the daemon log"] if result["log_errors"] else [])
    if problems:
        print("FAILED:", "; ".join(problems))
        raise SystemExit(1)
    print("passed")


if __name__ == "__main__":
    main()
