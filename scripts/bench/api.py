"""API benchmark: latency of `/api/v1/jobs` under 100 concurrent clients with 10,000 jobs
stored, and the daemon's due -> start lag while its API (`daemon --serve`) is polled.

    .venv/bin/python scripts/bench/api.py [--jobs 10000] [--clients 100] [--requests 20]
        [--lag-jobs 50] [--spread 30] [--dashboards 100] [--pollers 10] [--quick]

Method. Part 1: a bench home with `--jobs` shell cron jobs (seeded through the library, as
the other benchmarks do), `ocsched serve` as a process on 127.0.0.1, and `--clients`
aiohttp clients in this process, each sending `--requests` requests one after another (no
pause), all clients at once; latency is measured per request from send to the last byte
read. Four scenarios: every client asking the first page (`/api/v1/jobs`, 100 jobs; after
the first answer the server's answer cache holds it), every request a distinct query (each
page of the list, found by following the cursors, at 20 sizes from 100 to 119: no answer
cached), a page of 1,000 (`?limit=1000`), and a revalidation (`If-None-Match` with the
page's ETag: 304). Part 2:
`ocsched daemon --serve` on a home with the same idle jobs, `--lag-jobs` one-shot jobs due
over `--spread` seconds (`reactor_lag.py`'s method: lag = the `Run.Started` event's time
minus the due instant): with nobody polling, with `--dashboards` clients each requesting
the first jobs page or `/metrics` once a second, and with `--pollers` clients doing so
without pause. The clients run on the same 2-core machine as the server, so their CPU is
part of the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence

from daemon_harness import (
    OCSCHED,
    BenchHome,
    Daemon,
    percentile,
    print_table,
    seed_jobs,
    shell_spec,
)
from reactor_lag import due_to_event_lags


def idle_jobs(count: int) -> list[tuple[str, dict]]:
    return [
        (f"idle-{i:06d}", shell_spec(f"idle {i:06d}", schedule_cron="0 0 1 1 *"))
        for i in range(count)
    ]


class Server:
    """`ocsched --json serve --port 0` on a bench home."""

    def __init__(self, home: BenchHome) -> None:
        self.process = subprocess.Popen(
            [OCSCHED, "--json", "serve", "--port", "0"],
            env=home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        lines = []
        for line in self.process.stdout:
            lines.append(line)
            if line.rstrip() == "}":
                break
        self.url = json.loads("".join(lines))["url"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def load(
    urls: Sequence[str], clients: int, headers: dict[str, str] | None = None
) -> tuple[list[float], float, set[int]]:
    """Latencies (ms) of GETs of `urls` by `clients` clients at once, each sending its
    share one after another; the wall time; the statuses seen."""
    import aiohttp

    latencies: list[float] = []
    statuses: set[int] = set()
    share = len(urls) // clients
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(mine: Sequence[str]) -> None:
            for url in mine:
                started = time.perf_counter()
                async with session.get(url, headers=headers) as answer:
                    await answer.read()
                    statuses.add(answer.status)
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(client(urls[c * share : (c + 1) * share]) for c in range(clients)))
        return latencies, time.perf_counter() - began, statuses


def page_cursors(first_page: str) -> list[str]:
    """Every page's cursor (the first page's is ""), following the Link headers."""
    import re
    import urllib.request

    cursors, url = [""], first_page
    while True:
        with urllib.request.urlopen(url) as answer:
            link = answer.headers.get("Link")
            answer.read()
        if not link:
            return cursors
        cursors.append(answer.headers["X-Next-Cursor"])
        url = first_page.split("/api/")[0] + re.match(r"<([^>]+)>", link).group(1)


def latency_rows(name: str, latencies: Sequence[float], wall: float) -> list[tuple]:
    return [
        (f"{name}: median", f"{statistics.median(latencies):.1f} ms", ""),
        (f"{name}: p99", f"{percentile(latencies, 0.99):.1f} ms", ""),
        (f"{name}: max", f"{max(latencies):.1f} ms", ""),
        (f"{name}: throughput", f"{len(latencies) / wall:.0f} req/s", ""),
    ]


def api_latency(jobs: int, clients: int, requests: int) -> list[tuple]:
    import urllib.request

    rows: list[tuple] = []
    with BenchHome() as home:
        seed_jobs(home, idle_jobs(jobs))
        server = Server(home)
        try:
            page = f"{server.url}/api/v1/jobs"
            with urllib.request.urlopen(page) as answer:
                tag = answer.headers["ETag"]
                assert len(json.loads(answer.read())) == min(jobs, 100)
            asyncio.run(load([page] * 50, 10))  # warm: connections, each worker's context
            cursors = page_cursors(page)
            total = clients * requests
            # Distinct queries: each page at 20 sizes (100..119 jobs), none answered twice.
            distinct = [
                f"{page}?limit={100 + (i // len(cursors)) % 20}&cursor={cursors[i % len(cursors)]}"
                for i in range(total)
            ]
            for name, urls, headers, wanted in (
                (
                    f"jobs, first page of 100 ({jobs:,} jobs, {clients} clients)",
                    [page] * total,
                    None,
                    200,
                ),
                (f"jobs, {total:,} distinct pages of 100-119", distinct, None, 200),
                (
                    f"jobs, page of 1,000 ({clients} clients)",
                    [page + "?limit=1000"] * total,
                    None,
                    200,
                ),
                (
                    f"revalidation, 304 ({clients} clients)",
                    [page] * total,
                    {"If-None-Match": tag},
                    304,
                ),
            ):
                latencies, wall, statuses = asyncio.run(load(urls, clients, headers))
                assert statuses == {wanted}, statuses
                rows += latency_rows(name, latencies, wall)
        finally:
            server.stop()
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Pollers:
    """`count` clients requesting the jobs page and /metrics in a loop, in a thread, each
    `every` seconds (0: without pause)."""

    def __init__(self, url: str, count: int, every: float) -> None:
        self.url, self.count, self.every, self.requests = url, count, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:

            async def poll(path: str, index: int) -> None:
                await asyncio.sleep(self.every * index / self.count)  # spread over a period
                while not self._stop.is_set():
                    async with session.get(self.url + path) as answer:
                        await answer.read()
                    self.requests += 1
                    await asyncio.sleep(self.every)

            paths = ["/api/v1/jobs", "/metrics"]
            await asyncio.gather(*(poll(paths[i % 2], i) for i in range(self.count)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def lag_while_polled(
    jobs: int, lag_jobs: int, spread: int, pollers: int, every: float
) -> tuple[list[float], int, float]:
    """The Started lags (ms) with `pollers` clients polling the daemon's API every `every`
    seconds (0 pollers: nobody), the requests they made and over how many seconds."""
    with BenchHome() as home:
        seed_jobs(home, idle_jobs(jobs))
        port = free_port()
        os.environ["OCSCHED_BENCH_DAEMON"] = f"{OCSCHED} daemon --serve 127.0.0.1:{port}"
        try:
            with Daemon(home) as daemon:
                time.sleep(1.0)
                url = f"http://127.0.0.1:{port}"
                polling = Pollers(url, pollers, every) if pollers else None
                began = time.perf_counter()
                try:
                    lags = due_to_event_lags(home, lag_jobs, spread, lead=2)
                finally:
                    if polling is not None:
                        polling.stop()
                took = time.perf_counter() - began
                daemon.stop()
        finally:
            os.environ.pop("OCSCHED_BENCH_DAEMON", None)
    return lags["Started"], polling.requests if polling else 0, took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20, help="per client, per scenario")
    parser.add_argument("--lag-jobs", type=int, default=50)
    parser.add_argument("--spread", type=int, default=30, help="seconds the due times span")
    parser.add_argument("--pollers", type=int, default=10, help="polling without pause")
    parser.add_argument("--dashboards", type=int, default=100, help="polling once a second")
    parser.add_argument("--quick", action="store_true", help="fewer requests, a 5 s spread")
    options = parser.parse_args()
    requests = 5 if options.quick else options.requests
    spread = 5 if options.quick else options.spread
    rows = api_latency(options.jobs, options.clients, requests)
    for pollers, every, who in (
        (0, 0.0, "nobody polling"),
        (options.dashboards, 1.0, f"{options.dashboards} clients polling every 1 s"),
        (options.pollers, 0.0, f"{options.pollers} clients polling without pause"),
    ):
        lags, made, took = lag_while_polled(options.jobs, options.lag_jobs, spread, pollers, every)
        name = f"daemon --serve, {options.lag_jobs} jobs over {spread} s, {who}"
        if pollers:
            name += f" ({made / took:.0f} req/s)"
        rows += [
            (f"{name}: due -> start, median", f"{statistics.median(lags):.1f} ms", ""),
            (f"{name}: due -> start, p99", f"{percentile(lags, 0.99):.1f} ms", "<= 50 ms"),
        ]
    print_table(rows, "value")


if __name__ == "__main__":
    main()
