"""The reactor's knobs (environment settings with defaults and floors), its identity,
and its log line."""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

TIMER_HORIZON_S = 300
FIRE_BATCH = 64
DISPATCH_FOLLOW_S = 20
DISPATCH_GRACE_MS = 300_000
VERIFY_TIMEOUT_MS = 60_000
POLL_S = 0.04
"""Without inotify (or with PostgreSQL): how often to look for other processes' events."""
IDLE_POLL_S = 2.0
"""With inotify: a safety net for a missed notification."""
COMMIT_RECHECKS_S = (0.005, 0.02, 0.05, 0)
GATEWAY_DEFER_S = 60
AGENT_GRACE_S = 30
FOREIGN_TIMEOUT_GRACE_S = 60
ACTOR = "reactor"


def process_identity(pid: int | None = None) -> str:
    """`host:pid:start-time`, unique over reboots and pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_is_dead(owner: str | None) -> bool:
    """True when the daemon that owned a run is known to be gone (on this host)."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _start_ticks(int(pid_text)) != ticks


def max_concurrent_runs() -> int:
    configured = os.environ.get("OCSCHED_MAX_CONCURRENT_RUNS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(32, 16 * (os.cpu_count() or 1))


def interval(name: str, default_s: float, floor_s: float) -> float:
    """A pass interval from `<name>` in milliseconds (spec §6.2): default when unset or
    not a number, never below the floor."""
    try:
        return max(float(os.environ[name]) / 1000, floor_s)
    except (KeyError, ValueError):
        return default_s


def max_concurrent_turns() -> int:
    """`OCSCHED_MAX_CONCURRENT_TURNS` bounds agent turns in flight toward the gateway."""
    configured = os.environ.get("OCSCHED_MAX_CONCURRENT_TURNS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else 256


def activity_poll_seconds() -> float:
    """`OCSCHED_ACTIVITY_POLL_S`: how often an agent turn's session activity is checked
    (default 60, as the anchor)."""
    try:
        return max(float(os.environ.get("OCSCHED_ACTIVITY_POLL_S", "60")), 0.2)
    except ValueError:
        return 60.0


def dispatch_follow_seconds() -> float:
    """`OCSCHED_DISPATCH_FOLLOW_S`: how often running dispatches are checked (default 20)."""
    try:
        return max(float(os.environ.get("OCSCHED_DISPATCH_FOLLOW_S", DISPATCH_FOLLOW_S)), 0.5)
    except ValueError:
        return DISPATCH_FOLLOW_S


def overload_grace_seconds() -> float:
    """`OCSCHED_OVERLOAD_GRACE_S`: how old an overload error must be before it is retried
    (default 300, as the anchor's safety net)."""
    try:
        return max(float(os.environ.get("OCSCHED_OVERLOAD_GRACE_S", "300")), 0.0)
    except ValueError:
        return 300.0


def retry_base_seconds() -> float:
    """`OCSCHED_RETRY_BASE_S` scales the retry ladder (default 30 s, as spec §14.1)."""
    try:
        return max(float(os.environ.get("OCSCHED_RETRY_BASE_S", "30")), 0.0)
    except ValueError:
        return 30.0


def log(message: str) -> None:
    stamp = datetime.now(UTC).isoformat(sep=" ", timespec="milliseconds")[:23]
    print(f"{stamp} {message}", file=sys.stderr, flush=True)
