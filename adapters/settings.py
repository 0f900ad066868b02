"""Every setting ocsched reads from the environment, read once (spec §1.2, §6.2, §30–§32).

`Settings.from_environment()` is called once per process (the CLI's `Context`, the
daemon); everything else receives the object. No other module reads `os.environ`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    from pathlib import Path

POSTGRES_SCHEMES = ("postgres://", "postgresql://")

_DEFAULT: Any = object()


class Folder:
    """A folder setting of `Settings`: a `Path` when read, kept as it was given (text from
    the environment) until then, so that a command that reads none imports no pathlib
    (with urllib.parse and ipaddress, ~3 ms of every start). `default()`: its text when
    not given (none: the setting is required)."""

    def __init__(self, default: Callable[[], str] | None = None) -> None:
        self._default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}"

    @overload
    def __get__(self, instance: None, owner: type) -> Any: ...
    @overload
    def __get__(self, instance: object, owner: type) -> Path: ...
    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:  # the dataclass asks for the default
            if self._default is None:
                raise AttributeError(self._slot)
            return _DEFAULT
        value = instance.__dict__[self._slot]
        if isinstance(value, str):
            from pathlib import Path

            value = instance.__dict__[self._slot] = Path(value)
        return value

    def __set__(self, instance: object, value: str | os.PathLike[str]) -> None:
        if value is _DEFAULT:
            assert self._default is not None, "a required setting is always given"
            value = self._default()
        elif not isinstance(value, str):
            from pathlib import Path

            value = Path(value)
        instance.__dict__[self._slot] = value


def _user_home() -> str:
    return os.path.expanduser("~")  # what Path.home() returns


class ReactorSettings(NamedTuple):
    """The daemon's knobs, with the defaults and floors of spec §6.2 and README. (A named
    tuple: made at import ~10 times faster than a frozen dataclass, on every command.)"""

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

    home: Folder = Folder()  # (required: Folder() has no default)
    database: str  # type: ignore[misc]
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
    log_level: str | None = None
    """`OCSCHED_LOG_LEVEL`: the daemon's log level (debug, info, warning, error); its
    `--log-level` wins."""
    log_format: str | None = None
    """`OCSCHED_LOG_FORMAT`: the daemon's log lines, text or json; its `--log-format` wins."""
    storage_retry_s: float = 10.0
    """`OCSCHED_STORAGE_RETRY_S` (0 to 300): how long a command retries a transient storage
    error (a lock held elsewhere, a full disk, a lost connection) before it gives up. The
    daemon retries until the storage is back."""
    cipher_key: str | None = field(default=None, repr=False)
    """`OCSCHED_CIPHER_KEY`: new events' states encrypted with it (adapters/cipher.py)."""
    cipher_old_keys: str | None = field(default=None, repr=False)
    """`OCSCHED_CIPHER_OLD_KEYS`: earlier keys, comma-separated, still read with."""
    user_home: Folder = Folder(_user_home)
    """`HOME`."""
    openclaw_home: Folder = Folder(lambda: os.path.join(_user_home(), ".openclaw"))
    """`OPENCLAW_HOME`: OpenClaw's own files (sessions, credentials, openclaw.json)."""
    dispatch_config_dir: Folder = Folder(
        lambda: os.path.join(_user_home(), ".openclaw", "dispatch")
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
    hook_host: str = field(default_factory=lambda: os.uname().nodename)
    """`DISPATCH_HOST`: the host named in hook payloads."""
    environment: Mapping[str, str] = field(
        default_factory=lambda: dict(os.environ), repr=False, compare=False
    )
    """The whole environment: what the runs' shells inherit (`OCSCHED_RUN_ID` added)."""
    reactor: ReactorSettings = field(default_factory=ReactorSettings)
    api_token: str | None = field(default=None, repr=False)
    """`OCSCHED_API_TOKEN`: the token `ocsched serve` requires (else one it generates)."""

    @property
    def uses_postgres(self) -> bool:
        return self.database.startswith(POSTGRES_SCHEMES)

    @property
    def read_model_path(self) -> str:
        """The SQLite file holding read models: the event file itself when it is SQLite,
        so a read model and the events it was built from cannot drift apart. With a cipher
        key, a file of their own: they hold the decoded values the log keeps encrypted."""
        if self.uses_postgres or self.cipher_key:
            return self.read_model_db or _folder(os.path.join(self.home_text, "read-models.db"))
        return self.database

    @property
    def home_text(self) -> str:
        """`home` as text, without making a Path."""
        return os.fspath(self.__dict__["_home"])  # (as `Folder` keeps it)

    @property
    def artifacts_dir(self) -> Path:
        """Offloaded run output (spec §1.3)."""
        from pathlib import Path

        return Path(self._artifacts_text())

    def _artifacts_text(self) -> str:
        if self.artifacts:
            return self.artifacts
        if self.uses_postgres:
            return _folder(os.path.join(self.home_text, "artifacts"))
        return os.path.join(os.path.dirname(os.path.realpath(self.database)), "artifacts")

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
        join = os.path.join
        user_home = _folder(env.get("HOME") or _user_home())
        home = _folder(env.get("SCHEDULER_HOME") or join(user_home, ".openclaw", "scheduler"))
        openclaw_home = _folder(env.get("OPENCLAW_HOME") or join(user_home, ".openclaw"))
        hooks = (("loki", "LOKI_PUSH_URL"), ("webhook", "DISPATCH_WEBHOOK_URL"))
        return cls(
            home=home,
            database=env.get("SCHEDULER_DB") or _folder(join(home, "ocsched.db")),
            read_model_db=env.get("OCSCHED_READ_MODEL_DB") or None,
            artifacts=env.get("SCHEDULER_ARTIFACTS_DIR") or None,
            shell=env.get("SCHEDULER_SHELL") or cls.shell,
            actor=env.get("OCSCHED_ACTOR") or None,
            debug=bool(env.get("OCSCHED_DEBUG")),
            log_level=env.get("OCSCHED_LOG_LEVEL") or None,
            log_format=env.get("OCSCHED_LOG_FORMAT") or None,
            storage_retry_s=_bounded_seconds(env, "OCSCHED_STORAGE_RETRY_S", 10.0, 300.0),
            cipher_key=env.get("OCSCHED_CIPHER_KEY") or None,
            cipher_old_keys=env.get("OCSCHED_CIPHER_OLD_KEYS") or None,
            user_home=user_home,
            openclaw_home=openclaw_home,
            dispatch_config_dir=_folder(
                env.get("DISPATCH_CONFIG_DIR") or join(user_home, ".openclaw", "dispatch")
            ),
            gateway_url=env.get("OPENCLAW_GATEWAY_URL") or None,
            gateway_token=env.get("OPENCLAW_GATEWAY_TOKEN") or None,
            gateway_token_path=env.get("OPENCLAW_GATEWAY_TOKEN_PATH") or None,
            hook_targets=tuple((channel, env[name]) for channel, name in hooks if env.get(name)),
            hook_host=env.get("DISPATCH_HOST") or os.uname().nodename,
            environment=dict(env),
            reactor=ReactorSettings.from_environment(env),
            api_token=env.get("OCSCHED_API_TOKEN") or None,
        )


def login_name() -> str:
    """`getpass.getuser()` without importing getpass (and termios with it, ~0.5 ms of every
    command): LOGNAME, USER, LNAME or USERNAME, else the password database's name of this
    uid (KeyError when it has none)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if user := os.environ.get(name):
            return user
    import pwd

    return pwd.getpwuid(os.getuid())[0]


def _folder(text: str) -> str:
    """`str(Path(text))` without importing pathlib: empty and "." parts and doubled or
    trailing slashes dropped, ".." and a leading "//" kept (a test holds them equal)."""
    root = "//" if text.startswith("//") and not text.startswith("///") else "/" * (text[:1] == "/")
    return root + "/".join(part for part in text.split("/") if part not in ("", ".")) or "."


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def _seconds(env: Mapping[str, str], name: str, default: float, floor_s: float = 0.0) -> float:
    try:
        return max(float(env[name]), floor_s)
    except (KeyError, ValueError):
        return default


def _bounded_seconds(env: Mapping[str, str], name: str, default: float, most: float) -> float:
    """Seconds from 0 to `most`; the default when unset or not a number (NaN too)."""
    value = _seconds(env, name, default)
    return min(value, most) if value == value else default


def _milliseconds(env: Mapping[str, str], name: str, default_s: float, floor_s: float) -> float:
    """A pass interval in milliseconds (spec §6.2): the default when unset or not a
    number, never below the floor."""
    try:
        return max(float(env[name]) / 1000, floor_s)
    except (KeyError, ValueError):
        return default_s


# Private files (issue 9): modes enforced on every open, not only on creation.


def _warn(message: str, *args: object) -> None:
    # logging is imported only when there is something to say: every command opens the
    # store, and the import would cost each of them ~5 ms.
    import logging

    logging.getLogger("ocsched").warning(message, *args)


PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def tighten(path: str | os.PathLike[str], allowed: int) -> bool:
    """Clear the permission bits of an existing `path` that `allowed` does not grant (never
    adds one: a read-only 0444 file becomes 0400), with one warning line when it changed
    something. Missing: nothing to do. Returns whether it changed the mode."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    mode = stat.S_IMODE(status.st_mode)
    wanted = stat.S_ISDIR if allowed == PRIVATE_DIRECTORY else stat.S_ISREG
    if not wanted(status.st_mode) or not _ours_to_tighten(path, status.st_mode):
        return False
    if not mode & ~allowed:
        return False
    try:
        os.chmod(path, mode & allowed)
    except OSError as error:
        _warn("could not tighten permissions of %s (%04o): %s", path, mode, error.strerror)
        return False
    _warn("tightened permissions of %s from %04o to %04o", path, mode, mode & allowed)
    return True


def _ours_to_tighten(path: str | os.PathLike[str], mode: int) -> bool:
    """Never a shared folder (sticky, like /tmp), the root, or the user's home: a setting
    that names one (`SCHEDULER_DB=/tmp`, `SCHEDULER_HOME=~`) must not change its modes."""
    if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        return False
    resolved = os.path.realpath(path)
    return resolved not in ("/", os.path.realpath(os.path.expanduser("~")))


def private_directory(path: str | os.PathLike[str], *, tighten_existing: bool = True) -> None:
    """`path` as a directory only its owner can use: every missing directory on the way
    is created 0700 whatever the umask (`mkdir(mode=…)` gives the parents the umask's
    mode); an existing `path` is tightened to 0700 unless `tighten_existing` is false."""
    directory = os.path.abspath(path)
    missing = []
    while not _exists(directory) and directory != os.path.dirname(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for created in reversed(missing):
        try:
            os.mkdir(created, PRIVATE_DIRECTORY)
        except FileExistsError:  # another process made it first: tighten it below
            continue
        os.chmod(created, PRIVATE_DIRECTORY)  # the umask may have taken the owner's bits
    if tighten_existing:
        tighten(path, PRIVATE_DIRECTORY)


def _exists(path: str) -> bool:
    """`Path(path).exists()`: a missing file or folder on the way is False, any other
    error (a permission) is raised."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            raise
        return False
    except ValueError:  # a NUL in the path
        return False
    return True


def open_private_file(path: str | os.PathLike[str], *, truncate: bool) -> int | None:
    """A new `path` created 0600 whatever the umask, and its descriptor (open for writing).
    An existing one is tightened to 0600 and, with `truncate`, opened emptied; without,
    left unopened (None): a store that is read-only stays so."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        tighten(path, PRIVATE_FILE)
        return os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC) if truncate else None
    try:
        os.fchmod(descriptor, PRIVATE_FILE)  # the umask may have taken the owner's bits
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def prepare_private_file(path: str) -> None:
    """Before SQLite opens `path`: its missing directories created 0700 and the file 0600
    (whatever the umask); an existing file, and its -wal/-shm/-journal, tightened to 0600.
    SQLite gives the files it creates beside the database the database's mode. Existing
    directories are `secure_store`'s: it knows which of them are the scheduler's."""
    private_directory(os.path.dirname(os.path.abspath(path)), tighten_existing=False)
    descriptor = open_private_file(path, truncate=False)
    if descriptor is not None:
        os.close(descriptor)
    for suffix in SQLITE_COMPANIONS:
        tighten(path + suffix, PRIVATE_FILE)


def secure_store(settings: Settings) -> None:
    """On every open of the store, by reads too (issue 9): the scheduler home and the
    folders of the store in it 0700; the SQLite files (and -wal/-shm) 0600; the artifacts
    folder and its `runs` 0700, and, when `runs` had to be tightened (a store from before
    this rule), every run folder (0700) and file (0600) in it. Creates nothing. A folder
    outside the home that the user named (`SCHEDULER_DB=/tmp/x.db`,
    `SCHEDULER_ARTIFACTS_DIR=~/out`) is not ours to change: only what we put in it is."""
    home = os.path.abspath(settings.home_text)
    tighten(home, PRIVATE_DIRECTORY)
    files = [] if settings.uses_postgres else [settings.database]
    files.append(settings.read_model_path)
    for file in dict.fromkeys(files):
        directory = os.path.dirname(os.path.abspath(file))
        if directory != home and _within(directory, home):
            tighten(directory, PRIVATE_DIRECTORY)
        for suffix in ("", *SQLITE_COMPANIONS):
            tighten(file + suffix, PRIVATE_FILE)
    artifacts = os.path.abspath(settings._artifacts_text())
    if settings.artifacts is None or _within(artifacts, home):
        tighten(artifacts, PRIVATE_DIRECTORY)
    runs = os.path.join(artifacts, "runs")
    if tighten(runs, PRIVATE_DIRECTORY):
        _tighten_tree(runs)


def _within(path: str, folder: str) -> bool:
    """`Path(path).is_relative_to(folder)` for absolute, normalized paths."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _tighten_tree(root: str) -> None:
    for directory, folders, names in os.walk(root):
        for folder in folders:
            tighten(os.path.join(directory, folder), PRIVATE_DIRECTORY)
        for name in names:
            tighten(os.path.join(directory, name), PRIVATE_FILE)


def write_artifact(path: str, text: str) -> None:
    """Write a run's offloaded output to `<artifacts>/runs/<run id>/<name>`: missing folders
    created 0700 and the file 0600 whatever the umask, `runs` and the run's folder
    tightened. The run id must be one safe path segment and the file must resolve under
    the artifacts folder (issue 9); else OutsideRoot, an OSError."""
    from pathlib import Path

    from ocsched.domain.safe_names import is_safe_segment

    from .openclaw_files import OutsideRoot, within

    file = Path(path)
    run_folder = file.parent
    runs = run_folder.parent
    if runs.name != "runs" or not is_safe_segment(run_folder.name):
        raise OutsideRoot(f"refusing {path}: not <artifacts>/runs/<run id>/<file>")
    private_directory(runs.parent, tighten_existing=False)
    private_directory(runs)
    private_directory(run_folder)
    within(runs.parent, file)
    descriptor = open_private_file(file, truncate=True)
    assert descriptor is not None
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
