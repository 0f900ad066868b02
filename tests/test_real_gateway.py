"""An agent job and its delivery through the real OpenClaw gateway, installed from the npm
registry (`scripts/real-gateway/install`, pinned versions, cached outside the repository),
with a fake model provider (`scripts/real-gateway/fake_model.py`).

The gateway reaches for the internet when it starts (notes §5.3), so the gateway, the fake
provider and the daemon all run in a network namespace of their own that has only
loopback; CLI commands, which only touch the SQLite file, run outside it. When the machine
cannot do this (no permission for `ip netns`, npm registry unreachable, install failure,
gateway not ready in time) the test is skipped and says why.

Run it alone with `pytest -m real_gateway`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import OCSCHED, Scheduler, wait_until
from .test_agent_jobs import agent_job
from .test_daemon import finished_runs

pytestmark = pytest.mark.real_gateway

HELPERS = Path(__file__).resolve().parents[1] / "scripts" / "real-gateway"
GATEWAY_PORT = 18789  # the namespace is ours alone: fixed ports cannot collide
MODEL_PORT = 18900
REPLY = "All quiet today."
INSTALL_TIMEOUT_S = 900
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
# One HTTP GET from inside the namespace; prints the status (0 when there was no answer).
PROBE = """
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    print(opener.open(sys.argv[1], timeout=2).status)
except Exception as error:
    print(getattr(error, "code", 0))
