"""The files that run `ocsched daemon` as a service: a systemd user unit (Linux) or a
launchd agent (macOS), written from the current settings, and the service manager's calls.

What goes where. The unit names the absolute `ocsched` of this installation and the
settings the user has set (`SETTING_NAMES`, the variables `adapters/settings.py` reads,
plus PATH, which the runs' shells inherit) as `Environment=` lines. Secrets
(`SECRET_NAMES`, and a `SCHEDULER_DB` URL with a password) are never written into the
unit: they go, only when asked for, to an environment file created 0600 in a 0700 folder
that the unit reads with `EnvironmentFile=-` (the dash: a missing file is no error, so a
user may create it by hand). launchd has no environment file: the agent's plist, written
0600, then holds them.

Stopping. systemd's default `KillMode=control-group` would send SIGTERM to every process
of the unit, the runs' shells included, at once; `KillMode=mixed` sends it to the daemon
only, which stops starting runs and gives running ones their grace (`--grace`), and
`TimeoutStopSec` leaves room for that grace plus the daemon's own shutdown before the
final SIGKILL of whatever is left.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .settings import PRIVATE_FILE, Settings, open_private_file, private_directory

UNIT_NAME = "ocsched.service"
LAUNCHD_LABEL = "io.ocsched.daemon"
STOP_MARGIN_S = 30
"""Beyond the grace: the daemon's save retries (5 s), the wait for cancelled runs (5 s),
recovery and closing, with room to spare."""

SETTING_NAMES = (
    "SCHEDULER_HOME",
    "SCHEDULER_DB",
    "OCSCHED_READ_MODEL_DB",
    "SCHEDULER_ARTIFACTS_DIR",
    "SCHEDULER_SHELL",
    "OCSCHED_ACTOR",
    "OCSCHED_DEBUG",
    "OCSCHED_LOG_LEVEL",
    "OCSCHED_LOG_FORMAT",
    "OCSCHED_STORAGE_RETRY_S",
    "OCSCHED_CIPHER_KEY",
    "OCSCHED_CIPHER_OLD_KEYS",
    "OPENCLAW_HOME",
    "DISPATCH_CONFIG_DIR",
    "OPENCLAW_GATEWAY_URL",
    "OPENCLAW_GATEWAY_TOKEN",
    "OPENCLAW_GATEWAY_TOKEN_PATH",
    "LOKI_PUSH_URL",
    "DISPATCH_WEBHOOK_URL",
    "DISPATCH_HOST",
    "OCSCHED_MAX_CONCURRENT_RUNS",
    "OCSCHED_MAX_CONCURRENT_TURNS",
    "OCSCHED_SHUTDOWN_GRACE_S",
    "SCHEDULER_HEARTBEAT_CHECK_MS",
    "SCHEDULER_PRUNE_MS",
    "OCSCHED_ACTIVITY_POLL_S",
    "OCSCHED_DISPATCH_FOLLOW_S",
    "OCSCHED_OVERLOAD_GRACE_S",
    "OCSCHED_RETRY_BASE_S",
    "OCSCHED_API_TOKEN",
)
"""Every variable `adapters/settings.py` reads but HOME (the service manager sets it);
a test holds the two lists equal."""

PASSED_ON = (
    "PATH",
    "TZ",
    "LANG",
    "LC_ALL",
    "PGPASSFILE",
    "PGPASSWORD",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
)
"""Not ocsched's settings, but what the daemon's runs (their shells, their zone and
language) and PostgreSQL's client library read from the environment."""

SECRET_NAMES = frozenset(
    {
        "OCSCHED_CIPHER_KEY",
        "OCSCHED_CIPHER_OLD_KEYS",
        "OPENCLAW_GATEWAY_TOKEN",
        "OCSCHED_API_TOKEN",
        "PGPASSWORD",
        # Push and webhook URLs commonly carry their credentials.
        "LOKI_PUSH_URL",
        "DISPATCH_WEBHOOK_URL",
    }
)


class UnitError(ValueError):
    """A setting that cannot be written into a unit (a newline in a value)."""


@dataclass(frozen=True)
class ServiceFiles:
    """What `install` writes: the unit (or plist) and, when secrets were asked for and
    there are some, `env_text` into the environment file the unit names (`env_path`,
    systemd only); `withheld` names the secrets left out."""

    kind: str
    unit_path: Path
    unit_text: str
    env_path: Path | None
    env_text: str | None
    withheld: tuple[str, ...]


