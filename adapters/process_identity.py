"""Who a daemon is (`host:pid:start-time`) and whether a daemon named so is gone."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def process_identity(pid: int | None = None) -> str:
    """`host:pid:start-time`, unique over reboots and pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def on_this_host(owner: str | None) -> bool:
    """Whether a daemon identity (or no owner at all) is of this host."""
    return not owner or owner.partition(":")[0] == socket.gethostname()


def owner_is_dead(owner: str | None) -> bool:
    """True when the daemon that owned a run is known to be gone (on this host)."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _start_ticks(int(pid_text)) != ticks
