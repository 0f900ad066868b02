"""Shared fixtures: a private scheduler home per test and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

OCSCHED = [sys.executable, "-m", "ocsched"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)


class Scheduler:
    """The `ocsched` CLI as a user runs it, in its own SCHEDULER_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "SCHEDULER_HOME": str(home), "OCSCHED_ACTOR": "tester"}
        self.env.pop("SCHEDULER_DB", None)

    @property
    def db_path(self) -> Path:
        return self.home / "ocsched.db"

    def run(self, *args: str, env: dict | None = None, stdin: str | None = None) -> Result:
        completed = subprocess.run(
            [*OCSCHED, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, env: dict | None = None) -> Result:
        result = self.run(*args, env=env)
        assert result.returncode == 0, result.stderr or result.stdout
        return result

    def add(self, spec: dict, *flags: str) -> dict:
        return self.ok("--json", "jobs", "add", json.dumps(spec), *flags).json["job"]

    def event_count(self) -> int:
        if not self.db_path.exists():
            return 0
        with sqlite3.connect(self.db_path) as connection:
            return connection.execute("SELECT count(*) FROM stored_events").fetchone()[0]


@pytest.fixture
def scheduler(tmp_path: Path) -> Scheduler:
    return Scheduler(tmp_path / "home")


def shell_job(**fields) -> dict:
    """A valid shell job spec; keyword arguments override its fields."""
    spec = {
        "name": "backup",
        "schedule_cron": "0 3 * * *",
        "session_target": "shell",
        "payload_message": "echo hi",
        "run_timeout_ms": 60000,
        "origin": "system",
        "delivery_mode": "none",
    }
    spec.update(fields)
    return spec


class Daemon:
    """`ocsched daemon` as a real process on the scheduler's store."""

    def __init__(self, scheduler: Scheduler, *args: str) -> None:
        self.scheduler = scheduler
        self.log_path = scheduler.home.parent / f"daemon-{id(self)}.log"
        scheduler.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*OCSCHED, "daemon", *args],
            env=scheduler.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "started" in self.log, what="the daemon to start")

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        finally:
            self._log.close()
        return code


def wait_until(condition, timeout: float = 15.0, what: str = "the condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def daemons(scheduler):
    """Start daemons with `daemons.start()`; all are stopped when the test ends."""
    started: list[Daemon] = []

    class Starter:
        def start(self, *args: str) -> Daemon:
            daemon = Daemon(scheduler, *args)
            started.append(daemon)
            return daemon

    yield Starter()
    for daemon in started:
        daemon.stop()


class ThreadedFakeGateway:
    """The project's fake gateway served from a thread, so a test can run the daemon as a
    real process against it and still read the fake's record of calls."""

    def __init__(self, **options) -> None:
        import asyncio
        import threading

        from ocsched.testing.fake_gateway import FakeGateway

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeGateway(**options)
        self._call(self.fake.start())

    def _call(self, coroutine):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=15)

    def env(self) -> dict[str, str]:
        return {"OPENCLAW_GATEWAY_URL": self.fake.url, "OPENCLAW_GATEWAY_TOKEN": self.fake.token}

    def stop(self) -> None:
        self._call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def gateway(scheduler):
    """A fake gateway the scheduler's processes talk to (OPENCLAW_GATEWAY_URL/TOKEN set)."""
    served = ThreadedFakeGateway()
    scheduler.env.update(served.env())
    yield served.fake
    served.stop()