def default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def daemon_command() -> list[str]:
    """This installation's `ocsched daemon`: the script beside the running interpreter (a
    venv's bin), else the interpreter running the package."""
    script = Path(sys.executable).with_name("ocsched")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(Path(os.path.abspath(script))), "daemon"]
    return [os.path.abspath(sys.executable), "-m", "ocsched", "daemon"]


def service_environment(settings: Settings) -> dict[str, str]:
    """The settings the user has set, in `SETTING_NAMES` order, with SCHEDULER_HOME always
    given (absolute) so the service uses this home, then those of `PASSED_ON` set."""
    env = settings.environment
    chosen = {"SCHEDULER_HOME": str(Path(os.path.abspath(settings.home)))}
    for name in SETTING_NAMES:
        value = env.get(name)
        if value and name not in chosen:
            chosen[name] = value
    if chosen.get("SCHEDULER_DB") and not settings.uses_postgres:
        chosen["SCHEDULER_DB"] = os.path.abspath(chosen["SCHEDULER_DB"])
    chosen.update((name, env[name]) for name in PASSED_ON if env.get(name))
    return chosen


def is_secret(name: str, value: str) -> bool:
    if name in SECRET_NAMES:
        return True
    if name == "SCHEDULER_DB" and "://" in value:
        return bool(urlsplit(value).password)
    return False


def service_files(
    settings: Settings,
    *,
    kind: str,
    grace_s: float,
    with_secrets: bool,
    log_format: str | None = None,
) -> ServiceFiles:
    environment = service_environment(settings)
    plain = {n: v for n, v in environment.items() if not is_secret(n, v)}
    secret = {n: v for n, v in environment.items() if is_secret(n, v)}
    for name, value in environment.items():
        if "\n" in value or "\r" in value or "\0" in value:
            raise UnitError(f"{name} holds a line break; it cannot be written into a unit")
    command = daemon_command()
    stop_s = int(grace_s) + STOP_MARGIN_S
    withheld = () if with_secrets else tuple(secret)
    if kind == "launchd":
        given = {**plain, **(secret if with_secrets else {})}
        if log_format:
            command = [*command, "--log-format", log_format]
        text = launchd_plist(command, given, settings.home, stop_s)
        path = launch_agents_dir(settings) / f"{LAUNCHD_LABEL}.plist"
        return ServiceFiles(kind, path, text, None, None, withheld)
    env_path = config_dir(settings) / "ocsched" / "service.env"
    command = [*command, "--log-format", log_format or "journal"]
    text = systemd_unit(command, plain, env_path, stop_s)
    env_text = environment_file(secret) if with_secrets and secret else None
    path = config_dir(settings) / "systemd" / "user" / UNIT_NAME
    return ServiceFiles(kind, path, text, env_path, env_text, withheld)


def config_dir(settings: Settings) -> Path:
    """`$XDG_CONFIG_HOME`, else `~/.config`."""
    given = settings.environment.get("XDG_CONFIG_HOME")
    return Path(given) if given and os.path.isabs(given) else settings.user_home / ".config"


def launch_agents_dir(settings: Settings) -> Path:
    return settings.user_home / "Library" / "LaunchAgents"


# systemd


def systemd_unit(
    command: list[str], environment: Mapping[str, str], env_file: Path, stop_s: int
) -> str:
    lines = [
        "# Written by `ocsched service install`; `ocsched service install` again rewrites it.",
        "[Unit]",
        "Description=ocsched scheduler daemon",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        "ExecStart=" + " ".join(_exec_word(word) for word in command),
        *(f"Environment={_quoted(f'{name}={value}')}" for name, value in environment.items()),
        f"EnvironmentFile=-{_escaped(str(env_file))}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_s}",
        "Restart=on-failure",
        "RestartSec=5",
        "SyslogIdentifier=ocsched",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _escaped(text: str) -> str:
    """`%` starts a specifier in unit files; `%%` is a literal one."""
    return text.replace("%", "%%")


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _escaped(escaped) + '"'


def _exec_word(word: str) -> str:
    plain = word and all(c.isalnum() or c in "/._-+=:,@" for c in word)
    # `$` expands in ExecStart; `$$` is a literal one.
    return _escaped(word) if plain else _quoted(word).replace("$", "$$")


def environment_file(values: Mapping[str, str]) -> str:
    """`NAME='value'` lines as systemd's EnvironmentFile reads them (single quotes keep
    everything literal; a value holding one is double-quoted with escapes)."""
    lines = ["# Secrets for ocsched.service, written by `ocsched service install --with-secrets`"]
    for name, value in values.items():
        if "'" not in value:
            lines.append(f"{name}='{value}'")
        else:
            escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
            lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


# launchd


def launchd_plist(
    command: list[str], environment: Mapping[str, str], home: Path, stop_s: int
) -> str:
    logs = Path(os.path.abspath(home)) / "logs" / "daemon.log"
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command,
        "EnvironmentVariables": dict(environment),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": stop_s,
        "ProcessType": "Background",
        "StandardOutPath": str(logs),
        "StandardErrorPath": str(logs),
    }
    return plistlib.dumps(agent, sort_keys=False).decode()


