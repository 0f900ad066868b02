"""Agent-turn benchmark: 200 isolated agent jobs due at the same instant against the fake
OpenClaw gateway, once with 0 ms replies and once with 200 ms replies; wall time from that
instant until all 200 runs are finished in the runs read model, and the fake's count of the
turns it actually ran (must be exactly 200: no turn lost, none run twice).

    .venv/bin/python scripts/bench/agents.py [--jobs 200] [--rounds 3] [--delays 0,0.2]
        [--max-turns N] [--lead 3] [--profile PREFIX]

Targets on the 2-core reference machine (median of the rounds): <= 0.76 s with 0 ms
replies, <= 2 s with 200 ms replies. openclaw-scheduler needs 0.76 s and 41.3 s, because it
runs the turns one after another; here they run concurrently, bounded by
`OCSCHED_MAX_CONCURRENT_TURNS` (`--max-turns`; unset: the daemon's default, printed).

The fake (`ocsched.testing.fake_gateway.FakeGateway`) is served from a background thread
of this process, on its own event loop, so its record can be read: `turns()` (turns run,
not idempotent replays), the distinct idempotency keys of the `agent` calls, the `/health`
probes, and, from a subclass that wraps each turn, the peak number of turns in flight and
when the first turn began and the last one ended. Each round gets a fresh fake, home and
daemon (`OPENCLAW_GATEWAY_URL`/`OPENCLAW_GATEWAY_TOKEN` pointing at the fake).

How "due" is measured (as `reactor_burst.py`): the daemon is started and left idle, then
the jobs are seeded through the library as one-shot `at` jobs (deleted after their run) due
at a whole second `--lead` seconds ahead; the daemon loads their timers long before, so the
clock starts at the due instant itself. The jobs are `session_target` "isolated" with
`delivery_mode` "none" (and an opt-out reason), so only the turns are measured, no
deliveries. The end is seen by polling the runs table (plain sqlite3, every 5 ms near the
end: `daemon_harness.poll_pause`). The breakdown rows come from the runs' events
(`Run.Scheduled`, `Run.Started` -- recorded when the gateway accepts the turn --,
`Run.Finished`) and from the fake (first and last `/health` probe, first turn begun, last
turn ended), relative to due.

`--profile PREFIX` runs one round per reply delay with the daemon under cProfile (see
`daemon_harness.py`): `PREFIX-<ms>ms.loop` and `PREFIX-<ms>ms.writer`, both printed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import pstats
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

from daemon_harness import (
    BenchHome,
    Daemon,
    count_finished_runs,
    cpu_seconds,
    poll_pause,
    print_table,
    read_only,
    run_events,
    run_timeline,
    seed_jobs,
)

TARGETS = {0.0: 0.76, 0.2: 2.0}
TURNS_ENV = "OCSCHED_MAX_CONCURRENT_TURNS"


def counting_fake_class():
    """`FakeGateway` with each turn wrapped (in flight, peak, first start, last end) and
    the arrival time of each `/health` probe."""
    from ocsched.testing.fake_gateway import FakeGateway

    class CountingFake(FakeGateway):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.in_flight = 0
            self.peak = 0
            self.first_turn: float | None = None
            self.last_end: float | None = None
            self.health_times: list[float] = []

        async def _health(self, request: Any) -> Any:
            self.health_times.append(time.time())
            return await super()._health(request)

        async def _turn(self, run: Any) -> None:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.first_turn is None:
                self.first_turn = time.time()
            try:
                await super()._turn(run)
            finally:
                self.in_flight -= 1
                self.last_end = time.time()

    return CountingFake


class ThreadedFake:
    """The fake gateway served from a daemon thread with its own event loop (as the tests'
    `ThreadedFakeGateway`); `stop()` stops the server, the loop and the thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        try:
            self.fake = counting_fake_class()(**options)
            self._call(self.fake.start())
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coroutine: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    def env(self) -> dict[str, str]:
        return {"OPENCLAW_GATEWAY_URL": self.fake.url, "OPENCLAW_GATEWAY_TOKEN": self.fake.token}

    def thread_cpu(self) -> float:
        """CPU seconds of the fake's thread (its event loop: WebSocket frames, JSON, turns),
        read on that thread."""

        async def read() -> float:
            return time.thread_time()

        return self._call(read(), 5)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()

    def stop(self) -> None:
        try:
            self._call(self.fake.stop())
        finally:
            self._stop_loop()

    def __enter__(self) -> ThreadedFake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def agent_spec(name: str, due: datetime) -> dict[str, Any]:
    """An isolated agent job as `tests/test_agent_jobs.agent_job()` makes it, one-shot at
    `due`, with delivery off so only the turn is measured."""
    from ocsched.domain.schedule import to_ts

    return {
        "name": name,
        "session_target": "isolated",
        "payload_message": f"Summarize the news ({name})",
        "run_timeout_ms": 60000,
        "origin": "system",
        "delivery_mode": "none",
        "delivery_opt_out_reason": "the benchmark reads the run record",
        "schedule_kind": "at",
        "schedule_at": to_ts(due),
        "delete_after_run": 1,
    }


