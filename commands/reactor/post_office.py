"""The daemon's post office (spec §21, §13.3, §11.3): spawn requests consumed, messages
expired, the inbox consumer's sends for agents with a delivery target, message retention,
and the inbox injected into an agent turn's prompt.

No polling: the pass runs when woken (an event of another process, a saved plan that
moves timers) and when the next thing it knows of is due: an expiry, a spawn request, a
failed send's next try (`message_timers`). Each step loads the facts, asks a reaction
(`domain/reactions/messages.py`), saves its plan, and only then acts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ocsched.adapters.openclaw_files import dispatch_config
from ocsched.adapters.settings import Settings
from ocsched.domain.message_texts import PROMPT_MESSAGE_LIMIT, inbox_brand
from ocsched.domain.reactions import messages as reactions
from ocsched.domain.reactions.plan import Plan, Row, reactor_meta
from ocsched.domain.schedule import from_ts, to_ts
from ocsched.projections import message_views, views

from ..inbox_consumer import Consumer, Outlet, drain

if TYPE_CHECKING:
    from .handlers import Handlers

log = logging.getLogger("ocsched")

IDLE_S = 300.0
"""With nothing due, the pass still looks again this often (a safety net)."""
AGAIN_S = 1.0
"""Something due could not be done (a lost race, a storage error): look again after this."""


class PostOffice:
    def __init__(self, handlers: Handlers, settings: Settings) -> None:
        self.handlers = handlers
        environment = settings.environment
        self._brand_setting = environment.get("INBOX_BRAND")
        self._config = dispatch_config(settings.dispatch_config_dir)
        self.configured: Row | None = None
        """`INBOX_DELIVERY_TO` in the daemon's environment: the consumer of `INBOX_AGENT`
        (`main`) runs in the daemon too, on `INBOX_DELIVERY_CHANNEL` (`telegram`)."""
        if environment.get("INBOX_DELIVERY_TO"):
            self.configured = {
                "id": environment.get("INBOX_AGENT") or "main",
                "delivery_to": environment["INBOX_DELIVERY_TO"],
                "delivery_channel": environment.get("INBOX_DELIVERY_CHANNEL"),
                "brand_name": None,
            }
        self.prune_every_s = settings.reactor.prune_every_s
        self._pruned_at = float("-inf")
        self._wake = asyncio.Event()
        self._sending: dict[str, asyncio.Task] = {}
        """Agent -> its inbox's sends under way: a slow or unreachable gateway holds up
        that agent's messages only, never spawn requests or expiries."""

    def wake(self) -> None:
        self._wake.set()

    async def serve(self, stopping: asyncio.Event) -> None:
        try:
            await self._serve(stopping)
        finally:
            for task in self._sending.values():
                task.cancel()

    async def _serve(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()
            try:
                delay = await self.work()
            except Exception as error:  # noqa: BLE001 - a failed pass must not stop the daemon
                log.error("post office: %s: %s", type(error).__name__, error)
                delay = AGAIN_S
            stop = asyncio.ensure_future(stopping.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({stop, woken}, timeout=delay, return_when="FIRST_COMPLETED")
            stop.cancel()
            woken.cancel()

    async def work(self) -> float:
        """One pass; returns seconds until the next thing due."""
        handlers = self.handlers
        await handlers.writer.settled()  # (the read models hold this daemon's own saves)
        db = handlers.db()
        now = handlers.now()
        until = to_ts(now)
        for row in message_views.spawns_due(db, until):
            plan = reactions.spawn(
                handlers.load(row["id"]), owner=handlers.owner, now=now, facts=handlers.facts
            )
            await handlers.apply(plan)
        for row in message_views.expiries_due(db, until):
            await handlers.apply(
                reactions.expire(handlers.load(row["id"]), owner=handlers.owner, now=now)
            )
        agents = message_views.delivery_agents(db)
        if self.configured and all(a["id"] != self.configured["id"] for a in agents):
            agents.append(self.configured)
        for agent in agents:
            self._send_apart(agent)
        if time.monotonic() - self._pruned_at >= self.prune_every_s:
            self._pruned_at = time.monotonic()
            await self.prune()
        await handlers.writer.settled()
        due = message_views.next_due(handlers.db(), [agent["id"] for agent in agents])
        if due is None:
            return IDLE_S
        wait = (from_ts(due) - handlers.now()).total_seconds()
        return AGAIN_S if wait <= 0 else min(wait, IDLE_S)

    def _send_apart(self, agent: Row) -> None:
        running = self._sending.get(agent["id"])
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self.send_inbox(agent))
        self._sending[agent["id"]] = task
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("post office: sending: %s: %s", type(error).__name__, error)
        self.wake()  # (what is due next may have moved)

    async def send_inbox(self, agent: Row) -> None:
        """The inbox consumer of an agent with a delivery target (the anchor's
        `inbox-consumer:<agent>` job every 5 minutes, spec §26), run as soon as something
        is there to send."""
        handlers = self.handlers
        rows = message_views.sends_due(handlers.db(), agent["id"], to_ts(handlers.now()), 50)
        if not rows:
            return
        consumer = Consumer(
            to=agent["delivery_to"],
            channel=agent["delivery_channel"] or "telegram",
            agent=agent["id"],
            # The agent's own brand (`agents register --brand`) before INBOX_BRAND, as the
            # anchor's inbox consumer takes its `--brand` flag first.
            brand=inbox_brand(agent["brand_name"], self._brand_setting, self._config),
        )
        done = await drain(rows, consumer, self.outlet())
        if done.delivered:
            log.info("inbox of %s: delivered %d message(s)", agent["id"], done.delivered)
        for error in done.errors:
            log.warning("inbox of %s: a send failed: %s", agent["id"], error)

    def outlet(self) -> Outlet:
        handlers = self.handlers
        return Outlet(
            load=handlers.load,
            save=handlers.apply,
            sender=handlers.sender,
            alias=lambda name: views.alias(handlers.db(), name),
            now=handlers.now,
            meta=lambda message_id: reactor_meta(handlers.owner, f"inbox-consumer/{message_id}"),
        )

    async def prune(self) -> None:
        """Spec §26's message retention."""
        handlers = self.handlers
        now = handlers.now()
        cutoff = to_ts(now - timedelta(days=3))
        rows = message_views.prune_candidates(handlers.db(), cutoff)
        if rows:
            await handlers.apply(
                reactions.prune(rows, owner=handlers.owner, now=now, load=handlers.load)
            )


async def inject_inbox(handlers: Handlers, job: Row, run_id: str, now: datetime) -> str:
    """Spec §11.3 step 6: the pending-messages block of an agent turn's prompt, its
    messages recorded as delivered before the turn is sent; nothing when that record is
    lost to another run that took them first."""
    agent = job.get("agent_id") or "main"
    rows = message_views.inbox(handlers.db(), agent, ("pending",), PROMPT_MESSAGE_LIMIT)
    if not rows:
        return ""
    messages: list[Any] = [handlers.load(row["id"]) for row in rows]
    block, plan = reactions.inject(rows, messages, run_id=run_id, owner=handlers.owner, now=now)
    if plan.records and not await handlers.apply(Plan(plan.records)):
        return ""
    return block