# Files


def write_files(files: ServiceFiles) -> None:
    """The unit 0644 under the user's config (0600 for a plist that may hold secrets), the
    environment file 0600 in a 0700 folder; an existing environment file is left alone
    unless there is one to write."""
    private = files.kind == "launchd"
    files.unit_path.parent.mkdir(parents=True, exist_ok=True)
    _write(files.unit_path, files.unit_text, PRIVATE_FILE if private else 0o644)
    if files.env_path is not None and files.env_text is not None:
        private_directory(files.env_path.parent)
        _write(files.env_path, files.env_text, PRIVATE_FILE)
    if private:  # launchd opens the log file, not its folder
        log_file = plistlib.loads(files.unit_text.encode())["StandardErrorPath"]
        private_directory(os.path.dirname(log_file))


def _write(path: Path, text: str, mode: int) -> None:
    """Written to a new file beside `path`, then renamed over it: never half a unit."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = open_private_file(partial, truncate=True)
    assert descriptor is not None
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.chmod(partial, mode)
    os.replace(partial, path)


def remove_files(files: ServiceFiles) -> list[str]:
    """Remove the unit and the environment file (the one the unit names, written or
    not); returns the paths removed."""
    removed = []
    for path in (files.unit_path, files.env_path):
        if path is not None and path.exists():
            path.unlink()
            removed.append(str(path))
    return removed


# The service manager


def manager_reachable(settings: Settings, kind: str) -> str | None:
    """None when the user's service manager can be asked; else why not."""
    if kind == "launchd":
        if shutil.which("launchctl") is None:
            return "launchctl is not on PATH"
        return None
    if shutil.which("systemctl") is None:
        return "systemctl is not on PATH"
    runtime = settings.environment.get("XDG_RUNTIME_DIR")
    sockets = ("bus", os.path.join("systemd", "private"))
    if not runtime or not any(os.path.exists(os.path.join(runtime, s)) for s in sockets):
        return "no user service manager is reachable (no $XDG_RUNTIME_DIR/bus)"
    return None


def start_hint(files: ServiceFiles) -> str:
    """What to run by hand where the service manager could not be asked."""
    if files.kind == "launchd":
        return f"launchctl bootstrap gui/$(id -u) {files.unit_path}"
    return "systemctl --user daemon-reload && systemctl --user enable --now ocsched"


def manage(kind: str, action: str, files: ServiceFiles) -> tuple[bool, str]:
    """Ask the service manager to `action` (start, stop, state) the service; returns
    whether it answered well and what it said (one line). Start restarts a running
    service, so that installing again applies the new settings (its runs get their grace);
    a step marked optional (unloading an agent that is not loaded) may fail."""
    steps: list[tuple[list[str], bool]]
    if kind == "launchd":
        domain = f"gui/{os.getuid()}"
        unload = (["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"], False)
        steps = {
            "start": [
                (unload[0], True),
                (["launchctl", "bootstrap", domain, str(files.unit_path)], False),
            ],
            "stop": [unload],
            "state": [(["launchctl", "print", f"{domain}/{LAUNCHD_LABEL}"], False)],
        }[action]
    else:
        user = ["systemctl", "--user"]
        steps = {
            "start": [
                ([*user, "daemon-reload"], False),
                ([*user, "enable", UNIT_NAME], False),
                ([*user, "restart", UNIT_NAME], False),
            ],
            "stop": [
                ([*user, "disable", "--now", UNIT_NAME], False),
                ([*user, "daemon-reload"], False),
            ],
            "state": [([*user, "is-active", UNIT_NAME], False)],
        }[action]
    said = ""
    for argv, optional in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, f"{' '.join(argv)}: {error}"
        said = next(iter((done.stdout.strip() or done.stderr.strip()).splitlines()), "")
        if done.returncode != 0 and not optional:
            return False, f"{' '.join(argv)}: {said or f'exit status {done.returncode}'}"
    if kind == "launchd" and action == "state":
        return True, "loaded"
    return True, said
