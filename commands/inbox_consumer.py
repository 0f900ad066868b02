"""The inbox consumer (spec §13.3): pending messages of an agent sent to a chat, one by
one, through the gateway's `message` tool. `ocsched inbox-consumer` runs it once or
watching; the daemon runs the same drain for agents with a delivery target
(`commands/reactor/post_office.py`).

A send precedes its record by nature; each chunk carries the idempotency key
`<message id>:<index>`, so a send repeated after a crash or a failed record is not sent
twice by the gateway."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .context import Context
from .output import CommandError

if TYPE_CHECKING:
    from ocsched.adapters.senders import Sender
    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.reactions.plan import Plan

Row = dict[str, Any]
SEND_PAUSE_S = 1.5
"""Between two sends of one drain, as the anchor waits (gateway rate limits)."""
DEFAULT_LIMIT = 50
WATCH_DEBOUNCE_S = 0.25
DEFAULT_POLL_MS = 60_000
MISSING_TARGET = "[inbox-consumer] missing delivery target; pass --to or set INBOX_DELIVERY_TO"


@dataclass(frozen=True)
class Consumer:
    """Where an agent's messages go when they name no target of their own."""

    to: str
    channel: str = "telegram"
    agent: str = "main"
    limit: int = DEFAULT_LIMIT
    brand: str = "Scheduler"


@dataclass
class Drained:
    delivered: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outlet:
    """What a drain needs from its host (the command or the daemon)."""

    load: Callable[[str], Any]
    save: Callable[[Plan], Awaitable[bool]]
    sender: Sender
    alias: Callable[[str], Row | None]
    now: Callable[[], datetime]
    meta: Callable[[str], EventMeta]
    pause_s: float = SEND_PAUSE_S


async def drain(rows: list[Row], consumer: Consumer, outlet: Outlet) -> Drained:
    """Send each pending message in `rows` (inbox order): cleaned up and headed with the
    brand line, split for telegram; an empty one is acknowledged unsent. A success is an
    `attempt` receipt and an acknowledgement; a failure an `error` receipt, the message
    left pending."""
    from ocsched.adapters.senders import SendError
    from ocsched.domain.reactions import messages as reactions

    done = Drained()
    for row in rows:
        message = outlet.load(row["id"])
        if message.status != "pending":
            continue  # (taken meanwhile: a prompt, an acknowledgement, another consumer)
        meta = outlet.meta(row["id"])
        channel, target = reactions.consumer_target(
            row, consumer.channel, consumer.to, outlet.alias
        )
        chunks = reactions.consumer_chunks(row, channel, consumer.brand, outlet.now())
        if not chunks:
            if await outlet.save(reactions.suppressed(message, meta, outlet.now())):
                done.delivered += 1
            continue
        if done.delivered:
            await asyncio.sleep(outlet.pause_s)
        try:
            for index, chunk in enumerate(chunks):
                await outlet.sender.send(channel, target, chunk, f"{message.id}:{index}")
        except SendError as error:
            done.errors.append(str(error) or "delivery failed")
            await outlet.save(reactions.send_failed(message, str(error), meta, outlet.now()))
            continue
        where = f"{row.get('channel') or consumer.channel}:{row.get('delivery_to') or consumer.to}"
        if await outlet.save(reactions.sent(message, where, meta, outlet.now())):
            done.delivered += 1
    return done


# The command


def consumer_from(ctx: Context, args: Any) -> Consumer:
    """Flags, else `INBOX_*` settings, else the defaults (spec §13.3)."""
    from ocsched.adapters.openclaw_files import dispatch_config
    from ocsched.domain.message_texts import inbox_brand

    env = ctx.settings.environment
    to = getattr(args, "to", None) or env.get("INBOX_DELIVERY_TO") or ""
    if not to:
        raise CommandError(MISSING_TARGET)
    limit = _positive_int(getattr(args, "limit", None) or env.get("INBOX_LIMIT"), DEFAULT_LIMIT)
    brand = getattr(args, "brand", None) or env.get("INBOX_BRAND")
    if not brand:
        brand = inbox_brand(None, None, dispatch_config(ctx.settings.dispatch_config_dir))
    return Consumer(
        to=to,
        channel=getattr(args, "channel", None) or env.get("INBOX_DELIVERY_CHANNEL") or "telegram",
        agent=getattr(args, "agent", None) or env.get("INBOX_AGENT") or "main",
        limit=limit,
        brand=brand,
    )


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        return default
    return number if number > 0 else default


def command_outlet(ctx: Context, sender: Sender, pause_s: float = SEND_PAUSE_S) -> Outlet:
    """A drain's host in a command: saves through the context, reads its read models."""
    from ocsched.projections import views

    async def save(plan: Plan) -> bool:
        from .context import ConcurrentChange

        try:
            ctx.save(*plan.records)
        except ConcurrentChange:
            return False
        return True

    def alias(name: str) -> Row | None:
        db = ctx.views()
        return None if db is None else views.alias(db, name)

    return Outlet(
        load=ctx.log.repository.get,
        save=save,
        sender=sender,
        alias=alias,
        now=lambda: datetime.now(UTC),
        meta=lambda message_id: ctx.meta(cause=f"inbox-consumer/{message_id}"),
        pause_s=pause_s,
    )