def effective_max_turns(configured: int | None) -> tuple[int, str]:
    """The turn bound the daemon will use, and where it comes from."""
    from ocsched.adapters.settings import Settings

    if configured is not None:
        return configured, f"{TURNS_ENV}={configured} (--max-turns)"
    turns = Settings.from_environment().reactor.max_concurrent_turns
    if os.environ.get(TURNS_ENV):
        return turns, f"{TURNS_ENV}={os.environ[TURNS_ENV]} (env)"
    return turns, f"{TURNS_ENV} unset: the daemon's default"


def one_round(options: argparse.Namespace, delay: float) -> dict[str, Any]:
    """A fresh fake, home and daemon; the burst; everything stopped, the home deleted."""
    profile = f"{options.profile}-{delay * 1000:.0f}ms" if options.profile else None
    with ThreadedFake(reply_delay_s=delay) as served, BenchHome() as home:
        home.env.update(served.env())
        if options.max_turns is not None:
            home.env[TURNS_ENV] = str(options.max_turns)
        with Daemon(home, profile=profile) as daemon:
            time.sleep(0.5)  # idle: start-up catch-up and the first timer load are over
            result = burst(options, home, daemon.pid, served)
            daemon.stop()
            log = daemon.log
            if options.profile:
                print("".join(line for line in log.splitlines(True) if "bench:" in line))
            result["errors"] = sum("error" in line.lower() for line in log.splitlines())
            result["log_tail"] = log.splitlines()[-5:]
        # Read after the daemon stopped: a late duplicate turn would be counted too.
        fake = served.fake
        result["turns"] = fake.turns()
        keys = [call["idempotencyKey"] for call in fake.calls_of("agent")]
        result["agent_calls"] = len(keys)
        result["distinct_keys"] = len(set(keys))
        result["keys_match_runs"] = set(keys) == set(result["run_ids"])
        result["health_probes"] = len(fake.calls_of("GET /health"))
        result["connects"] = len(fake.calls_of("connect"))
        result["peak_in_flight"] = fake.peak
        due = result["due"]
        result["fake_first_turn"] = (fake.first_turn or math.nan) - due
        result["fake_last_end"] = (fake.last_end or math.nan) - due
        probes = [t for t in fake.health_times if t >= due - 1]
        result["first_probe"] = (min(probes) if probes else math.nan) - due
        result["last_probe"] = (max(probes) if probes else math.nan) - due
    return result


