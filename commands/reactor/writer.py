"""Saving from the event loop: many callers, one transaction per batch, off the loop."""

from __future__ import annotations

import asyncio
from typing import Any

from eventsourcing.persistence import IntegrityError

from ocsched.commands.context import Context


class Conflict(Exception):
    """Another process recorded a decision first (the same run, dispatch or job version)."""


class EventWriter:
    """`await writer.save(*aggregates)` appends their events. Saves that arrive while a
    batch is being written go together into the next one, so a thousand runs finishing
    at once cost a few transactions, not a thousand. The read models are caught up after
    each batch (while the callers go on), so what the reactor reads a moment later
    includes its own decisions; its own active runs it tracks in memory."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def save(self, *aggregates: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((aggregates, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def catch_up(self) -> None:
        """Bring the read models up to date with events other processes appended."""
        await self.save()

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await self._flusher

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            results = await asyncio.to_thread(self._write, [aggs for aggs, _ in batch])
            # Callers go on (a run may start) as soon as the events are durable; the read
            # models catch up meanwhile, before the next batch is written.
            catching_up = asyncio.ensure_future(asyncio.to_thread(self.ctx.catch_up))
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(None)
            await catching_up

    def _write(self, groups: list[tuple[Any, ...]]) -> list[BaseException | None]:
        # Collect first: a failed save would otherwise lose the aggregates' new events.
        events = [[e for a in group for e in a.collect_events()] for group in groups]
        results: list[BaseException | None] = [None] * len(groups)
        try:
            if any(events):
                self.ctx.log.save(*(e for group in events for e in group))
        except IntegrityError:
            results = [self._write_one(group) for group in events]
        except Exception as error:  # noqa: BLE001 - handed to each waiting caller
            results = [error] * len(groups)
        return results

    def _write_one(self, events: list[Any]) -> BaseException | None:
        try:
            self.ctx.log.save(*events)
        except IntegrityError:
            return Conflict()
        except Exception as error:  # noqa: BLE001
            return error
        return None
