"""Saving from the event loop: many callers, one transaction per batch, off the loop."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import IntegrityError

from ocsched.adapters.storage_errors import Outage, StorageFault, backoff, storage_fault
from ocsched.commands.context import Context

log = logging.getLogger("ocsched")

CATCH_UP_EVERY_S = 0.03
"""Under a steady stream of saves, how often the read models are caught up at least: how
far `runs list` may trail a burst, and what is left to project when it ends. (Catching up
three times as often as every 0.1 s cost no more CPU in a 3,000-run burst: a page's cost
is its rows.)"""
RETRY_MAX_DELAY_S = 0.5
"""The longest wait between two attempts of a write or catch-up that failed for a
transient storage error: the writer is back within this of the storage (a lock is waited
for within an attempt, as long as SQLite's busy timeout)."""


class Conflict(Exception):
    """Another process recorded a decision first (the same run, dispatch or job version)."""


class EventWriter:
    """`await writer.save(*aggregates)` appends their events and returns once they are
    durable. Saves that arrive while a batch is being written go together into the next
    one, so a thousand runs finishing at once cost a few transactions, not a thousand.

    The read models are caught up when the saves pause, and at least every
    `CATCH_UP_EVERY_S` while they do not: the daemon tracks its own runs in memory, so
    only what it reads back (a job's row, a timer) has to wait for them, through
    `settled()`; a larger page also merges a run's row changes into fewer statements.
    Writing and catching up take turns in one worker thread at a time.

    `seen` is the newest event id up to which every event is this writer's own or was
    reported to `foreign()`: a log head beyond it means another process appended.

    A write or catch-up that fails for a transient storage error (a lock held by another
    process, a full disk, an I/O error, a lost PostgreSQL connection) is tried again with
    backoff until it succeeds, its saves still waiting and the ones queued after it behind
    them: nothing decided is dropped, and each save is one transaction, written whole or
    not at all. Only a daemon that stops gives up, `give_up_after` its grace."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen = 0
        self._pending: list[tuple[list[Any], asyncio.Future]] = []
        self._queued: dict[asyncio.Future, list[Any]] = {}
        """The pending saves' groups by their futures (not yet taken by a batch)."""
        self._flusher: asyncio.Task | None = None
        self._written = 0
        """Batches written so far."""
        self._projected = 0
        """Batches the read models are known to include (those written before the start of
        the last catch-up that ended)."""
        self._catch_up_asked = False
        self._waiters: list[asyncio.Future] = []
        """Each answered by the end of a catch-up that starts after it asked."""
        self._writing: asyncio.Future | None = None
        self._caught_up_at = 0.0
        self._on_settled: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self._outage = Outage(log, "writing")
        self._give_up_at: float | None = None
        self.catch_up_once: Callable[[], int] = ctx.catch_up_once
        """One catch-up, blocking (in a worker thread): in this process, or the daemon's
        read models' process (`projector.py`)."""

    async def save(self, *aggregates: Any) -> None:
        await self.queue(*aggregates)

    def queue(self, *aggregates: Any) -> asyncio.Future:
        """Queue a save; the future is done when it is durable (or failed)."""
        future = asyncio.get_running_loop().create_future()
        group = [*aggregates]
        self._pending.append((group, future))
        self._queued[future] = group
        self._start()
        return future

    def is_queued(self, queued: asyncio.Future) -> bool:
        """Whether a queued save is still waiting to be written (it may be joined)."""
        return queued in self._queued

    def join(self, queued: asyncio.Future, *aggregates: Any) -> bool:
        """Add aggregates to a queued save that is not being written yet, so that all its
        events are saved in one transaction or none is; False when it is too late."""
        group = self._queued.get(queued)
        if group is None:
            return False
        group.extend(aggregates)
        return True

    async def catch_up(self, through: int = 0) -> None:
        """Bring the read models up to date with events other processes appended; with
        `through` (a log head seen), not before every projection is at it or beyond:
        a catch-up that fails or reads before that commit is visible is tried again."""
        delays = backoff(cap=RETRY_MAX_DELAY_S)
        while True:
            self._catch_up_asked = True
            await self._next_catch_up()
            if through <= 0 or self._giving_up():
                return
            if await asyncio.to_thread(self._lowest_position) >= through:
                return
            await asyncio.sleep(next(delays))

    def _lowest_position(self) -> int:
        from ocsched.projections.runner import all_projections

        store = self.ctx.store
        return min(store.position(projection.name) for projection in all_projections())

    async def settled(self) -> None:
        """Return once the read models include every event saved before this call."""
        if self._projected < self._written:
            await self._next_catch_up()

    def when_settled(self, callback: Callable[[], None]) -> None:
        """Call `callback` (at once, or after the catch-up that brings the read models to
        every event saved before this call): `settled` without a task to await it."""
        if self._projected >= self._written:
            callback()
            return
        self._on_settled.append((self._written, callback))

    async def foreign(self, head: int) -> bool:
        """Whether the log's head `head` holds events this writer did not write: after a
        batch under way has reported its ids. Events up to `head` then count as seen."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
        if head <= self.seen:
            return False
        self.seen = head
        return True

    def give_up_after(self, seconds: float) -> None:
        """Stop retrying transient storage errors `seconds` from now (the daemon is
        stopping): the saves still failing then fail for their callers."""
        self._give_up_at = time.monotonic() + seconds

    def _giving_up(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await self._flusher

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _next_catch_up(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._start()
        await waiter

    async def _flush(self) -> None:
        while True:
            if self._pending:
                batch, self._pending = self._pending, []
                self._queued.clear()
                if self._projected >= self._written:
                    # The first write since the read models were up to date opens the
                    # window: a burst's first runs start before anything is projected.
                    self._caught_up_at = time.monotonic()
                await self._write_batch(batch)
                recently = time.monotonic() - self._caught_up_at < CATCH_UP_EVERY_S
                if self._pending and recently:
                    continue
            if not (self._projected < self._written or self._catch_up_asked or self._waiters):
                if not self._pending:
                    return
                continue
            target, self._catch_up_asked = self._written, False
            waiters, self._waiters = self._waiters, []
            await self._catch_up()
            self._caught_up_at = time.monotonic()
            self._projected = max(self._projected, target)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            while self._on_settled and self._on_settled[0][0] <= self._projected:
                self._on_settled.popleft()[1]()

    async def _write_batch(self, batch: list[tuple[list[Any], asyncio.Future]]) -> None:
        """Write a batch of saves (`_write`) and answer each save's future; the saves that
        failed for a transient storage error are written again, in order, with backoff."""
        loop = asyncio.get_running_loop()
        # Taken once: a failed attempt would otherwise lose the aggregates' new events.
        events = [[e for a in aggregates for e in a.collect_events()] for aggregates, _ in batch]
        futures = [future for _, future in batch]
        delays = backoff(cap=RETRY_MAX_DELAY_S)
        while True:
            self._writing = writing = loop.create_future()
            attempted = time.monotonic()
            try:
                results, written = await asyncio.to_thread(self._write, events)
                for first, last in written:
                    if first <= self.seen + 1:
                        self.seen = max(self.seen, last)
            finally:
                self._writing = None
                writing.set_result(None)
            if written:
                self._written += 1
            again: list[int] = []
            fault: StorageFault | None = None
            for index, result in enumerate(results):
                fault_here = _transient(result)
                if fault_here is not None and not self._giving_up():
                    fault = fault_here
                    again.append(index)
                    continue
                future = futures[index]
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(None)
            if fault is None:
                self._outage.ended()
                return
            waiting = f"{len(again)} save{'s' if len(again) != 1 else ''} waiting"
            self._outage.fault(fault, waiting, since=attempted)
            events = [events[index] for index in again]
            futures = [futures[index] for index in again]
            await asyncio.sleep(next(delays))

    async def _catch_up(self) -> None:
        """Catch the read models up; a transient storage error is retried with backoff,
        any other is logged and left to the next catch-up."""
        delays = backoff(cap=RETRY_MAX_DELAY_S)
        while True:
            attempted = time.monotonic()
            try:
                await asyncio.to_thread(self.catch_up_once)
            except Exception as error:  # noqa: BLE001 - a failed catch-up must not stop the daemon
                fault = storage_fault(error)
                if fault is None or self._giving_up():
                    log.error("catching up the read models: %s: %s", type(error).__name__, error)
                    return
                self._outage.fault(fault, "the read models wait", since=attempted)
                await asyncio.sleep(next(delays))
                continue
            self._outage.ended()
            return

    def _write(
        self, groups: list[list[Any]]
    ) -> tuple[list[BaseException | None], list[tuple[int, int]]]:
        """Each group of events, all groups in one transaction; when that conflicts, each
        group in a transaction of its own. Returns each group's error (or None) and the
        ranges of notification ids written."""
        results: list[BaseException | None] = [None] * len(groups)
        written: list[tuple[int, int]] = []
        try:
            if any(groups):
                written.append(self._put([e for group in groups for e in group]))
        except IntegrityError:
            results = [self._write_one(group, written) for group in groups]
        except Exception as error:  # noqa: BLE001 - handed to each waiting caller
            results = [error] * len(groups)
        return results, written

    def _write_one(self, events: list[Any], written: list[tuple[int, int]]) -> BaseException | None:
        try:
            if events:
                written.append(self._put(events))
        except IntegrityError:
            return Conflict()
        except Exception as error:  # noqa: BLE001
            return error
        return None

    def _put(self, events: list[Any]) -> tuple[int, int]:
        """Append events in one transaction through the event store (`Application.save`
        without its per-object protocol checks, which cost more than the insert)."""
        recordings = self.ctx.log.events.put(events)
        ids = [r.notification.id for r in recordings]
        return (min(ids), max(ids)) if ids else (0, -1)


def _transient(result: BaseException | None) -> StorageFault | None:
    """The transient storage error a save failed with, if that is why it failed."""
    if result is None or isinstance(result, Conflict):
        return None
    return storage_fault(result)
