"""Run a shell command in its own process group, with a timeout that kills the group."""

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
    the watchdog before the command starts."""
    argv = [shell, "-c", command] if guard is None else guard.argv(shell, command)
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if guard is None else guard.stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    if on_start is not None:
        on_start(process.pid)
    timed_out = False
    communicate = asyncio.ensure_future(process.communicate())
    try:
        stdout, stderr = await asyncio.wait_for(asyncio.shield(communicate), timeout_ms / 1000)
    except TimeoutError:
        timed_out = True
        kill_group(process.pid, signal.SIGTERM)
        try:
            stdout, stderr = await asyncio.wait_for(asyncio.shield(communicate), KILL_GRACE_SECONDS)
        except TimeoutError:
            kill_group(process.pid, signal.SIGKILL)
            stdout, stderr = await communicate
    except asyncio.CancelledError:
        kill_group(process.pid, signal.SIGKILL)
        await communicate
        raise
    finally:
        kill_group(process.pid, signal.SIGKILL)  # whatever the command left behind
    returncode = process.returncode
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
