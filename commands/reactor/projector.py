"""The daemon's read models caught up in a process of their own.

A catch-up is mostly Python work (decoding events, building rows) and holds the
interpreter lock while it does it. In the daemon's own process it takes turns with the
event loop, which decides, spawns and follows the runs: in a burst the loop is the
serial path, and it waited for the lock. A child process catches up on another core
instead (a 500-run burst: see ARCHITECTURE.md, "Performance notes").

The daemon starts the child a second after its own start (`python -m
ocsched.commands.reactor.projector`, the store's settings in its environment). Once it
has imported what it needs and caught up once (its connections open) the child says
`ready`; from then on it is asked over a pipe: one line per catch-up, one JSON line
back, `{"read": n}` or the error. Its catch-up is the same `Context.catch_up_once` a
command runs, so the read models stay exactly-once whichever process applies a page.

The daemon's exit, even by SIGKILL, ends it quietly: its stdin ends, or its next answer
finds no reader. It ignores SIGINT and SIGTERM, which a terminal or a service manager
sends to the whole group, so that a stopping daemon can still catch up. A child that died
is started again; one that cannot run leaves the catch-ups to the daemon's own process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from ocsched.adapters.settings import Settings
from ocsched.adapters.storage_errors import ReportedFault, StorageFault, storage_fault

if TYPE_CHECKING:
    from ocsched.commands.context import Context

log = logging.getLogger("ocsched")

MODULE = "ocsched.commands.reactor.projector"
READY = b"ready\n"
"""The child's first line, once it has imported what a catch-up needs and caught up once."""


class ProjectorFailed(Exception):
    """The child could not catch up: its error."""


class Projector:
    """`catch_up_once()` (blocking: call it from a worker thread, one at a time) asks the
    child to catch the read models up and returns how many events it read. Until the child
    has said it is ready (its imports and first catch-up take ~0.3 s), and while one that
    ended is started again, the catch-ups are `in_process`, the daemon's own: a catch-up
    never waits for a child to start. A child that ends twice in a row before it is ready
    cannot run at all: the catch-ups stay in the daemon's process, with an error logged."""

    def __init__(self, settings: Settings, in_process: Callable[[], int]) -> None:
        self._environment = {**os.environ, **_store_environment(settings)}
        self._in_process = in_process
        self._lock = threading.Lock()
        self._ready = False
        self._failed_starts = 0
        self._process: subprocess.Popen[bytes] | None = self._start()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def catch_up_once(self) -> int:
        with self._lock:
            if self._process is None or not self._child_ready(self._process):
                return self._in_process()
            try:
                reply = self._ask(self._process)
            except (OSError, EOFError) as error:
                log.warning("the read models' process ended (%s); starting another", error)
                self._restart()
                return self._in_process()
        return _read_count(reply)

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._stop(self._process)

    def _child_ready(self, process: subprocess.Popen[bytes]) -> bool:
        """Whether the child has said it is ready, read without waiting; one that ended
        before it was ready is started again, or given up on the second time."""
        if self._ready:
            return True
        _, stdout = _pipes(process)
        if not select.select([stdout], [], [], 0)[0]:
            return False  # still importing
        if stdout.readline() == READY:
            self._ready, self._failed_starts = True, 0
            return True
        self._failed_starts += 1
        if self._failed_starts < 2:
            log.warning("the read models' process ended as it started; starting another")
            self._restart()
            return False
        log.error(
            "the read models' process cannot run (exit status %s); catching up in the"
            " daemon's own process",
            process.wait(),
        )
        self._stop(process)
        self._process = None
        return False

    def _restart(self) -> None:
        if self._process is not None:
            self._stop(self._process)
        self._ready = False
        self._process = None  # (if the start fails, catching up stays in the daemon)
        self._process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._environment,
        )

    @staticmethod
    def _ask(process: subprocess.Popen[bytes]) -> dict[str, Any]:
        stdin, stdout = _pipes(process)
        stdin.write(b"catch-up\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise EOFError(f"exit status {process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _store_environment(settings: Settings) -> dict[str, str]:
    """What the child needs of the settings: where the log and the read models are, and
    the keys that decode the log (an empty value reads as unset)."""
    values = {
        "HOME": os.fspath(settings.user_home),
        "SCHEDULER_HOME": settings.home_text,
        "SCHEDULER_DB": settings.database,
        "OCSCHED_READ_MODEL_DB": settings.read_model_db,
        "OCSCHED_CIPHER_KEY": settings.cipher_key,
        "OCSCHED_CIPHER_OLD_KEYS": settings.cipher_old_keys,
    }
    return {name: value or "" for name, value in values.items()}


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    if process.stdin is None or process.stdout is None:
        raise EOFError("no pipe to the read models' process")
    return process.stdin, process.stdout


def _read_count(reply: dict[str, Any]) -> int:
    """The reply's count of events read, or its error raised: a transient storage error
    as one `storage_fault` recognizes, so the writer retries it as its own."""
    if "read" in reply:
        return int(reply["read"])
    fault = reply.get("fault")
    if fault is not None:
        raise ReportedFault(StorageFault(*fault))
    raise ProjectorFailed(f"{reply.get('type', 'Error')}: {reply.get('error', '')}")


def _reply_to(error: Exception) -> dict[str, Any]:
    fault = storage_fault(error)
    reply: dict[str, Any] = {"type": type(error).__name__, "error": str(error)}
    if fault is not None:
        reply["fault"] = [fault.kind, fault.detail, fault.postgres]
    return reply


def main() -> None:
    """The child: a catch-up for each line read, until its stdin ends or the daemon stops
    reading its answers."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    from ocsched.commands.context import Context

    ctx = Context(settings=Settings.from_environment())
    ctx.storage_retry_s = 0.0  # the daemon's writer retries, with its own backoff and log
    try:
        _serve(ctx, sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        # The daemon is gone (SIGKILL included) while this process imported, caught up or
        # answered: nobody waits for the answer. (stdout to /dev/null: the interpreter's
        # last flush of it must not fail again.)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        ctx.close()


def _serve(ctx: Context, requests: IO[bytes], out: IO[bytes]) -> None:
    # The first catch-up opens the connections and builds the decoders (~0.2 s): done
    # before `ready`, it never holds up a catch-up the daemon waits for (a timer reload
    # behind it fired due jobs ~0.2 s late). An error here is met, and reported, again
    # at the daemon's first request.
    with contextlib.suppress(Exception):
        ctx.catch_up_once()
    out.write(READY)
    out.flush()
    for _ in requests:
        try:
            reply: dict[str, Any] = {"read": ctx.catch_up_once()}
        except Exception as error:  # noqa: BLE001 - reported to the daemon, which logs it
            reply = _reply_to(error)
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
