"""Being told that any host appended to the PostgreSQL log, instead of polling for it.

The library's PostgreSQL recorder sends `NOTIFY <events table>` in every transaction that
inserts events, and PostgreSQL delivers it to each listener when that transaction
commits. A thread holds one connection of its own that LISTENs on that channel and sets
an `asyncio.Event` on the daemon's loop for every notification (the reactor then reads
the head, as after an inotify wake on SQLite). A lost connection is made again with
backoff, and the event is set once it is back: a commit made meanwhile was not heard.

While it listens, the daemon's home holds `listening` (its identity): a command on that
home then reads the read models as they are, without importing the driver or catching
up, since the daemon keeps them current (`pushed`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .process_identity import owner_is_dead

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("ocsched")

WAIT_S = 0.5
"""How long the thread waits for a notification before it looks whether to stop."""
RECONNECT_MAX_S = 2.0
MARKER = "listening"


def pushed(home: Path) -> bool:
    """Whether a live daemon on this home listens to the log, keeping its read models
    current (its marker names a process that still runs)."""
    try:
        identity = (home / MARKER).read_text().strip()
    except OSError:
        return False
    return bool(identity) and not owner_is_dead(identity)


def connection_arguments(env: Mapping[str, str]) -> dict[str, Any]:
    """psycopg's connect() arguments from the library's POSTGRES_* settings
    (`event_store.postgres_env`)."""
    return {
        "host": env["POSTGRES_HOST"],
        "port": int(env["POSTGRES_PORT"]),
        "dbname": env["POSTGRES_DBNAME"],
        "user": env["POSTGRES_USER"],
        "password": env.get("POSTGRES_PASSWORD") or None,
        "connect_timeout": int(env.get("POSTGRES_CONNECT_TIMEOUT", "5")),
        "autocommit": True,
        "application_name": "ocsched-listen",
    }


def log_channel(recorder: Any) -> str:
    """The channel the library's PostgreSQL recorder notifies on each append."""
    return str(recorder.channel_name)


class LogNotifyWatcher:
    """Sets `event` whenever a transaction that appended to the log commits."""

    def __init__(
        self,
        arguments: Mapping[str, Any],
        channel: str,
        event: asyncio.Event,
        marker: tuple[Path, str] | None = None,
    ) -> None:
        self.arguments = dict(arguments)
        self.channel = channel
        self.event = event
        self.marker = marker
        """(home, identity): the `listening` file written while the connection listens."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = threading.Event()
        """Set while the connection LISTENs (tests wait for it)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="ocsched-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (within `WAIT_S`; it does not hold the process)."""
        self._stop.set()
        self._mark(False)

    def _mark(self, listening: bool) -> None:
        if self.marker is None:
            return
        home, identity = self.marker
        path = home / MARKER
        try:
            if listening:
                temporary = home / f".{MARKER}.{os.getpid()}"
                temporary.write_text(identity + "\n")
                temporary.replace(path)
            elif path.exists() and path.read_text().strip() == identity:
                path.unlink()
        except OSError as error:
            log.warning("the %s marker: %s", path, error)

    def _wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.event.set)

    def _run(self) -> None:
        import psycopg
        from psycopg import sql

        delay = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(**self.arguments) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening.set()
                    self._mark(True)
                    self._wake()  # anything committed before LISTEN took effect
                    delay = 0.1
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=WAIT_S, stop_after=1):
                            self._wake()
            except Exception as error:  # noqa: BLE001 - the watch must outlive an outage
                self.listening.clear()
                self._mark(False)
                if self._stop.is_set():
                    return
                log.warning(
                    "listening for other hosts' events: %s: %s; again in %.1f s",
                    type(error).__name__,
                    error,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                self._wake()