def burst(
    options: argparse.Namespace, home: BenchHome, pid: int, served: ThreadedFake
) -> dict[str, Any]:
    """Seed the jobs due `--lead` seconds ahead into the running daemon's store and time
    due -> all runs finished in the read model; the breakdown from the runs' events."""
    from ocsched.domain.run import clock_run_id
    from ocsched.domain.schedule import to_ts

    due_epoch = math.ceil(time.time() + options.lead)
    due = datetime.fromtimestamp(due_epoch, UTC)
    specs = [(f"agent-{i:05d}", agent_spec(f"agent {i:05d}", due)) for i in range(options.jobs)]
    seed_seconds = seed_jobs(home, specs)
    if time.time() > due_epoch - 0.3:
        raise SystemExit(f"seeding took {seed_seconds:.2f} s, too close to due: raise --lead")
    connection = read_only(home.database)
    time.sleep(max(due_epoch - 0.1 - time.time(), 0))
    cpu_before = cpu_seconds(pid)
    fake_cpu_before = served.thread_cpu()
    deadline = due_epoch + 120
    try:
        while (finished := count_finished_runs(connection)) < options.jobs:
            if time.time() > deadline:
                raise SystemExit(f"only {finished}/{options.jobs} runs finished after 120 s")
            time.sleep(poll_pause(options.jobs - finished))
        all_finished = time.time()
        cpu_after = cpu_seconds(pid)
        fake_cpu_after = served.thread_cpu()
        statuses = dict(connection.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    finally:
        connection.close()
    slot = to_ts(due)
    run_ids = [clock_run_id(job_id, slot) for job_id, _ in specs]
    events = run_events(home, run_ids)

    return {
        "due": due_epoch,
        "run_ids": run_ids,
        "statuses": statuses,
        **run_timeline(events, due_epoch, all_finished),
        "daemon_cpu": cpu_after[0] - cpu_before[0],
        "fake_cpu": fake_cpu_after - fake_cpu_before,
    }


def print_profile(prefix: str) -> None:
    for part in ("loop", "writer"):
        print(f"\n== cProfile of the daemon's {part}, {prefix} (cumulative, top 30) ==")
        stats = pstats.Stats(f"{prefix}.{part}")
        stats.sort_stats("cumulative").print_stats(30)


def rows_for(delay: float, rounds: list[dict[str, Any]], jobs: int, bound: int) -> list[tuple]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def ms(key: str) -> str:
        return f"{median(key) * 1000:.0f} ms"

    label = f"{delay * 1000:.0f} ms replies"
    total = median("total")
    target = TARGETS.get(round(delay, 3))
    verdict = ""
    if target is not None:
        verdict = f"<= {target} s" + ("" if total <= target else "  MISSED")
    turns = sorted({r["turns"] for r in rounds})
    turns_ok = all(
        r["turns"] == jobs and r["distinct_keys"] == jobs and r["keys_match_runs"] for r in rounds
    )
    statuses_ok = all(r["statuses"].get("ok") == jobs for r in rounds)
    peak = max(r["peak_in_flight"] for r in rounds)
    return [
        (
            f"{jobs} agent jobs due -> all finished in read model ({label})",
            f"{total:.2f} s",
            verdict,
        ),
        (
            "  turns run by the fake (every round)",
            "/".join(str(t) for t in turns),
            f"exactly {jobs}" + ("" if turns_ok else "  FAILED"),
        ),
        (
            "  agent calls / distinct idempotency keys (max)",
            f"{max(r['agent_calls'] for r in rounds)} / {max(r['distinct_keys'] for r in rounds)}",
            "keys = the runs' ids" if turns_ok else "keys != the runs' ids  FAILED",
        ),
        (
            "  runs finished 'ok' (every round)",
            "/".join(sorted({str(r["statuses"].get("ok", 0)) for r in rounds})),
            f"{jobs}" + ("" if statuses_ok else "  FAILED"),
        ),
        ("  peak turns in flight at the fake (max)", f"{peak}", f"<= {bound} (the bound)"),
        ("  due -> first /health probe at the fake", ms("first_probe"), ""),
        ("  due -> last /health probe at the fake", ms("last_probe"), ""),
        ("  due -> first Run.Scheduled", ms("first_scheduled"), ""),
        ("  due -> last Run.Scheduled", ms("last_scheduled"), ""),
        ("  due -> first turn at the fake", ms("fake_first_turn"), ""),
        ("  due -> first Run.Started (turn accepted)", ms("first_started"), ""),
        ("  due -> last Run.Started", ms("last_started"), ""),
        ("  due -> last turn ended at the fake", ms("fake_last_end"), ""),
        ("  due -> last Run.Finished", ms("last_finished"), ""),
        ("  last Run.Finished -> read model", ms("read_model"), ""),
        ("  daemon CPU (all threads) from due to the end", ms("daemon_cpu"), ""),
        ("  fake gateway CPU (its thread) over the same span", ms("fake_cpu"), ""),
        (
            "  gateway /health probes, WS connects (max)",
            f"{max(r['health_probes'] for r in rounds)}, {max(r['connects'] for r in rounds)}",
            "",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per reply delay")
    parser.add_argument(
        "--delays", default="0,0.2", help="reply delays of the fake, seconds, comma-separated"
    )
    parser.add_argument(
        "--max-turns", type=int, help=f"set {TURNS_ENV} for the daemon (default: leave unset)"
    )
    parser.add_argument("--lead", type=float, default=3.0, help="seconds from seeding to due")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="one round per delay under cProfile; PREFIX-*"
    )
    options = parser.parse_args()
    if options.max_turns is not None and options.max_turns < 1:
        parser.error("--max-turns must be >= 1")
    delays = [float(text) for text in options.delays.split(",") if text.strip()]
    bound, source = effective_max_turns(options.max_turns)

    rows: list[tuple] = []
    results: dict[float, list[dict[str, Any]]] = {}
    for delay in delays:
        count = 1 if options.profile else options.rounds
        results[delay] = [one_round(options, delay) for _ in range(count)]
        rows += rows_for(delay, results[delay], options.jobs, bound)
    rows.append(("max concurrent turns toward the gateway", f"{bound}", source))
    print_table(rows)
    for delay, rounds in results.items():
        print(
            f"rounds, {delay * 1000:.0f} ms replies:",
            ", ".join(f"{r['total']:.2f} s" for r in rounds),
        )
        for r in rounds:
            if r["errors"] or r["statuses"].get("ok") != options.jobs:
                print(f"  statuses {r['statuses']}; {r['errors']} daemon log lines with 'error'")
                print("  daemon log tail:", *r["log_tail"], sep="\n    ")
    if options.profile:
        for delay in delays:
            print_profile(f"{options.profile}-{delay * 1000:.0f}ms")


if __name__ == "__main__":
    main()
