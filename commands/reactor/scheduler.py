"""The reactor: an orchestrator that owns the clock, the wake-up watch, the periodic
passes and the daemon's lifecycle, and decides nothing itself.

Timers come from the read models (jobs' `next_run_at`, pending dispatches'
`scheduled_for`, deliveries' `next_attempt_at`), kept in a heap within a horizon and
slept on until the earliest is due; events appended by other processes wake it. A due
timer goes to its handler (`handlers.py`), which decides through a reaction and saves
before it acts. Runs have ids derived from their cause, so two daemons on one store never
run the same slot or dispatch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocsched.adapters import openclaw_files
from ocsched.adapters.executors import AgentTurnExecutor, ShellExecutor
from ocsched.adapters.process_identity import process_identity
from ocsched.adapters.senders import ChatSender, HookSender, RoutingSender
from ocsched.adapters.storage_errors import Outage, storage_fault
from ocsched.adapters.supervisor import Supervisor
from ocsched.adapters.wake import FileWriteWatcher
from ocsched.domain.dispatch_rules.brand import brand
from ocsched.domain.schedule import from_ts, to_ts
from ocsched.projections import views

from ..context import Context
from .following import DispatchFollower
from .handlers import AggregateLoader, Handlers, spawn
from .post_office import PostOffice
from .projector import Projector
from .teams import TeamPass
from .watchdog import WatchdogExecutor
from .writer import EventWriter

if TYPE_CHECKING:
    from ocsched.adapters.cluster import Membership
    from ocsched.adapters.pg_notify import LogNotifyWatcher

log = logging.getLogger("ocsched")

TIMER_HORIZON_S = 300
FIRE_HANDLERS = {"job": "fire_job", "dispatch": "fire_dispatch", "delivery": "fire_delivery"}
FIRE_BATCH = 64
BACKLOG = 2 * FIRE_BATCH
"""Runs decided or admitted but not yet begun, beyond which due timers wait: enough to
keep every execution slot busy while the next decisions are written, few enough that a
burst of ten thousand is not ten thousand pending decisions in memory."""
REFILL = FIRE_BATCH // 2
"""A full backlog is topped up once this many of its runs have begun, not run by run: due
timers are then decided in batches (their jobs' rows read in one query) all along a
burst, not one or two at a time."""
FIRST_BATCH_HOLD_S = 0.05
"""How long the rest of a burst waits at most for its first batch's runs to start: their
saves take a few ms, and a decision that waits on the gateway's health must not hold back
the shell jobs due with it."""
READ_AHEAD_S = 1.0
"""Jobs due within this are read while the clock waits for them (their rows, and the
versions of those their run may delete), so firing a burst reads none of them."""
BACKLOG_WAIT_S = 0.25
"""A full backlog that does not move (long runs in every slot) still lets a batch through
this often."""
POLL_S = 0.04
"""Without inotify: how often to look for other processes' events."""
IDLE_POLL_S = 2.0
"""With inotify (or PostgreSQL's LISTEN): a safety net for a missed notification."""
COMMIT_RECHECKS_S = (0.005, 0.02, 0.05, 0)
CLUSTER_RECHECK_S = 0.5
"""A due timer another live daemon owns is looked at again this often, until its
decision reaches the read models or its owner's lease runs out."""
PROJECTOR_AFTER_S = 1.0
"""How long after its start the daemon starts its read models' process (catching up in
its own until then): the child's imports would compete with the daemon's start (the first
run ~20 ms later, A/B)."""
RETRY_FAILED_S = 1.0
"""A timer whose handler failed (not a save: the writer retries those), or a reload of the
timers that failed, is tried again after this."""
STOP_RETRYING_S = 5.0
"""Beyond the grace, how long a stopping daemon still retries saves that fail for a
transient storage error; the runs it could not record are recovered by the next start."""
DISPATCH_GRACE_MS = 300_000
HEALTHY_RECHECK_S, UNHEALTHY_RECHECK_S = 60, 2


class Reactor:
    def __init__(self, ctx: Context, *, grace_seconds: float | None = None) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.identity = process_identity()
        self.grace_seconds = (
            settings.reactor.shutdown_grace_s if grace_seconds is None else grace_seconds
        )
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.timers: list[tuple[float, str, str]] = []
        self.timers_dirty = True
        self.firing: set[tuple[str, str]] = set()
        self.deciding = 0
        self._read_until = 0.0
        """The due time up to which the timers' jobs have been read ahead."""
        self.first_batch = min(FIRE_BATCH, settings.reactor.max_concurrent_runs)
        """With none of its runs under way, the daemon fires a batch of as many runs as it
        runs at once: they are saved and started before more is decided, so a burst's
        first runs start within milliseconds of their due time and fill every slot."""
        self._hold_until = 0.0
        """Until when (monotonic) more decisions wait for the first batch's runs."""
        self.refire: set[tuple[str, str]] = set()
        self._reload_after_catch_up: asyncio.Task | None = None
        self._reload_wanted = False
        self._group_changes: list[tuple[int, bool]] = []
        self.deferred: dict[str, float] = {}
        self.supervisor: Supervisor | None = None
        self.projector: Projector | None = None
        self._gateway: Any = None
        self._gateway_healthy = True
        self._gateway_checked_at = float("-inf")
        self._health_probe: asyncio.Future | None = None
        self._db: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._reading = Outage(log, "reading the timers")
        self._watching = Outage(log, "watching for other processes")
        self.cluster: Membership | None = None
        self.writer = EventWriter(ctx)
        self.loader = AggregateLoader(
            ctx.log, None if settings.uses_postgres else settings.database
        )
        knobs = settings.reactor
        self.handlers = Handlers(
            writer=self.writer,
            load=self.loader,
            db=self.db,
            owner=self.identity,
            settings=knobs,
            executors={
                "shell": ShellExecutor(
                    shell_path=settings.shell,
                    artifacts_dir=settings.artifacts_dir,
                    limit=knobs.max_concurrent_runs,
                    stopping=self.stopping,
                    guard=lambda: self.supervisor,
                    environment=settings.environment,
                ),
                "agent": AgentTurnExecutor(
                    self.gateway,
                    openclaw_home=settings.openclaw_home,
                    limit=knobs.max_concurrent_turns,
                    activity_poll_s=knobs.activity_poll_s,
                ),
            },
            sender=RoutingSender(ChatSender(self.gateway), HookSender()),
            gateway_up=self.gateway_up,
            watch_group=self._watch_group,
            on_defer=self._defer,
            on_change=self.reload_timers,
            moves_timers=self._moves_timers,
            on_timers_moved=self._timers_moved,
            on_progress=self._progress,
            stopping=self.stopping,
        )
        self.handlers.executors["watchdog"] = WatchdogExecutor(self.handlers.executors["shell"])
        config = openclaw_files.dispatch_config(settings.dispatch_config_dir)
        self.follower = DispatchFollower(
            self.handlers,
            gateway=self.gateway,
            brand=brand(config),
            startup_grace_ms=int(config.get("startupGraceMs", DISPATCH_GRACE_MS)),
            overload_grace_s=knobs.overload_grace_s,
            shell_path=settings.shell,
            guard=lambda: self.supervisor,
        )
        self.post_office = PostOffice(self.handlers, settings)
        self.teams = TeamPass(self.handlers, gateway=self.gateway, stopping=self.stopping)

    # Lifecycle

    async def serve(self) -> None:
        self.ctx.catch_up()
        self.supervisor = Supervisor()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self.stop)
        log.info(
            "ocsched daemon %s started; database %s", self.identity, self.ctx.settings.database
        )
        self._join_cluster()
        await self.handlers.recover()
        settle_garbage_collector()
        loop.call_later(PROJECTOR_AFTER_S, self._start_projector)
        knobs = self.ctx.settings.reactor
        background = [
            asyncio.create_task(self.watch()),
            asyncio.create_task(self.every(knobs.sweep_every_s, self.handlers.sweep)),
            asyncio.create_task(self.every(knobs.prune_every_s, self.handlers.prune)),
            asyncio.create_task(self.every(knobs.dispatch_follow_s, self.follower.follow)),
            asyncio.create_task(self.post_office.serve(self.stopping)),
            asyncio.create_task(self.teams.run()),
        ]
        try:
            await self.loop()
        finally:
            for task in background:
                task.cancel()
            await self.shutdown()

    def _start_projector(self) -> None:
        """The read models' process; without it, catch-ups stay in this process."""
        if self.stopping.is_set():
            return
        try:
            self.projector = Projector(self.ctx.settings, self.ctx.catch_up_once)
        except OSError as error:
            log.warning("catching up in the daemon's own process: %s", error)
            return
        self.writer.catch_up_once = self.projector.catch_up_once

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new runs; waiting for running ones")
        self.stopping.set()
        self.wake.set()

    async def shutdown(self) -> None:
        self.writer.give_up_after(self.grace_seconds + STOP_RETRYING_S)
        running = self.handlers.running
        if running:
            await asyncio.wait(list(running.values()), timeout=self.grace_seconds)
        for task in list(running.values()):
            task.cancel()
        if running:
            await asyncio.wait(list(running.values()), timeout=5)
        await self.writer.drain()
        await self.handlers.recover(abandoned_by=self.identity)
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
        if self.supervisor is not None:
            self.supervisor.close()
        if self.projector is not None:
            self.projector.close()
        if self._gateway is not None:
            await self._gateway.close()
        self.loader.close()
        log.info("stopped")

    async def every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` now and then every `seconds`, until stopping."""
        while not self.stopping.is_set():
            try:
                await action()
            except Exception as error:  # noqa: BLE001 - a failed pass must not stop the daemon
                log.error("error in %s: %s: %s", action.__name__, type(error).__name__, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)

    # The clock

    async def loop(self) -> None:
        while not self.stopping.is_set():
            if self.timers_dirty and not self._timers_loaded():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), RETRY_FAILED_S)
                continue
            delay = self.fire_due()
            self.wake.clear()
            if delay is not None and delay <= 0:
                if self._room():
                    # Let this batch be decided (its saves queued) before the next.
                    await asyncio.sleep(0)
                    continue
                # More is due but enough is waiting to run: wait for runs to begin.
                delay = BACKLOG_WAIT_S
                if self._holding():  # look again when the hold ends, if no run began by then
                    delay = min(delay, self._hold_until - time.monotonic())
            elif delay is not None:
                delay = self._read_ahead(delay)
            await self._sleep(delay)

    async def _sleep(self, delay: float | None) -> None:
        """Until `wake` is set, or `delay` has passed: a plain timer that sets it (not
        `wait_for`, which makes a task and cancels it each time the clock waits)."""
        if self.wake.is_set():
            return
        timer = (
            None if delay is None else asyncio.get_running_loop().call_later(delay, self.wake.set)
        )
        try:
            await self.wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    def _read_ahead(self, delay: float) -> float:
        """Before the clock waits `delay` for the next timer: read the jobs due within
        `READ_AHEAD_S` if that is when the next one is due; returns how long to wait (until
        it is time to read ahead, or until the timer)."""
        now = time.time()
        if delay > READ_AHEAD_S:
            return delay - READ_AHEAD_S if now + delay > self._read_until else delay
        if now + delay > self._read_until:
            self._read_until = now + READ_AHEAD_S
            due = _jobs_due_by(self.timers, self._read_until)
            try:
                self.handlers.facts.prefetch(due)
            except Exception as error:  # noqa: BLE001 - each handler reads its row itself
                log.warning("reading due jobs: %s: %s", type(error).__name__, error)
            return max(now + delay - time.time(), 0)  # (the reading took some of it)
        return delay

    def backlog(self) -> int:
        """Timers being decided, and runs admitted that have not begun."""
        return self.deciding + self.handlers.waiting

    def _progress(self) -> None:
        """A run began, or a decision was made: due timers held back by a full backlog
        may go on."""
        if self.timers and self.timers[0][0] <= time.time() and self._room():
            self.wake.set()

    def _room(self) -> bool:
        """Whether the backlog has room for a batch of decisions. While the first batch of
        a burst is being saved, only for a second one (`_backlog_limit`)."""
        if self._holding():
            return self.backlog() < self._backlog_limit()
        return self.backlog() <= BACKLOG - REFILL

    def _backlog_limit(self) -> int:
        """How many runs may be decided and not begun. While a burst's first batch is being
        saved, two batches: the second is decided while the writer saves the first (the
        loop would wait idle), and is saved while the first's runs are spawned, so runs
        are waiting when the first ones end; more would delay the first batch's starts."""
        return 2 * self.first_batch if self._holding() else BACKLOG

    def _holding(self) -> bool:
        """Whether a burst's first batch is being decided and saved, none of its runs
        started yet, for at most `FIRST_BATCH_HOLD_S`."""
        return (
            bool(self.deciding)
            and not self.handlers.running
            and time.monotonic() < self._hold_until
        )

    def reload_timers(self) -> None:
        self.timers_dirty = True
        self.wake.set()
        self.post_office.wake()
        self.teams.wake()

    def _timers_loaded(self) -> bool:
        """Load the timers; False when the read models could not be read (logged)."""
        try:
            self.load_timers()
        except Exception as error:  # noqa: BLE001 - a failed read must not stop the daemon
            fault = storage_fault(error)
            if fault is None:
                log.error("reading the timers: %s: %s", type(error).__name__, error)
            else:
                self._reading.fault(fault)
            return False
        self._reading.ended()
        return True

    def load_timers(self) -> None:
        """Timers due before a horizon, read through the read models' indexes; a reload
        timer at the horizon fetches the next stretch. Ten thousand jobs due next year cost
        nothing until then."""
        db = self.db()
        now = time.time()
        horizon = now + TIMER_HORIZON_S
        until = to_ts(datetime.fromtimestamp(horizon, UTC))
        timers = [(_epoch(t["next_run_at"]), "job", t["id"]) for t in views.job_timers(db, until)]
        timers += [
            (_epoch(t["scheduled_for"]), "dispatch", t["id"])
            for t in views.dispatch_timers(db, until)
        ]
        timers += [
            (_epoch(t["next_attempt_at"]), "delivery", t["id"])
            for t in views.delivery_timers(db, until)
        ]
        timers.append((horizon, "reload", ""))
        self.deferred = {key: due for key, due in self.deferred.items() if due > now}
        timers = [
            (max(due, self.deferred.get(f"{kind}/{key}", 0)), kind, key)
            for due, kind, key in timers
        ]
        heapq.heapify(timers)
        self.timers = timers
        self.timers_dirty = False
        self._read_until = 0.0

    def fire_due(self) -> float | None:
        """Hand what is due to its handler, at most `FIRE_BATCH` at a time (`first_batch`
        when none of this daemon's runs is under way) so the first runs start while the rest
        are being decided; returns seconds until the next timer (0:
        more is due, None: nothing). A timer whose firing is still in progress is not fired
        again when a reload brings it back before its decision is in the read models."""
        now = time.time()
        due: list[tuple[str, str]] = []
        batch = FIRE_BATCH
        if not (self.handlers.running or self.backlog()):
            batch = self.first_batch
            self._hold_until = time.monotonic() + FIRST_BATCH_HOLD_S
        try:
            limit = self._backlog_limit()
            while self.timers and self.timers[0][0] <= now:
                if len(due) >= batch or self.backlog() >= limit:
                    return 0
                _, kind, key = heapq.heappop(self.timers)
                if kind == "reload":
                    self.timers_dirty = True
                    continue
                if self.cluster is not None and not self.cluster.owns(f"{kind}/{key}"):
                    # Another live host's: look again after a heartbeat, in case it went.
                    heapq.heappush(self.timers, (now + CLUSTER_RECHECK_S, kind, key))
                    continue
                if (kind, key) in self.firing:
                    self.refire.add((kind, key))
                    continue
                self.firing.add((kind, key))
                self.deciding += 1
                due.append((kind, key))
        finally:
            self._hand_over(due)
        return self.timers[0][0] - now if self.timers else None

    def _hand_over(self, due: list[tuple[str, str]]) -> None:
        """Fire `due`, the rows of its jobs read in one query beforehand."""
        jobs = [key for kind, key in due if kind == "job"]
        if len(jobs) > 1:
            try:
                self.handlers.facts.prefetch(jobs)
            except Exception as error:  # noqa: BLE001 - each handler reads its row itself
                log.warning("reading due jobs: %s: %s", type(error).__name__, error)
        for kind, key in due:
            spawn(self._fire(kind, key))

    async def _fire(self, kind: str, key: str) -> None:
        """Decide a due timer. It may fire again once its decision is in the read models:
        a reload before that would bring back the row it fired from."""
        handler = getattr(self.handlers, FIRE_HANDLERS[kind])
        try:
            await handler(key)
        except Exception as error:  # noqa: BLE001 - a failed decision must not lose its timer
            log.error(
                "%s %s: %s: %s; trying again in %.0f s",
                kind,
                key,
                type(error).__name__,
                error,
                RETRY_FAILED_S,
            )
            self.deferred[f"{kind}/{key}"] = time.time() + RETRY_FAILED_S
            self.refire.add((kind, key))
        finally:
            self.deciding -= 1
            self._progress()
            self.writer.when_settled(lambda: self._fired((kind, key)))

    def _fired(self, timer: tuple[str, str]) -> None:
        self.firing.discard(timer)
        if timer in self.refire:
            # A reload brought it back meanwhile, from a row that may since have moved
            # (or its handler failed): look at the row again.
            self.refire.discard(timer)
            due = max(time.time(), self.deferred.get("/".join(timer), 0))
            heapq.heappush(self.timers, (due, *timer))
            self.wake.set()

    def _moves_timers(self, records: list[Any]) -> bool:
        """Whether a plan about to be saved may add a timer or move one earlier (asked
        while its records still hold their new events)."""
        horizon = time.time() + TIMER_HORIZON_S
        return any(_may_add_timer(e, horizon) for r in records for e in r.pending_events)

    def _timers_moved(self) -> None:
        """A plan that moves timers was saved: reload them once the read models have it
        (one reload for all the plans saved meanwhile)."""
        self._reload_wanted = True
        if self._reload_after_catch_up is None or self._reload_after_catch_up.done():
            self._reload_after_catch_up = asyncio.create_task(self._reload_when_settled())

    async def _reload_when_settled(self) -> None:
        while self._reload_wanted:
            self._reload_wanted = False
            await self.writer.settled()
            self.reload_timers()

    def _defer(self, timer: str, seconds: float) -> None:
        self.deferred[timer] = time.time() + seconds
        self.timers_dirty = True

    async def watch(self) -> None:
        """Notice events appended by other processes, catch the read models up, reload the
        timers. SQLite has no push: inotify on the `-wal` file says when someone wrote, and
        `PRAGMA data_version` whether a commit landed (re-checked briefly after a write is
        heard, as the commit frame may still be on its way; looked at once on the idle
        clock); without inotify, and for PostgreSQL, it polls."""
        written = asyncio.Event()
        database = self.ctx.settings.database
        watcher = None
        listener = self._listen_to_log(written)
        if not self.ctx.settings.uses_postgres:
            watcher = FileWriteWatcher(
                os.path.dirname(os.path.abspath(database)),
                os.path.basename(database) + "-wal",
                written,
            )
            if not watcher.start(asyncio.get_running_loop()):
                watcher = None
        fallback = IDLE_POLL_S if watcher else POLL_S
        try:
            while not self.stopping.is_set():
                # While LISTEN is down (a lost connection), look as often as without it.
                heard = listener is not None and listener.listening.is_set()
                woken = await _heard_within(written, IDLE_POLL_S if heard else fallback)
                written.clear()
                try:
                    await self._notice_others(woken)
                except Exception as error:  # noqa: BLE001 - a failed look must not stop the watch
                    self._data_version = None  # look at the head again next time
                    fault = storage_fault(error)
                    if fault is None:
                        log.error("watching: %s: %s", type(error).__name__, error)
                    else:
                        self._watching.fault(fault)
                    await asyncio.sleep(RETRY_FAILED_S)
                else:
                    self._watching.ended()
        finally:
            if watcher is not None:
                watcher.stop(asyncio.get_running_loop())
            if listener is not None:
                listener.stop()

    def _join_cluster(self) -> None:
        """With PostgreSQL: a lease among the daemons on the log (`adapters/cluster.py`);
        due work is shared by it, and a member that goes has its runs recovered and its
        timers taken by the others."""
        if not self.ctx.settings.uses_postgres:
            return
        from ocsched.adapters.cluster import Membership
        from ocsched.adapters.event_store import postgres_env
        from ocsched.adapters.pg_notify import connection_arguments

        def changed() -> None:
            self.reload_timers()
            spawn(self.handlers.recover())

        self.cluster = Membership(
            connection_arguments(postgres_env(self.ctx.settings.database)),
            self.identity,
            read_models=self.ctx.settings.read_model_path,
            running=lambda: len(self.handlers.running),
            on_change=changed,
        )
        self.handlers.remote_gone = self.cluster.is_gone
        self.cluster.start(asyncio.get_running_loop())

    def _listen_to_log(self, written: asyncio.Event) -> LogNotifyWatcher | None:
        """With PostgreSQL: LISTEN for every commit that appends to the log (push, not a
        poll; `adapters/pg_notify.py`)."""
        if not self.ctx.settings.uses_postgres:
            return None
        from ocsched.adapters.event_store import postgres_env
        from ocsched.adapters.pg_notify import LogNotifyWatcher, connection_arguments, log_channel

        arguments = connection_arguments(postgres_env(self.ctx.settings.database))
        channel = log_channel(self.ctx.log.recorder)
        marker = (self.ctx.settings.home, self.identity)
        listener = LogNotifyWatcher(arguments, channel, written, marker)
        listener.start(asyncio.get_running_loop())
        return listener

    async def _notice_others(self, woken: bool) -> None:
        # PostgreSQL notifies after the commit: its head is there at the first look. A look
        # on the clock rather than a write heard has no commit on its way to wait for.
        rechecks = COMMIT_RECHECKS_S if woken and not self.ctx.settings.uses_postgres else (0,)
        for pause in rechecks:
            if (head := self._head_moved()) and await self.writer.foreign(head):
                # The timers are reloaded only from read models that hold `head`: a
                # remote write is never missed by the reload it caused.
                await self.writer.catch_up(through=head)
                self.handlers.facts.others_changed()
                self.handlers.stop_cancelled()
                spawn(self.follower.follow_quickly())
                self.reload_timers()
                return
            await asyncio.sleep(pause)

    def _head_moved(self) -> int | None:
        """The log's head, when it may hold events of another process the daemon has not
        reacted to (the writer tells); else None. With SQLite, `PRAGMA data_version` (a
        counter in shared memory) first tells whether any connection but this one
        committed since the last look: the daemon's own writes and catch-ups move it too."""
        if not self.ctx.settings.uses_postgres:
            version = self.db().execute("PRAGMA data_version").fetchone()["data_version"]
            if version == self._data_version:
                return None
            self._data_version = version
        head = self.ctx.log.recorder.max_notification_id() or 0
        return head if head > self.writer.seen else None

    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = views.open_views(self.ctx.settings.read_model_path, event_table=False)
            assert self._db is not None
        return self._db

    def _watch_group(self, group: int, running: bool) -> None:
        """Tell the supervisor that a run's process group started or ended, with the other
        changes of this turn of the event loop in one write to the watchdog. The run's shell
        registered its group itself before its command started (`adapters/supervisor.py`);
        an end is always sent, even of a group that started within the turn."""
        if self.supervisor is None:
            return
        self._group_changes.append((group, running))
        if len(self._group_changes) == 1:
            asyncio.get_running_loop().call_soon(self._send_group_changes)

    def _send_group_changes(self) -> None:
        changes, self._group_changes = self._group_changes, []
        if self.supervisor is not None:
            self.supervisor.update(changes)

    # The gateway

    def gateway(self) -> Any:
        if self._gateway is None:
            from ocsched.adapters.gateway import GatewayClient, GatewaySettings

            settings = GatewaySettings.from_environment(self.ctx.settings.gateway_environment)
            self._gateway = GatewayClient(settings)
        return self._gateway

    async def gateway_up(self) -> bool:
        """Whether the gateway answers `/health`, re-probed at most every minute while it
        does and every 2 s while it does not; a burst of due jobs shares one probe."""
        now = time.monotonic()
        recheck = HEALTHY_RECHECK_S if self._gateway_healthy else UNHEALTHY_RECHECK_S
        if now - self._gateway_checked_at > recheck:
            if self._health_probe is None or self._health_probe.done():
                self._health_probe = asyncio.ensure_future(self.gateway().health())
            healthy = await self._health_probe
            if self._gateway_checked_at < now:
                self._gateway_checked_at = time.monotonic()
                if not healthy and self._gateway_healthy:
                    log.warning(
                        "gateway unreachable -- agent jobs are deferred; shell jobs continue"
                    )
                self._gateway_healthy = healthy
        return self._gateway_healthy


TIMER_NEUTRAL_EVENTS = frozenset(
    {"Deleted", "Disabled", "Claimed", "Cancelled", "Held", "ChunkSent", "Queued", "Started"}
    | {"Gated"}  # a gate's decision on a run; its refusal is the `Finished` that follows
)
"""Events that end, hold or leave a timer where it is, never add one or move it earlier."""


def _jobs_due_by(timers: list[tuple[float, str, str]], until: float) -> list[str]:
    """The jobs of the timers due by `until`, found in the heap without looking at the
    timers due later (a child is never due before its parent)."""
    jobs: list[str] = []
    pending = [0] if timers else []
    while pending:
        index = pending.pop()
        at, kind, key = timers[index]
        if at > until:
            continue
        if kind == "job":
            jobs.append(key)
        pending.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(timers))
    return jobs


def _may_add_timer(event: Any, horizon: float) -> bool:
    """Whether a saved event may add a timer before `horizon` or move one earlier: a run
    event whose `job_changes` set a `next_run_at` by then; any event not known to be
    neutral (a new dispatch, delivery or retry, a job created, changed or enabled)."""
    name = type(event).__name__
    if name in TIMER_NEUTRAL_EVENTS:
        return False
    changes = getattr(event, "job_changes", None)
    if isinstance(changes, dict):
        upcoming = changes.get("next_run_at")
        return isinstance(upcoming, str) and bool(upcoming) and _epoch(upcoming) <= horizon
    return True


def _epoch(ts: str) -> float:
    return from_ts(ts).timestamp()


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between collections of the youngest generation (Python's default: 700)."""


def settle_garbage_collector() -> None:
    """What the daemon holds once started (modules, classes, the timers' facts) is moved
    out of the collector's way (`gc.freeze`), and the young generation is collected every
    20,000 allocations instead of 700: a burst of runs allocates thousands of short-lived
    objects per run, few of them in cycles, and the collections cost ~5 % of its CPU."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def _heard_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds` (without a task made and cancelled for the
    wait, as `wait_for` would)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