"""
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tail(path: Path, lines: int = 15) -> str:
    with suppress(OSError):
        return "\n".join(ANSI.sub("", path.read_text()).splitlines()[-lines:])
    return ""


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """`sig`, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class RealGateway:
    namespace: str
    token: str
    work: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{GATEWAY_PORT}"

    @property
    def log_path(self) -> Path:
        return self.work / "gateway" / "openclaw.log"

    @property
    def requests_path(self) -> Path:
        return self.work / "model-requests.jsonl"

    def env(self) -> dict[str, str]:
        return {"OPENCLAW_GATEWAY_URL": self.url, "OPENCLAW_GATEWAY_TOKEN": self.token}

    def inside(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *command]

    def status_of(self, path: str) -> int:
        probe = self.inside(sys.executable, "-c", PROBE, f"{self.url}{path}")
        result = subprocess.run(probe, capture_output=True, text=True, timeout=10)
        return int(result.stdout.strip() or 0)

    def completion_requests(self) -> list[dict]:
        if not self.requests_path.exists():
            return []
        logged = [json.loads(line) for line in self.requests_path.read_text().splitlines()]
        return [r for r in logged if r["path"].endswith("/chat/completions")]


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def real_gateway(tmp_path_factory) -> Iterator[RealGateway]:
    """The real gateway and the fake provider, ready, in a fresh loopback-only namespace
    (deleted afterwards, with every process started in it)."""
    if shutil.which("ip") is None:
        pytest.skip("real-gateway: the `ip` command (iproute2) is not installed")
    work = tmp_path_factory.mktemp("real-gateway")
    namespace = f"ocsched-rg-{os.getpid()}-{secrets.token_hex(3)}"
    gateway = RealGateway(namespace, secrets.token_hex(16), work)
    started: dict[str, subprocess.Popen] = {}
    created = ip("netns", "add", namespace)
    if created.returncode != 0:
        pytest.skip(f"real-gateway: cannot create a network namespace: {last_line(created.stderr)}")
    try:
        loopback = ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        if loopback.returncode != 0:
            pytest.skip(f"real-gateway: cannot bring up loopback: {last_line(loopback.stderr)}")
        install()
        with open(work / "fake-model.out", "w") as out:
            command = [str(HELPERS / "fake_model.py"), str(MODEL_PORT), str(gateway.requests_path)]
            started["the fake model provider"] = subprocess.Popen(
                gateway.inside(sys.executable, *command, REPLY),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        gateway_out = work / "gateway.out"
        with open(gateway_out, "w") as out:
            command = [str(HELPERS / "gateway"), str(work / "gateway")]
            started["the gateway"] = subprocess.Popen(
                gateway.inside(*command, str(GATEWAY_PORT), str(MODEL_PORT)),
                env={**os.environ, "OPENCLAW_GATEWAY_TOKEN": gateway.token},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_readiness(gateway, started, gateway_out)
        yield gateway
    finally:
        for process in reversed(started.values()):
            stop(process)
        print("--- gateway output (tail)\n" + tail(work / "gateway.out", 40))
        remove_namespace(namespace)


def install() -> None:
    """`scripts/real-gateway/install`: at once when the cache is warm, ~30 s when cold."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(HELPERS / "install")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a timeout can stop npm too
    )
    try:
        stdout, stderr = process.communicate(timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.skip(f"real-gateway: install took longer than {INSTALL_TIMEOUT_S}s")
    if process.returncode != 0:
        reason = last_line(stderr)  # the script's own "real-gateway install: ..."
        pytest.skip(reason if reason.startswith("real-gateway") else f"real-gateway: {reason}")
    print(f"real-gateway: installed in {stdout.strip()} ({time.monotonic() - started:.1f}s)")


def wait_for_readiness(
    gateway: RealGateway, started: dict[str, subprocess.Popen], gateway_out: Path
) -> None:
    """`/readyz` answers 200 (notes §5.1); skip with the gateway's words otherwise."""
    began = time.monotonic()
    deadline = began + READY_TIMEOUT_S
    while gateway.status_of("/readyz") != 200:
        for name, process in started.items():
            if process.poll() is not None:
                pytest.skip(
                    f"real-gateway: {name} exited with {process.returncode} "
                    f"while starting: {last_line(tail(gateway_out))}"
                )
        if time.monotonic() > deadline:
            pytest.skip(
                f"real-gateway: /readyz did not answer 200 within {READY_TIMEOUT_S}s: "
                f"{last_line(tail(gateway_out))}"
            )
        time.sleep(0.25)
    print(f"real-gateway: ready after {time.monotonic() - began:.1f}s")


def remove_namespace(namespace: str) -> None:
    """Kill whatever still runs in the namespace (only what this test started), then
    delete it."""
    pids = ip("netns", "pids", namespace).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    if pids:
        time.sleep(0.5)
    deleted = ip("netns", "delete", namespace)
    assert deleted.returncode == 0, deleted.stderr


@contextmanager
def daemon_in(gateway: RealGateway, scheduler: Scheduler) -> Iterator[subprocess.Popen]:
    """`ocsched daemon` inside the gateway's namespace, where 127.0.0.1 is the gateway's."""
    scheduler.home.mkdir(parents=True, exist_ok=True)
    log_path = scheduler.home.parent / "daemon.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            gateway.inside(*OCSCHED, "daemon"),
            env=scheduler.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "started" in log_path.read_text(), what="the daemon to start")
        yield process
    finally:
        stop(process)
        print("--- daemon log\n" + log_path.read_text())


def test_an_isolated_job_runs_one_turn_and_attempts_its_delivery_through_the_real_gateway(
    scheduler, real_gateway
):
    scheduler.env.update(real_gateway.env())
    job = scheduler.add(agent_job(), "--in", "1s")
    with daemon_in(real_gateway, scheduler):
        (run,) = finished_runs(scheduler, job["id"], timeout=60)

        def attempted():
            deliveries = scheduler.ok("--json", "deliveries", "list", "--run", run["id"]).json
            return deliveries if deliveries and deliveries[0]["attempts"] else None

        (delivery,) = wait_until(attempted, timeout=30, what="the first delivery attempt")

    # The turn: one `agent` call, answered by the fake model through the real gateway.
    assert (run["status"], run["summary"], run["error_message"]) == ("ok", REPLY, None)
    assert run["session_key"] == f"agent:main:scheduler:{job['id']}"
    assert (run["input_tokens"], run["output_tokens"], run["total_tokens"]) == (10, 7, 17)
    (completion,) = real_gateway.completion_requests()
    (turn, *_) = [m["content"] for m in completion["body"]["messages"] if m["role"] == "user"]
    assert f"[scheduler:{job['id']} summarize]\n\nSummarize the news" in turn
    assert f"session={run['session_key']}" in turn  # the gateway's runtime trailer

    # The delivery: `message` send through POST /tools/invoke. With channels skipped and no
    # Telegram bot token configured, the real gateway's Telegram channel refuses the send:
    # it answers HTTP 500 with the sanitized `tool execution failed` and writes the reason
    # to its log. The attempt is recorded failed with those words; the delivery stays
    # pending for its next attempt (2 s, 4 s, ... later).
    assert (delivery["channel"], delivery["target"], delivery["text"]) == (
        "telegram",
        "12345",
        REPLY,
    )
    assert (delivery["status"], delivery["chunks_sent"]) == ("pending", 0)
    assert delivery["last_error"] == (
        'Gateway message failed (500): {"ok":false,"error":'
        '{"type":"tool_error","message":"tool execution failed"}}'
    )
    assert delivery["next_attempt_at"]
    wait_until(
        lambda: "Telegram bot token missing" in real_gateway.log_path.read_text(),
        timeout=5,
        what="the gateway to log why the send failed",
    )
