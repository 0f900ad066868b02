"""Run a shell command in its own process group, with a timeout that kills the group.

On Linux a run's process is started with `posix_spawn` (a vfork that returns as soon as
the child has exec'd: ~0.12 ms here) and followed with plain file descriptors on the event
loop: its two output pipes and a pidfd that becomes readable when it exits. asyncio's
subprocess transports (three pipe transports, a protocol and a child watcher per process)
cost the loop twice the CPU of the spawn itself. Elsewhere (macOS: no pidfd) it is
asyncio's `create_subprocess_exec`."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping
from typing import Protocol

from ocsched.domain.shell_output import ShellResult

KILL_GRACE_SECONDS = 2.0
RUN_ID_ENV = "OCSCHED_RUN_ID"
"""Set to the run's id in a run's environment (`ShellExecutor`): every process the command
starts inherits it, so recovery finds them all (`adapters/processes.py`)."""
READ_SIZE = 65536


class SpawnGuard(Protocol):
    """Starts a run's shell so that the watchdog knows its process group before the command
    runs (`adapters/supervisor.Supervisor`)."""

    @property
    def stdin(self) -> int: ...

    def argv(self, shell: str, command: str) -> list[str]: ...


async def run_shell(
    command: str,
    *,
    timeout_ms: int,
    shell: str,
    on_start: Callable[[int], None] | None = None,
    env: Mapping[str, str] | None = None,
    guard: SpawnGuard | None = None,
) -> ShellResult:
    """Run `<shell> -c <command>`; `on_start(pid)` is called once it runs. The process is
    the leader of a new process group, so a timeout or a cancel reaches its children too.
    `env`: its environment (else this process's); with `guard`, the group is registered with
    the watchdog before the command starts. Returns once the process has exited and both
    its output streams have ended (or, after a timeout, been killed)."""
    argv = [shell, "-c", command] if guard is None else guard.argv(shell, command)
    stdin = None if guard is None else guard.stdin
    child: SpawnedChild | AsyncioChild
    if can_spawn_directly():
        child = SpawnedChild(argv, stdin, env)
    else:
        child = await AsyncioChild.start(argv, stdin, env)
    pid = child.pid
    if on_start is not None:
        on_start(pid)
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def time_out() -> None:
        kill_group(pid, signal.SIGTERM)
        timers.append(loop.call_later(KILL_GRACE_SECONDS, kill_group, pid, signal.SIGKILL))

    timers.append(loop.call_later(timeout_ms / 1000, time_out))
    try:
        await asyncio.shield(child.done)
    except asyncio.CancelledError:
        kill_group(pid, signal.SIGKILL)
        await child.done
        raise
    finally:
        for timer in timers:
            timer.cancel()
        kill_group(pid, signal.SIGKILL)  # whatever the command left behind
    timed_out = len(timers) > 1
    stdout, stderr, returncode = child.done.result()
    signal_name = None
    if returncode is not None and returncode < 0:
        signal_name = signal.Signals(-returncode).name
        returncode = None
    return ShellResult(
        stdout=stdout,
        stderr=stderr,
        returncode=returncode,
        signal_name=signal_name,
        timed_out=timed_out,
        run_timeout_ms=timeout_ms,
    )


_direct: bool | None = None


def can_spawn_directly() -> bool:
    """Whether this platform has `posix_spawn` with a new session and pidfds (Linux 5.3+)."""
    global _direct
    if _direct is None:
        _direct = False
        if hasattr(os, "posix_spawnp") and hasattr(os, "pidfd_open"):
            try:
                os.close(os.pidfd_open(os.getpid()))
                _direct = True
            except OSError:
                pass
    return _direct


class SpawnedChild:
    """A process started with `posix_spawnp` in a new session; `done` gets (stdout,
    stderr, exit status as `Popen.returncode` gives it) once it has exited and both pipes
    have ended. Every descriptor is close-on-exec in this process (Python's default, and
    SQLite's), so the child inherits only its three standard streams."""

    __slots__ = ("pid", "done", "_loop", "_pidfd", "_out", "_err", "_open", "_status")

    def __init__(self, argv: list[str], stdin: int | None, env: Mapping[str, str] | None):
        self._loop = loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[bytes, bytes, int | None]] = loop.create_future()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        first = (
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
            if stdin is None
            else (os.POSIX_SPAWN_DUP2, stdin, 0)
        )
        try:
            self.pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ if env is None else env,
                file_actions=[
                    first,
                    (os.POSIX_SPAWN_DUP2, out_write, 1),
                    (os.POSIX_SPAWN_DUP2, err_write, 2),
                ],
                setsid=True,
            )
        except BaseException:
            os.close(out_read)
            os.close(err_read)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        self._pidfd = os.pidfd_open(self.pid)
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._open = 3
        self._status: int | None = None
        loop.add_reader(out_read, self._read, out_read, self._out)
        loop.add_reader(err_read, self._read, err_read, self._err)
        loop.add_reader(self._pidfd, self._reap)

    def _read(self, fd: int, chunks: list[bytes]) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:
            data = b""
        if data:
            chunks.append(data)
            return
        self._loop.remove_reader(fd)
        os.close(fd)
        self._ended()

    def _reap(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        try:
            _, status = os.waitpid(self.pid, 0)
            self._status = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: its status is lost
            self._status = None
        self._ended()

    def _ended(self) -> None:
        self._open -= 1
        if self._open == 0 and not self.done.done():
            self.done.set_result((b"".join(self._out), b"".join(self._err), self._status))


class AsyncioChild:
    """The same through asyncio's subprocess transports and child watcher."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.pid = process.pid
        self.done: asyncio.Future[tuple[bytes, bytes, int | None]] = asyncio.ensure_future(
            self._communicate(process)
        )

    @classmethod
    async def start(
        cls, argv: list[str], stdin: int | None, env: Mapping[str, str] | None
    ) -> AsyncioChild:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
        return cls(process)

    @staticmethod
    async def _communicate(
        process: asyncio.subprocess.Process,
    ) -> tuple[bytes, bytes, int | None]:
        stdout, stderr = await process.communicate()
        return stdout, stderr, process.returncode


def kill_group(process_group: int, signal_number: int) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(process_group, signal_number)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(process_group: int) -> bool:
    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
