"""Live updates: the log watch, and `/api/v1/events/stream` (server-sent events).

The watch is the reactor's wake-up (`adapters/wake.py`): inotify on the database's `-wal`
file says someone wrote, then the log's head and the read models' position say whether
anything moved (polled every `IDLE_POLL_S` as a safety net; every `POLL_S` without inotify).
With PostgreSQL the log's NOTIFY is the wake-up (`adapters/pg_notify.py`), as for the
daemon. A standalone server first catches the read models up, as a CLI
command would, so a client told of a change reads it. Each move sets the current
`changed()` event and replaces it; a stream then sends the events after its position that
pass its filters (those of `events tail`), one `data:` line each, the event's record as
`events tail --json` prints it, with its position as the `id:` (a reconnecting
`EventSource` resumes from `Last-Event-ID`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ocsched.adapters.settings import Settings
from ocsched.adapters.wake import FileWriteWatcher
from ocsched.commands.context import Context
from ocsched.commands.events import EventFilter
from ocsched.commands.output import CommandError

from .app import API_ROOT, STATE, error_response
from .events import event_filter, events_after, position_of
from .reads import ReadContext, Reads

if TYPE_CHECKING:
    from ocsched.adapters.pg_notify import LogNotifyWatcher

log = logging.getLogger("ocsched")

POLL_S = 0.25
IDLE_POLL_S = 2.0
LOOK_EVERY_S = 0.05
"""At most this often: a daemon writing all the time is looked at 20 times a second, not
after each of its writes."""
RETRY_S = 1.0
KEEPALIVE_S = 15.0
PAGE = 500
"""Events read per look by one stream."""


class LogWatch:
    def __init__(self, settings: Settings, reads: Reads, *, catch_up: bool) -> None:
        self.settings, self.reads = settings, reads
        self.head, self.positions = -1, (-1, -1)
        self._moved = asyncio.Event()
        self._ready: asyncio.Future[None] | None = None
        self._catcher = ThreadPoolExecutor(1, "ocsched-catch-up") if catch_up else None
        self._writer: Context | None = None

    def changed(self) -> asyncio.Event:
        """Set at the next move of the log or the read models (take it before reading)."""
        return self._moved

    async def ready(self) -> None:
        """The first look is over: the read models caught up (standalone)."""
        await self._started()

    def _started(self) -> asyncio.Future[None]:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
        return self._ready

    async def run(self) -> None:
        started = self._started()
        try:
            await self._look()
        except Exception as error:  # noqa: BLE001 - serve what there is; the next look retries
            log.warning("reading the log: %s: %s", type(error).__name__, error)
        started.set_result(None)
        written = asyncio.Event()
        watcher = None
        if not self.settings.uses_postgres:
            database = os.path.abspath(self.settings.database)
            watcher = FileWriteWatcher(
                os.path.dirname(database), os.path.basename(database) + "-wal", written
            )
            if not watcher.start(asyncio.get_running_loop()):
                watcher = None
        listener = await self._listen(written)
        try:
            while True:
                heard = watcher is not None or (
                    listener is not None and listener.listening.is_set()
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(written.wait(), IDLE_POLL_S if heard else POLL_S)
                written.clear()
                began = time.monotonic()
                try:
                    await self._look()
                except Exception as error:  # noqa: BLE001 - a failed look must not end the watch
                    log.warning("reading the log: %s: %s", type(error).__name__, error)
                    await asyncio.sleep(RETRY_S)
                await asyncio.sleep(max(0.0, began + LOOK_EVERY_S - time.monotonic()))
        finally:
            if watcher is not None:
                watcher.stop(asyncio.get_running_loop())
            if listener is not None:
                listener.stop()
            if self._catcher is not None:
                self._catcher.shutdown(wait=False)

    async def _listen(self, written: asyncio.Event) -> LogNotifyWatcher | None:
        """With PostgreSQL: LISTEN for every commit that appends to the log."""
        if not self.settings.uses_postgres:
            return None
        from ocsched.adapters.event_store import postgres_env
        from ocsched.adapters.pg_notify import LogNotifyWatcher, connection_arguments, log_channel

        try:
            channel = await self.reads.read(lambda ctx: log_channel(ctx.log.recorder))
        except Exception as error:  # noqa: BLE001 - the polling fallback still works
            log.warning("listening to the log: %s: %s", type(error).__name__, error)
            return None
        arguments = connection_arguments(postgres_env(self.settings.database))
        listener = LogNotifyWatcher(arguments, channel, written)
        listener.start(asyncio.get_running_loop())
        return listener

    async def _look(self) -> None:
        # The head before the catch-up: whatever lands meanwhile moves it again.
        head = await self.reads.read(lambda ctx: ctx.log.max_position())
        if self._catcher is not None:
            await asyncio.get_running_loop().run_in_executor(self._catcher, self._catch_up)
        positions = await self.reads.read(ReadContext.positions)
        if (head, positions) != (self.head, self.positions):
            self.head, self.positions = head, positions
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    def _catch_up(self) -> None:
        if self._writer is None:
            self._writer = Context(settings=self.settings)
        if not self._writer.read_only:
            self._writer.catch_up()


async def stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    resume = request.headers.get("Last-Event-ID") or request.query.get("after")
    try:
        chosen = event_filter(request.query, datetime.now(UTC))
        start = position_of({"after": resume} if resume else {}, "after")
    except (CommandError, ValueError) as error:
        return error_response(400, str(error))
    position = (
        start if start is not None else await state.reads.read(lambda ctx: ctx.log.max_position())
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    try:
        await response.write(b"retry: 1000\n\n")
        while not state.closing.is_set():
            moved = state.watch.changed()
            records, position = await state.reads.read(_reader(position, chosen))
            for record in records:
                await response.write(_frame(record))
            if len(records) >= PAGE:
                continue
            if not await _either(moved, state.closing, KEEPALIVE_S):
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass
    return response


def _reader(
    after: int, chosen: EventFilter
) -> Callable[[ReadContext], tuple[list[dict[str, Any]], int]]:
    return lambda ctx: events_after(ctx, after, chosen, PAGE)


def _frame(record: dict[str, Any]) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (record["position"], msgspec.json.encode(record))


async def _either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> bool:
    """Wait until either event is set (True) or `timeout` passes (False)."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
    for task in pending:
        task.cancel()
    return bool(done)


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{API_ROOT}/events/stream", stream)
