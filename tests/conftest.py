"""Shared fixtures: a private scheduler home per test and a way to run the real CLI.

`scheduler.run/ok/add` call the CLI's `main(argv)` in this process, with the scheduler's
environment applied for the call and stdout/stderr captured as a child's pipes would be:
a command costs milliseconds instead of a process start. `scheduler.process(...)` runs
`python -m ocsched` instead, and so does every call of a test marked `process_cli`: for
what only a process shows (signals, the bytes on a real pipe, a terminal).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

OCSCHED = [sys.executable, "-m", "ocsched"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "process_cli: the `scheduler` fixture runs every command as a process"
    )


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

    def __init__(self, home: Path, *, in_process: bool = True) -> None:
        self.home = home
        self.in_process = in_process
        self.env = {**os.environ, "SCHEDULER_HOME": str(home), "OCSCHED_ACTOR": "tester"}
        self.env["TZ"] = "UTC"  # tables show local times, labelled with the zone
        self.env.pop("SCHEDULER_DB", None)

    @property
    def db_path(self) -> Path:
        return self.home / "ocsched.db"

    def run(self, *args: str, env: dict | None = None, stdin: str | None = None) -> Result:
        runner = self.call if self.in_process else self.process
        return runner(*args, env=env, stdin=stdin)

    def process(self, *args: str, env: dict | None = None, stdin: str | None = None) -> Result:
        """`python -m ocsched ...` as a child process."""
        completed = subprocess.run(
            [*OCSCHED, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def call(self, *args: str, env: dict | None = None, stdin: str | None = None) -> Result:
        """`main(argv)` in this process, given what a child process would get: this
        scheduler's environment, stdin (empty unless given: pytest gives a child
        /dev/null), and UTF-8 pipes for stdout and stderr, read back as
        `subprocess.run(text=True)` reads them."""
        from ocsched.commands.cli import main

        environment = {**self.env, **(env or {})}
        # A pipe has no terminal size: shutil.get_terminal_size() falls back to 80 columns
        # in a child, while here it would ask the terminal pytest may run in.
        environment.setdefault("COLUMNS", "80")
        stdout, stderr = _Pipe("strict"), _Pipe("backslashreplace")
        with (
            _environment(environment),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            _stdin(stdin or ""),
        ):
            try:
                code = main(list(args))
            except SystemExit as exit_:
                code = _exit_status(exit_.code)
            except Exception:  # as the interpreter would: a traceback and status 1
                traceback.print_exc()
                code = 1
        return Result(code, stdout.text(), stderr.text())

    def ok(self, *args: str, env: dict | None = None) -> Result:
        result = self.run(*args, env=env)
        assert result.returncode == 0, result.stderr or result.stdout
        return result

    def add(self, spec: dict, *flags: str) -> dict:
        return self.ok("--json", "jobs", "add", json.dumps(spec), *flags).json["job"]

    def event_count(self) -> int:
        if not self.db_path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.db_path)) as connection:
            return connection.execute("SELECT count(*) FROM stored_events").fetchone()[0]


class _Pipe(io.TextIOWrapper):
    """A child's stdout or stderr pipe: UTF-8 text over bytes (a character UTF-8 cannot
    encode fails on stdout as it would in the child), and not a terminal."""

    def __init__(self, errors: str) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)

    def text(self) -> str:
        self.flush()
        data = self.buffer.getvalue().decode("utf-8")
        return data.replace("\r\n", "\n").replace("\r", "\n")  # as text=True reads it


def _exit_status(code: object) -> int:
    """The status `sys.exit(code)` gives a process (which prints a message to stderr)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _environment(environment: Mapping[str, str]) -> Iterator[None]:
    """os.environ is exactly `environment` inside the block, and as it was after it."""
    saved = dict(os.environ)
    _replace_environment(environment)
    try:
        yield
    finally:
        _replace_environment(saved)


def _replace_environment(environment: Mapping[str, str]) -> None:
    for name in [name for name in os.environ if name not in environment]:
        del os.environ[name]
    for name, value in environment.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


@pytest.fixture
def scheduler(tmp_path: Path, request: pytest.FixtureRequest) -> Scheduler:
    """Commands run in process unless the test is marked `process_cli` (with
    `@pytest.mark.process_cli`, or `pytestmark` for a whole module);
    `scheduler.process(...)` is always a process."""
    as_process = request.node.get_closest_marker("process_cli") is not None
    return Scheduler(tmp_path / "home", in_process=not as_process)


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
        self.signal(sig)
        return self.wait()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, kill_after: float | None = None) -> int:
        """The exit status; with `kill_after`, SIGKILL when the daemon has not exited by
        then (its supervisor kills the runs' process groups)."""
        try:
            try:
                return self.process.wait(timeout=30 if kill_after is None else kill_after)
            except subprocess.TimeoutExpired:
                if kill_after is None:
                    raise
                self.process.kill()
                return self.process.wait(timeout=30)
        finally:
            self._log.close()


def load_script(relative: str):
    """A script of the repository (`scripts/chaos/…`) as a module, for its small version."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # All at once, and without sitting out the shutdown grace of a run still going: the
    # test is over (a test about stopping calls `stop()` itself).
    for daemon in started:
        daemon.signal(15)
    for daemon in started:
        daemon.wait(kill_after=1)


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
