"""The server's way to the scheduler: service functions called in worker threads.

A query never runs on the event loop (the daemon's, under `daemon --serve`): each worker
thread keeps one `ReadContext` (its SQLite connections are the thread's own) and each call
gets a fresh `now` and correlation id. The read models are read as they are: the server's
log watch (standalone) or the daemon keeps them caught up, never a request. A write gets a
whole `ApiContext` of its own, as a CLI invocation does, closed after it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from ocsched.adapters.settings import Settings
from ocsched.commands.context import Context
from ocsched.projections import NAMES, views

if TYPE_CHECKING:
    from ocsched.domain.aggregate import EventMeta

T = TypeVar("T")

WORKERS = 4
"""Threads answering requests: SQLite releases the interpreter lock while it reads, and a
slow answer (a long history) leaves others to the rest."""


class ApiContext(Context):
    """What the server records says so: origin `api` (the actor is the server's user,
    whom the token stands for)."""

    def meta(self, origin: str | None = None, cause: str | None = None) -> EventMeta:
        return super().meta(origin or "api", cause)


class ReadContext(ApiContext):
    """A worker thread's context: its read-model connection is opened once, read-only, and
    never catches up (someone else keeps the read models fresh)."""

    def views(self) -> sqlite3.Connection | None:
        if self._views is None:
            self._secure()
            self._views = views.open_views(self.settings.read_model_path, event_table=False)
        return self._views

    def position(self) -> int:
        """The log position every read model has reached: what an answer reflects."""
        return self.positions()[0]

    def positions(self) -> tuple[int, int]:
        """The lowest read-model position, and their sum: any move of any read model
        changes the pair (they move together, but a rebuild of one moves it alone)."""
        connection = self.views()
        if connection is None:
            return 0, 0
        marks = ",".join("?" for _ in NAMES)
        row = connection.execute(
            "SELECT min(notification_id) AS low, total(notification_id) AS total"
            f" FROM tracking WHERE application_name IN ({marks})",
            NAMES,
        ).fetchone()
        return row["low"] or 0, int(row["total"])


class Reads:
    def __init__(self, settings: Settings, actor: str, workers: int = WORKERS) -> None:
        self.settings, self.actor = settings, actor
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ocsched-http")

    async def read(self, action: Callable[[ReadContext], T]) -> T:
        """`action(ctx)` in a worker thread, with that thread's context."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: action(self._context()))

    async def write(self, action: Callable[[Context], T]) -> T:
        """`action(ctx)` in a worker thread with a context of its own, as one CLI
        invocation: one correlation id, its events caught up into the read models."""

        def call() -> T:
            ctx = ApiContext(settings=self.settings, actor=self.actor)
            try:
                return action(ctx)
            finally:
                ctx.close()

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _context(self) -> ReadContext:
        ctx: ReadContext | None = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = ReadContext(settings=self.settings, actor=self.actor)
        ctx.now = datetime.now(UTC)
        ctx.correlation_id = uuid.uuid4().hex
        return ctx

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