async def drain_once(ctx: Context, consumer: Consumer, outlet: Outlet) -> Drained:
    from ocsched.projections import message_views

    ctx._close_views()  # (opened again fresh: this drain reads what the last recorded)
    db = ctx.views()
    if db is None:
        return Drained()
    rows = message_views.inbox(db, consumer.agent, ("pending",), consumer.limit)
    return await drain(rows, consumer, outlet)


def run_consumer(ctx: Context, consumer: Consumer, *, watch: bool) -> int:
    """Drain once (exit 1 when a send failed), or watch the store and drain after each
    change and every `INBOX_POLL_INTERVAL_MS` until SIGINT/SIGTERM."""
    return asyncio.run(_consume(ctx, consumer, watch))


async def _consume(ctx: Context, consumer: Consumer, watch: bool) -> int:
    from ocsched.adapters.gateway import GatewayClient
    from ocsched.adapters.senders import ChatSender

    from .dispatch_gateway import gateway_settings

    async with GatewayClient(gateway_settings(ctx.settings)) as client:
        outlet = command_outlet(ctx, ChatSender(lambda: client))
        if not watch:
            done = await drain_once(ctx, consumer, outlet)
            _report(done)
            if done.errors:
                count = len(done.errors)
                raise CommandError(
                    f"[inbox-consumer] error: Delivery failed for {count} message(s): "
                    + "; ".join(done.errors)
                )
            return 0
        return await _watch(ctx, consumer, outlet)


def _report(done: Drained, prefix: str = "delivered") -> None:
    if done.delivered:
        print(f"[inbox-consumer] {prefix} {done.delivered} message(s)", flush=True)


async def _watch(ctx: Context, consumer: Consumer, outlet: Outlet) -> int:
    import os
    import signal

    from ocsched.adapters.wake import FileWriteWatcher

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def stopping(number: signal.Signals) -> None:
        received.append(number.name)
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping, number)
    database = os.path.abspath(ctx.settings.database)
    written = asyncio.Event()
    watcher = FileWriteWatcher(
        os.path.dirname(database), os.path.basename(database) + "-wal", written
    )
    watching = watcher.start(loop)
    poll_s = _positive_int(ctx.settings.environment.get("INBOX_POLL_INTERVAL_MS"), DEFAULT_POLL_MS)
    print(f"[inbox-consumer] watching {database}-wal", flush=True)
    print(f"[inbox-consumer] poll fallback enabled (interval={poll_s}ms)", flush=True)
    try:
        while not stop.is_set():
            try:
                _report(await drain_once(ctx, consumer, outlet))
            except Exception as error:  # noqa: BLE001 - a failed drain must not end the watch
                print(f"[inbox-consumer] drain error: {error}", flush=True)
            waits = [asyncio.ensure_future(stop.wait())]
            if watching:
                waits.append(asyncio.ensure_future(written.wait()))
            await asyncio.wait(waits, timeout=poll_s / 1000, return_when="FIRST_COMPLETED")
            for pending in waits:
                pending.cancel()
            if written.is_set():
                await asyncio.sleep(WATCH_DEBOUNCE_S)
                written.clear()
    finally:
        if watching:
            watcher.stop(loop)
    print(f"[inbox-consumer] {received[0] if received else 'stopping'}; exiting", flush=True)
    return 0


def cli_inbox_consumer(ctx: Context, args: argparse.Namespace) -> None:
    run_consumer(ctx, consumer_from(ctx, args), watch=args.watch)


def register(commands: argparse._SubParsersAction) -> None:
    from .argv import command

    parser = command(
        commands,
        "inbox-consumer",
        cli_inbox_consumer,
        help="send an agent's pending messages to a chat",
        usage="--to <target> [--channel <channel>] [--agent <agent>] [--limit <n>]"
        " [--brand <name>] [--watch]",
        description="Send an agent's pending messages (and broadcasts) to a chat through the"
        " gateway's message tool, each headed '<brand> | <subject> | <age>', then acknowledge"
        " them. Once (exit 1 when a send failed), or --watch until SIGINT/SIGTERM.\n"
        "Flags, else INBOX_DELIVERY_TO, INBOX_DELIVERY_CHANNEL (telegram), INBOX_AGENT (main),"
        " INBOX_LIMIT (50), INBOX_BRAND (else the dispatch config's brand or name, else"
        " Scheduler), INBOX_POLL_INTERVAL_MS (60000, --watch).",
        examples=[
            "ocsched inbox-consumer --to -100123456",
            "ocsched inbox-consumer --to ops --channel slack --agent bob --watch",
        ],
    )
    parser.add_argument("--to", metavar="<target>", help="the chat (INBOX_DELIVERY_TO)")
    parser.add_argument("--channel", metavar="<channel>", help="default: telegram")
    parser.add_argument("--agent", metavar="<agent>", help="whose inbox (default: main)")
    parser.add_argument("--limit", metavar="<n>", help="at most this many per drain (50)")
    parser.add_argument("--brand", metavar="<name>", help="the header's first word")
    parser.add_argument("--watch", action="store_true", help="keep sending as messages come")
