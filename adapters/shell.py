"""Run a shell command in its own process group, with a timeout that kills the group.

On Linux (glibc) a run's process is started with `posix_spawnp` (a vfork that returns once
the child has exec'd) without holding the interpreter lock, and followed with plain file
descriptors on the event loop: its two output pipes and a pidfd that becomes readable when
it exits. asyncio's subprocess transports (three pipe transports, a protocol and a child
watcher per process) cost the loop twice the CPU of the spawn itself. Elsewhere (macOS: no
pidfd) it is asyncio's `create_subprocess_exec`, whose `Popen` does the same in the child:
a new session, SIGPIPE and SIGXFSZ at their defaults, every descriptor above 2 closed."""

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


RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
"""Signals Python ignores that a run's shell gets back at their defaults (as `Popen`'s
`restore_signals` does): `yes | head` must end `yes` with SIGPIPE, not an error."""

_spawn: Callable[[list[str], Mapping[str, str], int | None, int, int], int] | None = None
_direct: bool | None = None


def can_spawn_directly() -> bool:
    """Whether runs can be started with glibc's `posix_spawnp` and followed with pidfds
    (Linux 5.3+, glibc 2.34+)."""
    global _direct, _spawn
    if _direct is None:
        _direct = False
        if hasattr(os, "pidfd_open"):
            try:
                os.close(os.pidfd_open(os.getpid()))
            except OSError:
                return False
            _spawn = _glibc_spawn()
            _direct = _spawn is not None
    return _direct


def _glibc_spawn() -> Callable[..., int] | None:
    """glibc's `posix_spawnp` called through ctypes, which lets go of the interpreter lock
    for the call: the caller waits (vfork) until the child has exec'd, which takes ~0.1 ms on
    an idle machine and a few ms when the cores are busy with runs, and `os.posix_spawnp`
    (like `Popen`) holds the lock all that time, stopping the writer's thread too. The
    child closes every descriptor above 2, as `Popen`'s `close_fds` does (ones the daemon
    inherited from whoever started it are not close-on-exec). None without glibc 2.34."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: the sizes and flags below
        close_from = libc.posix_spawn_file_actions_addclosefrom_np
    except (OSError, AttributeError):
        return None
    spawnp = libc.posix_spawnp
    spawnp.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p]
    spawnp.argtypes += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    actions_init = libc.posix_spawn_file_actions_init
    actions_destroy = libc.posix_spawn_file_actions_destroy
    add_dup2 = libc.posix_spawn_file_actions_adddup2
    add_open = libc.posix_spawn_file_actions_addopen
    add_open.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    add_open.argtypes += [ctypes.c_uint]
    attributes = ctypes.create_string_buffer(1024)  # posix_spawnattr_t: 336 bytes
    defaults = ctypes.create_string_buffer(256)  # sigset_t: 128 bytes
    libc.sigemptyset(defaults)
    for number in RESTORED_SIGNALS:
        libc.sigaddset(defaults, int(number))
    if libc.posix_spawnattr_init(attributes) != 0:
        return None
    libc.posix_spawnattr_setsigdefault(attributes, defaults)
    libc.posix_spawnattr_setflags(attributes, ctypes.c_short(SPAWN_SETSIGDEF | SPAWN_SETSID))
    devnull = os.devnull.encode()

    def spawn(
        argv: list[str], env: Mapping[str, str], stdin: int | None, stdout: int, stderr: int
    ) -> int:
        args = (ctypes.c_char_p * (len(argv) + 1))(*(a.encode() for a in argv), None)
        pairs = [f"{name}={value}".encode() for name, value in env.items()]
        environment = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
        actions = ctypes.create_string_buffer(256)  # posix_spawn_file_actions_t: 80 bytes
        actions_init(actions)
        try:
            if stdin is None:
                add_open(actions, 0, devnull, os.O_RDONLY, 0)
            else:
                add_dup2(actions, stdin, 0)
            add_dup2(actions, stdout, 1)
            add_dup2(actions, stderr, 2)
            close_from(actions, 3)
            pid = ctypes.c_int()
            error = spawnp(ctypes.byref(pid), args[0], actions, attributes, args, environment)
        finally:
            actions_destroy(actions)
        if error:
            raise OSError(error, os.strerror(error), argv[0])
        return pid.value

    return spawn


SPAWN_SETSIGDEF, SPAWN_SETSID = 0x04, 0x80
"""glibc's POSIX_SPAWN_SETSIGDEF and POSIX_SPAWN_SETSID (spawn.h)."""


class SpawnedChild:
    """A process started with `posix_spawnp` in a new session; `done` gets (stdout,
    stderr, exit status as `Popen.returncode` gives it) once it has exited and both pipes
    have ended. The child inherits only its three standard streams."""

    __slots__ = ("pid", "done", "_loop", "_pidfd", "_out", "_err", "_open", "_status")

    def __init__(self, argv: list[str], stdin: int | None, env: Mapping[str, str] | None):
        self._loop = loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[bytes, bytes, int | None]] = loop.create_future()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        assert _spawn is not None
        try:
            self.pid = _spawn(argv, os.environ if env is None else env, stdin, out_write, err_write)
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
