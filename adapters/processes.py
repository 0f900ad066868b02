"""A run's processes, found by what they carry, and ended for certain.

Every process of a shell run carries `OCSCHED_RUN_ID=<run id>` in its environment
(`adapters/shell.py` starts the run's shell with it; whatever the command starts inherits
it, in whatever process group it puts itself). On Linux `/proc` shows each process's
environment as it was started, so the processes of a run are found even when nothing
recorded its process group (a daemon killed between the spawn and `Run.Started`). Without
`/proc` (macOS) a run's recorded process group stands for its processes.

Zombies count as gone: they run nothing (and where PID 1 does not reap, as in some
containers, they stay forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping

from . import shell

RUN_ID_ENV = shell.RUN_ID_ENV
PROC = "/proc"


def can_scan() -> bool:
    """Whether processes can be found by their environment (Linux's /proc)."""
    return os.path.isfile(f"{PROC}/self/environ")


def processes_with_env(name: str) -> dict[int, str]:
    """The live processes (not zombies) of this user whose environment holds `name`, with
    its value: pid -> value. Empty without /proc."""
    key = b"\0" + name.encode() + b"="
    found: dict[int, str] = {}
    for pid in _pids():
        value = _env_value(pid, key)
        if value is not None and _state_and_group(pid)[0] not in ("Z", "X", ""):
            found[pid] = value
    return found


def run_processes(runs: Mapping[str, int | None]) -> dict[int, str]:
    """The live processes of `runs` (run id -> its recorded process group, or None): pid
    -> run id, by the run id in their environment or membership of the recorded group.
    Without /proc: each recorded group that still has a member, keyed by the group's id."""
    groups = {group: run_id for run_id, group in runs.items() if group}
    if not can_scan():
        return {group: run_id for group, run_id in groups.items() if shell.group_alive(group)}
    key = b"\0" + RUN_ID_ENV.encode() + b"="
    me = os.getpid()
    found: dict[int, str] = {}
    for pid in _pids():
        if pid == me:
            continue
        state, group = _state_and_group(pid)
        if state in ("Z", "X", ""):
            continue
        run_id = groups.get(group)
        if run_id is None:
            value = _env_value(pid, key)
            run_id = value if value in runs else None
        if run_id is not None:
            found[pid] = run_id
    return found


async def end_run_processes(
    runs: Mapping[str, int | None], *, timeout_s: float = 10.0, poll_s: float = 0.02
) -> set[str]:
    """SIGKILL every process of `runs` (see `run_processes`), and their process groups, and
    wait until none is left. Returns the runs some process of which was still there after
    `timeout_s` (uninterruptible sleep): they cannot be called over yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await asyncio.to_thread(run_processes, runs)
        if not found:
            return set()
        if time.monotonic() >= deadline:
            return set(found.values())
        for pid in found:
            _kill_with_group(pid)
        await asyncio.sleep(poll_s)


def _kill_with_group(pid: int) -> None:
    shell.kill_group(pid, signal.SIGKILL)  # a group leader, or (without /proc) a group id
    try:
        group = os.getpgid(pid)
    except OSError:
        group = 0
    if group > 1 and group != os.getpgrp():
        shell.kill_group(group, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _pids() -> list[int]:
    try:
        names = os.listdir(PROC)
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def _env_value(pid: int, key: bytes) -> str | None:
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as file:
            data = b"\0" + file.read()
    except OSError:  # gone, or another user's
        return None
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")


def _state_and_group(pid: int) -> tuple[str, int]:
    """(state letter, process group) from /proc/<pid>/stat; ("", 0) when it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return "", 0
    return fields[0].decode(), int(fields[2])
