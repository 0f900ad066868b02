"""Every setting ocsched reads from the environment, read once (spec §1.2, §6.2, §30–§32).

`Settings.from_environment()` is called once per process (the CLI's `Context`, the
daemon); everything else receives the object. No other module reads `os.environ`.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


@dataclass(frozen=True)
class ReactorSettings:
    """The daemon's knobs, with the defaults and floors of spec §6.2 and README."""

    max_concurrent_runs: int = max(32, 16 * (os.cpu_count() or 1))
    """`OCSCHED_MAX_CONCURRENT_RUNS`: shell runs at once."""
    max_concurrent_turns: int = 256
    """`OCSCHED_MAX_CONCURRENT_TURNS`: agent turns in flight toward the gateway."""
    shutdown_grace_s: float = 10.0
    """`OCSCHED_SHUTDOWN_GRACE_S`: how long SIGTERM waits for running runs."""
    sweep_every_s: float = 30.0
    """`SCHEDULER_HEARTBEAT_CHECK_MS` (floor 5 s): recovery, approvals, foreign timeouts."""
    prune_every_s: float = 3600.0
    """`SCHEDULER_PRUNE_MS` (floor 1 min): spec §26 pruning."""
    activity_poll_s: float = 60.0
    """`OCSCHED_ACTIVITY_POLL_S` (floor 0.2): how often an agent turn's session is checked."""
    dispatch_follow_s: float = 20.0
    """`OCSCHED_DISPATCH_FOLLOW_S` (floor 0.5): how often running dispatches are checked."""
    overload_grace_s: float = 300.0
    """`OCSCHED_OVERLOAD_GRACE_S`: how old an overload error must be before a retry."""
    retry_base_s: float = 30.0
    """`OCSCHED_RETRY_BASE_S`: scales the retry ladder (spec §14.1)."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ReactorSettings:
        default = cls()
        return cls(
            max_concurrent_runs=_positive_int(env, "OCSCHED_MAX_CONCURRENT_RUNS")
            or default.max_concurrent_runs,
            max_concurrent_turns=_positive_int(env, "OCSCHED_MAX_CONCURRENT_TURNS")
            or default.max_concurrent_turns,
            shutdown_grace_s=_seconds(env, "OCSCHED_SHUTDOWN_GRACE_S", default.shutdown_grace_s),
            sweep_every_s=_milliseconds(env, "SCHEDULER_HEARTBEAT_CHECK_MS", 30.0, floor_s=5),
            prune_every_s=_milliseconds(env, "SCHEDULER_PRUNE_MS", 3600.0, floor_s=60),
            activity_poll_s=_seconds(env, "OCSCHED_ACTIVITY_POLL_S", 60.0, floor_s=0.2),
            dispatch_follow_s=_seconds(env, "OCSCHED_DISPATCH_FOLLOW_S", 20.0, floor_s=0.5),
            overload_grace_s=_seconds(env, "OCSCHED_OVERLOAD_GRACE_S", 300.0),
            retry_base_s=_seconds(env, "OCSCHED_RETRY_BASE_S", 30.0),
        )


@dataclass(frozen=True)
class Settings:
    """SCHEDULER_DB is a SQLite path (default `$SCHEDULER_HOME/ocsched.db`) or a
    `postgresql://` URL; with PostgreSQL the read models live in a local SQLite file."""

    home: Path
    database: str
    read_model_db: str | None = None
    """`OCSCHED_READ_MODEL_DB`: with PostgreSQL, this host's read models."""
    artifacts: str | None = None
    """`SCHEDULER_ARTIFACTS_DIR`: large run output."""
    shell: str = "/bin/zsh" if sys.platform == "darwin" else "/bin/bash"
    """`SCHEDULER_SHELL`: the shell that runs shell jobs."""
    actor: str | None = None
    """`OCSCHED_ACTOR`: who is acting (else the OS user)."""
    debug: bool = False
    """`OCSCHED_DEBUG`: let unexpected errors raise with their traceback."""
    user_home: Path = field(default_factory=Path.home)
    """`HOME`."""
    openclaw_home: Path = field(default_factory=lambda: Path.home() / ".openclaw")
    """`OPENCLAW_HOME`: OpenClaw's own files (sessions, credentials, openclaw.json)."""
    dispatch_config_dir: Path = field(
        default_factory=lambda: Path.home() / ".openclaw" / "dispatch"
    )
    """`DISPATCH_CONFIG_DIR`: the dispatch CLI's `config.json` (spec §31.1)."""
    gateway_url: str | None = None
    """`OPENCLAW_GATEWAY_URL`."""
    gateway_token: str | None = field(default=None, repr=False)
    """`OPENCLAW_GATEWAY_TOKEN`."""
    gateway_token_path: str | None = None
    """`OPENCLAW_GATEWAY_TOKEN_PATH`."""
    hook_targets: tuple[tuple[str, str], ...] = ()
    """(channel, url) for `LOKI_PUSH_URL` and `DISPATCH_WEBHOOK_URL` (spec §31.12)."""
    hook_host: str = field(default_factory=socket.gethostname)
    """`DISPATCH_HOST`: the host named in hook payloads."""
    reactor: ReactorSettings = field(default_factory=ReactorSettings)

    @property
    def uses_postgres(self) -> bool:
        return self.database.startswith(POSTGRES_SCHEMES)

    @property
    def read_model_path(self) -> str:
        """The SQLite file holding read models: the event file itself when it is SQLite,
        so a read model and the events it was built from cannot drift apart."""
        if self.uses_postgres:
            return self.read_model_db or str(self.home / "read-models.db")
        return self.database

    @property
    def artifacts_dir(self) -> Path:
        """Offloaded run output (spec §1.3)."""
        if self.artifacts:
            return Path(self.artifacts)
        if self.uses_postgres:
            return self.home / "artifacts"
        return Path(self.database).resolve().parent / "artifacts"

    @property
    def gateway_environment(self) -> dict[str, str]:
        """The gateway settings as the variables `GatewaySettings` resolves (spec §30)."""
        names = {
            "OPENCLAW_GATEWAY_URL": self.gateway_url,
            "OPENCLAW_GATEWAY_TOKEN": self.gateway_token,
            "OPENCLAW_GATEWAY_TOKEN_PATH": self.gateway_token_path,
            "HOME": str(self.user_home),
        }
        return {name: value for name, value in names.items() if value}

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        user_home = Path(env.get("HOME") or Path.home())
        home = Path(env.get("SCHEDULER_HOME") or user_home / ".openclaw" / "scheduler")
        openclaw_home = Path(env.get("OPENCLAW_HOME") or user_home / ".openclaw")
        hooks = (("loki", "LOKI_PUSH_URL"), ("webhook", "DISPATCH_WEBHOOK_URL"))
        return cls(
            home=home,
            database=env.get("SCHEDULER_DB") or str(home / "ocsched.db"),
            read_model_db=env.get("OCSCHED_READ_MODEL_DB") or None,
            artifacts=env.get("SCHEDULER_ARTIFACTS_DIR") or None,
            shell=env.get("SCHEDULER_SHELL") or cls.shell,
            actor=env.get("OCSCHED_ACTOR") or None,
            debug=bool(env.get("OCSCHED_DEBUG")),
            user_home=user_home,
            openclaw_home=openclaw_home,
            dispatch_config_dir=Path(
                env.get("DISPATCH_CONFIG_DIR") or user_home / ".openclaw" / "dispatch"
            ),
            gateway_url=env.get("OPENCLAW_GATEWAY_URL") or None,
            gateway_token=env.get("OPENCLAW_GATEWAY_TOKEN") or None,
            gateway_token_path=env.get("OPENCLAW_GATEWAY_TOKEN_PATH") or None,
            hook_targets=tuple((channel, env[name]) for channel, name in hooks if env.get(name)),
            hook_host=env.get("DISPATCH_HOST") or socket.gethostname(),
            reactor=ReactorSettings.from_environment(env),
        )


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _seconds(env: Mapping[str, str], name: str, default: float, floor_s: float = 0.0) -> float:
    try:
        return max(float(env[name]), floor_s)
    except (KeyError, ValueError):
        return default


def _milliseconds(env: Mapping[str, str], name: str, default_s: float, floor_s: float) -> float:
    """A pass interval in milliseconds (spec §6.2): the default when unset or not a
    number, never below the floor."""
    try:
        return max(float(env[name]) / 1000, floor_s)
    except (KeyError, ValueError):
        return default_s


def prepare_private_file(path: str) -> None:
    """Create the file's directory (0700) and the file itself (0600) if missing.

    SQLite gives its -wal and -shm files the mode of the database file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
