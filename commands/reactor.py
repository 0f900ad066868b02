"""The reactor: turns due timers into runs, runs shell jobs, records every step.

One asyncio loop. Timers come from the read models (jobs' `next_run_at`, pending
dispatches' `scheduled_for`), kept in a heap and slept on until the earliest is due;
events appended by other processes wake it within `WATCH_INTERVAL`. Every decision is an
event whose `meta.cause` names what caused it, and runs have ids derived from their cause,
so two daemons on one store never run the same slot or dispatch twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ocsched.adapters import openclaw_files, shell
from ocsched.adapters.gateway import GatewayClient, GatewayError
from ocsched.adapters.hooks import HOOK_CHANNELS, HookError, post_hook
from ocsched.adapters.supervisor import Supervisor
from ocsched.adapters.wake import FileWriteWatcher
from ocsched.domain.agent_turn import build_prompt, classify_reply, session_key, trigger_context
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.approval import Approval, approval_id, approval_request_text
from ocsched.domain.chain import MAX_CHAIN_DEPTH
from ocsched.domain.delivery import (
    Delivery,
    delivery_id,
    delivery_text,
    resolve_target,
    retry_backoff_seconds,
    split_message,
)
from ocsched.domain.dispatch import Dispatch, replay_dispatch_id, retry_dispatch_id
from ocsched.domain.job import Job
from ocsched.domain.policies import (
    children_to_fire,
    ends_job,
    job_changes_after_run,
    retry_allowed,
    retry_delay,
)
from ocsched.domain.retrieval import HYBRID_CANDIDATES, context_block, match_expression
from ocsched.domain.run import Run, clock_run_id, dispatch_run_id
from ocsched.domain.schedule import from_ts, next_run_at, to_ts
from ocsched.domain.shell_output import (
    OutputLimits,
    ShellOutcome,
    ShellResult,
    context_summary,
    process_shell_output,
    stream_texts,
)
from ocsched.projections import views

from .context import Context
from .follow_dispatches import DispatchFollowing
from .reactor_settings import (
    ACTOR,
    AGENT_GRACE_S,
    COMMIT_RECHECKS_S,
    DISPATCH_GRACE_MS,
    FIRE_BATCH,
    FOREIGN_TIMEOUT_GRACE_S,
    GATEWAY_DEFER_S,
    IDLE_POLL_S,
    POLL_S,
    TIMER_HORIZON_S,
    activity_poll_seconds,
    dispatch_follow_seconds,
    interval,
    log,
    max_concurrent_runs,
    max_concurrent_turns,
    owner_is_dead,
    process_identity,
    retry_base_seconds,
)
from .writer import Conflict, EventWriter


class Reactor(DispatchFollowing):
    def __init__(self, ctx: Context, *, grace_seconds: float = 10.0) -> None:
        self.ctx = ctx
        self.writer = EventWriter(ctx)
        self.identity = process_identity()
        self.grace_seconds = grace_seconds
        self.slots = asyncio.Semaphore(max_concurrent_runs())
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.timers: list[tuple[float, str, str]] = []
        self.timers_dirty = True
        self.running: dict[str, asyncio.Task] = {}
        self.run_groups: dict[str, int] = {}
        self.active: dict[str, dict] = {}
        """Runs this daemon admitted and has not finished: run id -> job row."""
        self.concluding: set[str] = set()
        self.artifacts = ctx.settings.artifacts_dir
        from .dispatch import brand, load_config

        config = load_config()
        self.brand = brand(config)
        self.dispatch_grace_ms = int(config.get("startupGraceMs", DISPATCH_GRACE_MS))
        self.supervisor: Supervisor | None = None
        self.turn_slots = asyncio.Semaphore(max_concurrent_turns())
        self.deferred: dict[str, float] = {}
        self.sending: set[str] = set()
        self.verifying: set[str] = set()
        self.firing: set[tuple[str, str]] = set()
        self._gateway: GatewayClient | None = None
        self._gateway_healthy = True
        self._gateway_checked_at = float("-inf")
        self._health_probe: asyncio.Future | None = None
        self._db: sqlite3.Connection | None = None
        self._data_version: int | None = None

    # Lifecycle

    async def serve(self) -> None:
        self.ctx.catch_up()
        self.supervisor = Supervisor()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self.stop)
        log(f"ocsched daemon {self.identity} started; database {self.ctx.settings.database}")
        await self.recover()
        sweep_every = interval("SCHEDULER_HEARTBEAT_CHECK_MS", 30, 5)
        prune_every = interval("SCHEDULER_PRUNE_MS", 3600, 60)
        background = [
            asyncio.create_task(self.watch()),
            asyncio.create_task(self.every(sweep_every, self.sweep)),
            asyncio.create_task(self.every(prune_every, self.prune)),
            asyncio.create_task(self.every(dispatch_follow_seconds(), self.follow_dispatches)),
        ]
        try:
            await self.loop()
        finally:
            for task in background:
                task.cancel()
            await self.shutdown()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log("stopping: no new runs; waiting for running ones")
        self.stopping.set()
        self.wake.set()

    async def shutdown(self) -> None:
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=self.grace_seconds)
        for task in list(self.running.values()):
            task.cancel()
        if self.running:
            await asyncio.wait(list(self.running.values()), timeout=5)
        await self.writer.drain()
        await self.recover(abandoned_by=self.identity)
        if self.supervisor is not None:
            self.supervisor.close()
        if self._gateway is not None:
            await self._gateway.close()
        log("stopped")

    # The clock

    async def loop(self) -> None:
        while not self.stopping.is_set():
            if self.timers_dirty:
                self.load_timers()
            delay = self.fire_due()
            self.wake.clear()
            if delay is not None and delay <= 0:
                # More is due: let this batch's decisions be written (and its runs start)
                # before deciding the next, rather than competing with the writer.
                await asyncio.sleep(0)
                await self.writer.drain()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

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

    def fire_due(self) -> float | None:
        """Start what is due, at most `FIRE_BATCH` at a time so the first runs start while
        the rest are being decided; returns seconds until the next timer (0: more is due,
        None: nothing). A timer whose firing is still in progress is not fired again when
        a reload brings it back before its decision is in the read models."""
        now = time.time()
        fired = 0
        while self.timers and self.timers[0][0] <= now:
            if fired >= FIRE_BATCH:
                return 0
            _, kind, key = heapq.heappop(self.timers)
            if kind == "reload":
                self.timers_dirty = True
                continue
            if (kind, key) in self.firing:
                continue
            handlers = {
                "job": self.fire_job,
                "dispatch": self.fire_dispatch,
                "delivery": self.fire_delivery,
            }
            self.firing.add((kind, key))
            task = asyncio.create_task(handlers[kind](key))
            task.add_done_callback(lambda _, timer=(kind, key): self.firing.discard(timer))
            task.add_done_callback(_report_failure)
            fired += 1
        return self.timers[0][0] - now if self.timers else None

    async def watch(self) -> None:
        """Notice events appended by other processes, catch the read models up, reload the
        timers. SQLite has no push: inotify on the `-wal` file says when someone wrote, and
        `PRAGMA data_version` whether a commit landed (re-checked briefly, as the commit
        frame may still be on its way); without inotify, and for PostgreSQL, it polls."""
        written = asyncio.Event()
        database = self.ctx.settings.database
        watcher = None
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(written.wait(), fallback)
                written.clear()
                for pause in COMMIT_RECHECKS_S:
                    if self._log_moved():
                        await self.writer.catch_up()
                        self.stop_cancelled_runs()
                        self._spawn(self.follow_dispatches_quickly())
                        self.timers_dirty = True
                        self.wake.set()
                        break
                    await asyncio.sleep(pause)
        finally:
            if watcher is not None:
                watcher.stop(asyncio.get_running_loop())

    def _log_moved(self) -> bool:
        if self.ctx.settings.uses_postgres:
            head = self.ctx.log.recorder.max_notification_id()
        else:
            head = self.db().execute("PRAGMA data_version").fetchone()["data_version"]
        moved, self._data_version = head != self._data_version, head
        return moved

    def stop_cancelled_runs(self) -> None:
        """Kill the processes of our runs that someone else finished (`jobs cancel`). Runs
        whose outcome this daemon is recording are its own doing and are left alone."""
        watched = [run_id for run_id in self.running if run_id not in self.concluding]
        for row in views.finished_among(self.db(), watched):
            run_id = row["id"]
            task = self.running.get(run_id)
            if task is not None and run_id not in self.concluding:
                log(f"run {run_id}: {row['status']} elsewhere; stopping its processes")
                group = self.run_groups.get(run_id)
                if group is not None:
                    shell.kill_group(group, signal.SIGKILL)
                task.cancel()

    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = views.open_views(self.ctx.settings.read_model_path, event_table=False)
            assert self._db is not None
        return self._db

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        task.add_done_callback(_report_failure)

    # Decisions

    def meta(self, cause: str | None) -> EventMeta:
        return EventMeta(actor=ACTOR, origin=self.identity, correlation_id=cause or "", cause=cause)

    async def fire_job(self, job_id: str) -> None:
        job = views.job(self.db(), job_id)
        if job is None or not job["enabled"] or job["parent_id"] or not job["next_run_at"]:
            return
        if not await self._gateway_ready_for(job, f"job/{job_id}"):
            return
        slot = job["next_run_at"]
        if _epoch(slot) > time.time():
            return
        now = datetime.now(UTC)
        upcoming = None if job["schedule_kind"] == "at" else next_run_at(job, now)
        cause = f"clock/{job_id}/{slot}"
        run = self._new_run(
            clock_run_id(job_id, slot),
            job,
            trigger="clock",
            slot=slot,
            cause=cause,
            job_changes={"next_run_at": upcoming},
            now=now,
        )
        await self._admit(run, job, [], cause, now)

    async def fire_dispatch(self, dispatch_id: str) -> None:
        row = views.dispatch(self.db(), dispatch_id)
        if row is None or row["status"] != "pending":
            return
        if _epoch(row["scheduled_for"]) > time.time():
            return
        now = datetime.now(UTC)
        cause = f"dispatch/{dispatch_id}"
        dispatch: Dispatch = self.ctx.log.repository.get(dispatch_id)
        job = views.job(self.db(), row["job_id"])
        reason = None
        if job is None:
            reason = "job no longer exists"
        elif not job["enabled"] and row["dispatch_kind"] != "manual":
            reason = "job is disabled"
        elif not await self._gateway_ready_for(job, f"dispatch/{dispatch_id}"):
            return
        elif row["dispatch_kind"] == "chain" and job["approval_required"] and not dispatch.approved:
            pending = len(views.pending_approvals(self.db(), job["id"]))
            if pending < (job["max_pending_approvals"] or 10):
                await self._request_approval(dispatch, job, cause, now)
                return
            reason = f"too many pending approvals ({pending})"
        if reason:
            dispatch.cancel(reason, self.meta(cause), now)
            await self._save_quietly(dispatch)
            return
        source = row["source_run_id"]
        kind = row["dispatch_kind"]
        run = self._new_run(
            dispatch_run_id(dispatch_id),
            job,
            trigger=kind,
            slot=None,
            cause=cause,
            job_changes={},
            now=now,
            dispatch_id=dispatch_id,
            retry_count=row["retry_count"] or 0,
            retry_of=source if kind in ("retry", "replay") else None,
            triggered_by_run=source,
            replay_of=source if kind == "replay" else None,
        )
        dispatch.claim(run.id, self.meta(cause), now)
        await self._admit(run, job, [dispatch], cause, now)

    def _new_run(
        self, run_id: str, job: dict, *, trigger, slot, cause, job_changes, now, **cause_fields
    ):
        return Run(
            id=run_id,
            job_id=job["id"],
            trigger=trigger,
            slot=slot,
            dispatch_id=cause_fields.get("dispatch_id"),
            retry_count=cause_fields.get("retry_count", 0),
            retry_of=cause_fields.get("retry_of"),
            triggered_by_run=cause_fields.get("triggered_by_run"),
            replay_of=cause_fields.get("replay_of"),
            run_timeout_ms=job["run_timeout_ms"],
            owner=self.identity,
            job_changes=job_changes,
            meta=self.meta(cause),
            timestamp=now,
        )

    async def _admit(self, run: Run, job: dict, others: list, cause: str, now: datetime) -> None:
        """Apply the overlap policy and resource pool, then record the decision and run."""
        busy = self._busy_reason(job)
        policy = job["overlap_policy"]
        if busy and not busy.startswith("resource pool") and policy == "allow":
            busy = None
        if busy and not busy.startswith("resource pool") and policy == "queue":
            queued = len(views.queued_runs(self.db(), job["id"]))
            if queued < (job["max_queued_dispatches"] or 25):
                changes = {"queued_count": queued + 1}
                run.queue_behind(busy.rsplit(" ", 1)[-1], changes, self.meta(cause), now)
                await self._save_quietly(run, *others)
                return
            busy = f"overlap queue full ({queued} queued)"
        if busy:
            run.finish("skipped", {"summary": f"Skipped: {busy}"}, {}, self.meta(cause), now)
            await self._save_quietly(run, *others)
            return
        self.active[run.id] = job
        if not await self._save_quietly(run, *others):
            self.active.pop(run.id, None)
            return
        self._execute(run, job)

    def _busy_reason(self, job: dict) -> str | None:
        """Why the job may not start now: its own active run, or its pool's. Our own runs
        are known at once; other daemons' through the runs read model."""
        pool = job["resource_pool"]
        for run_id, active_job in self.active.items():
            if active_job["id"] == job["id"]:
                return f"previous run still running: {run_id}"
        if pool:
            for run_id, active_job in self.active.items():
                if active_job["resource_pool"] == pool:
                    return f"resource pool {pool} busy with run {run_id}"
        for row in views.active_runs_of(self.db(), job["id"], pool):
            if row["id"] in self.active:
                continue
            if row["job_id"] == job["id"]:
                return f"previous run still running: {row['id']}"
            return f"resource pool {pool} busy with run {row['id']}"
        return None

    async def _save_quietly(self, *aggregates: Any) -> bool:
        try:
            await self.writer.save(*aggregates)
        except Conflict:
            return False
        return True

    # Execution

    def _execute(self, run: Run, job: dict, start_changes: dict | None = None) -> None:
        self.active[run.id] = job
        strategy = self._run_shell if job["session_target"] == "shell" else self._run_agent
        task = asyncio.create_task(strategy(run, job, start_changes or {}))
        self.running[run.id] = task
        task.add_done_callback(lambda _: self._finished(run, job))
        task.add_done_callback(_report_failure)

    def _finished(self, run: Run, job: dict) -> None:
        self.concluding.discard(run.id)
        self.running.pop(run.id, None)
        self.active.pop(run.id, None)
        group = self.run_groups.pop(run.id, None)
        if group is not None and self.supervisor is not None:
            self.supervisor.forget(group)
        if not self.stopping.is_set():
            self._spawn(self._start_queued(job["id"]))
        self.timers_dirty = True
        self.wake.set()

    async def _run_shell(self, run: Run, job: dict, start_changes: dict) -> None:
        cause = run.id
        started: list[asyncio.Task] = []

        def on_start(pid: int) -> None:
            self.run_groups[run.id] = pid
            if self.supervisor is not None:
                self.supervisor.watch(pid)
            run.start(pid, pid, self.meta(cause), datetime.now(UTC), start_changes)
            started.append(asyncio.create_task(self.writer.save(run)))

        async with self.slots:
            if self.stopping.is_set():
                return
            try:
                result = await shell.run_shell(
                    job["payload_message"], timeout_ms=job["run_timeout_ms"], on_start=on_start
                )
            except OSError as error:
                await asyncio.gather(*started, return_exceptions=True)
                await self._conclude(run, job, "error", {"error_message": str(error)}, "")
                return
        await asyncio.gather(*started, return_exceptions=True)
        paths = self._artifact_paths(run.id)
        outcome = process_shell_output(result, _limits(job), paths)
        await asyncio.to_thread(_offload, result, outcome, paths)
        fields = self._shell_fields(run, outcome)
        await self._conclude(run, job, outcome.status, fields, outcome.preview)

    async def _run_agent(self, run: Run, job: dict, start_changes: dict) -> None:
        """One agent turn through the gateway's `agent` method (spec §11, §12). The run id
        is the turn's idempotency key: a retried or resumed call never starts a second
        turn, it gets the first one's result."""
        key = run.session_key or session_key(job)
        meta = self.meta(run.id)
        accepted: list[asyncio.Task] = []

        def on_accepted(_: dict) -> None:
            if run.status in ("pending", "queued"):
                run.start(None, None, meta, datetime.now(UTC), start_changes, session_key=key)
                accepted.append(asyncio.create_task(self.writer.save(run)))

        timeout_s = max(1, -(-(job["run_timeout_ms"] or 300000) // 1000))
        prompt = self._prompt(run, job)
        if job["auth_profile"]:
            await asyncio.to_thread(_apply_auth_profile, job, key)
        error: str | None = None
        final: dict = {}
        async with self.turn_slots:
            turn = asyncio.ensure_future(
                asyncio.wait_for(
                    self.gateway().agent(
                        prompt,
                        idempotency_key=run.id,
                        session_key=key,
                        agent_id=job["agent_id"],
                        model=job["payload_model"],
                        thinking=job["payload_thinking"],
                        timeout_s=timeout_s,
                        on_accepted=on_accepted,
                    ),
                    timeout_s + AGENT_GRACE_S,
                )
            )
            idle_limit_s = 2 * (job["payload_timeout_seconds"] or 120)
            watchdog = asyncio.ensure_future(self._watch_activity(key, idle_limit_s))
            done, _ = await asyncio.wait({turn, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            watchdog.cancel()
            if turn in done:
                try:
                    final = turn.result()
                except TimeoutError:
                    error = f"Exceeded absolute timeout of {timeout_s}s"
                except GatewayError as failure:
                    error = str(failure)
            else:
                turn.cancel()
                error = f"Session idle for {idle_limit_s}s -- aborted (activity-based timeout)"
        await asyncio.gather(*accepted, return_exceptions=True)
        on_accepted({})  # an idempotent replay answers at once, without an accepted frame
        await asyncio.gather(*accepted, return_exceptions=True)
        fields = {"session_key": key, **_usage(final)}
        if error is None and final.get("status") not in (None, "ok"):
            error = final.get("summary") or f"Agent turn ended with status {final.get('status')}"
        if error is not None:
            fields["error_message"] = error
            await self._conclude(run, job, "error", fields, error, exception=True)
            return
        reply = _reply_text(final)
        status, message, deliverable = classify_reply(reply)
        fields.update(summary=reply[:5000], error_message=message)
        await self._conclude(run, job, status, fields, reply, deliverable=deliverable)

    async def _watch_activity(self, session_key: str, idle_limit_s: float) -> None:
        """Spec §11.5: returns when the session shows no activity (its `updatedAt` in
        `sessions.list`) for `idle_limit_s`; listing failures are ignored."""
        last_activity, last_seen = time.time(), None
        while True:
            await asyncio.sleep(activity_poll_seconds())
            try:
                answer = await self.gateway().sessions_list(activeMinutes=60)
            except GatewayError:
                continue
            for session in answer.get("sessions") or []:
                if session.get("key") == session_key and session.get("updatedAt") != last_seen:
                    last_seen, last_activity = session.get("updatedAt"), time.time()
            if time.time() - last_activity >= idle_limit_s:
                return

    def _prompt(self, run: Run, job: dict) -> str:
        parent_run = views.run(self.db(), run.triggered_by_run) if run.triggered_by_run else None
        parent_job = views.job(self.db(), parent_run["job_id"]) if parent_run else None
        return build_prompt(
            job,
            trigger_context=trigger_context(parent_job, parent_run),
            retrieval_context=self._retrieval(run, job),
            idempotency_key=run.id,
        )

    def _retrieval(self, run: Run, job: dict) -> str:
        mode = job["context_retrieval"]
        if mode not in ("recent", "hybrid"):
            return ""
        try:
            rows = views.prior_runs(
                self.db(),
                job["id"],
                run.id,
                mode,
                match_expression(job["payload_message"]),
                job["context_retrieval_limit"] or 5,
                HYBRID_CANDIDATES,
            )
        except sqlite3.Error as error:  # retrieval is an aid: a failure must not fail the run
            log(f"run {run.id}: context retrieval failed: {error}")
            return ""
        return context_block(rows)

    def gateway(self) -> GatewayClient:
        if self._gateway is None:
            self._gateway = GatewayClient()
        return self._gateway

    async def _gateway_ready_for(self, job: dict, key: str) -> bool:
        """Shell jobs never wait for the gateway. An agent job while the gateway is down
        is deferred in memory for a minute (spec §6.3), recording nothing."""
        if job["session_target"] == "shell":
            return True
        now = time.monotonic()
        if now - self._gateway_checked_at > (60 if self._gateway_healthy else 2):
            if self._health_probe is None or self._health_probe.done():
                self._health_probe = asyncio.ensure_future(self.gateway().health())
            probe = self._health_probe  # a burst of due jobs shares one probe
            healthy = await probe
            if self._gateway_checked_at < now:
                self._gateway_checked_at = time.monotonic()
                if not healthy and self._gateway_healthy:
                    log("gateway unreachable -- agent jobs are deferred; shell jobs continue")
                self._gateway_healthy = healthy
        if self._gateway_healthy:
            return True
        self.deferred[key] = time.time() + GATEWAY_DEFER_S
        self.timers_dirty = True
        return False

    async def _request_approval(self, dispatch: Dispatch, job: dict, cause: str, now) -> None:
        """Hold a chain dispatch for a person's decision and tell the job's target."""
        meta = self.meta(cause)
        approval = Approval(
            id=approval_id(dispatch.id),
            job_id=job["id"],
            dispatch_id=dispatch.id,
            source_run_id=dispatch.source_run_id,
            meta=meta,
            timestamp=now,
        )
        dispatch.hold(approval.id, meta, now)
        notice = self._delivery(approval.id, job, "approval", approval_request_text(job), meta, now)
        if await self._save_quietly(approval, dispatch, *notice):
            log(f"job {job['id']}: waiting for approval {approval.id}")

    async def expire_approvals(self) -> None:
        """Approvals older than the job's `approval_timeout_s` take `approval_auto`."""
        now = datetime.now(UTC)
        for row in views.pending_approvals(self.db()):
            waited = now - from_ts(row["requested_at"])
            if waited <= timedelta(seconds=row["approval_timeout_s"] or 3600):
                continue
            meta = self.meta(f"approval-timeout/{row['id']}")
            approval: Approval = self.ctx.log.repository.get(row["id"])
            dispatch: Dispatch = self.ctx.log.repository.get(row["dispatch_id"])
            if row["approval_auto"] == "approve":
                approval.approve("timeout", meta, now, automatic=True)
                dispatch.release(approval.id, meta, now)
            else:
                approval.reject("timeout", "approval timed out", meta, now, automatic=True)
                dispatch.cancel("approval timed out", meta, now)
            await self._save_quietly(approval, dispatch)

    # Deliveries

    def _delivery(self, run_id, job, purpose, text, meta, now) -> list[Delivery]:
        target = resolve_target(job, lambda name: views.alias(self.db(), name))
        if target is None:
            return []
        channel, to = target
        return [
            Delivery(
                id=delivery_id(run_id, purpose),
                run_id=run_id,
                job_id=job["id"],
                purpose=purpose,
                channel=channel,
                target=to,
                chunks=split_message(text, channel),
                meta=meta,
                timestamp=now,
            )
        ]

    async def fire_delivery(self, delivery_key: str) -> None:
        """Send the delivery's unsent chunks in order, each with its own idempotency key;
        record every attempt; a failure waits with backoff (spec §13.4)."""
        if delivery_key in self.sending:
            return
        self.sending.add(delivery_key)
        try:
            delivery: Delivery = self.ctx.log.repository.get(delivery_key)
            while (index := delivery.next_chunk()) is not None and delivery.status == "pending":
                meta = self.meta(f"delivery/{delivery_key}/{index}")
                try:
                    await self._send_chunk(delivery, index)
                except (GatewayError, HookError) as error:
                    now = datetime.now(UTC)
                    attempt = delivery.attempts.get(index, 0) + 1
                    retry_at = to_ts(now + timedelta(seconds=retry_backoff_seconds(attempt)))
                    delivery.record_failure(index, str(error), retry_at, meta, now)
                    await self._save_quietly(delivery)
                    return
                delivery.record_sent(index, meta, datetime.now(UTC))
                if not await self._save_quietly(delivery):
                    return
        finally:
            self.sending.discard(delivery_key)

    async def _send_chunk(self, delivery: Delivery, index: int) -> None:
        """A chat message through the gateway's `message` tool, or a hook's JSON POST."""
        text = delivery.chunks[index]
        if delivery.channel in HOOK_CHANNELS:
            await post_hook(delivery.target, text)
            return
        args = {"action": "send", "message": text}
        args.update(channel=delivery.channel, target=delivery.target)
        await self.gateway().invoke_tool("message", args, idempotency_key=delivery.chunk_key(index))

    def _artifact_paths(self, run_id: str) -> tuple[str, str]:
        base = self.artifacts / "runs" / run_id
        return str(base / "stdout.txt"), str(base / "stderr.txt")

    def _shell_fields(self, run: Run, outcome: ShellOutcome) -> dict[str, Any]:
        stdout_path, stderr_path = self._artifact_paths(run.id)
        stdout_path = stdout_path if outcome.offload_stdout else None
        stderr_path = stderr_path if outcome.offload_stderr else None
        return {
            "summary": outcome.summary,
            "error_message": outcome.error_message,
            "shell_exit_code": outcome.shell_exit_code,
            "shell_signal": outcome.shell_signal,
            "shell_timed_out": outcome.shell_timed_out,
            "shell_stdout": outcome.shell_stdout,
            "shell_stderr": outcome.shell_stderr,
            "shell_stdout_path": stdout_path,
            "shell_stderr_path": stderr_path,
            "shell_stdout_bytes": outcome.shell_stdout_bytes,
            "shell_stderr_bytes": outcome.shell_stderr_bytes,
            "context_summary": context_summary(outcome, stdout_path, stderr_path),
        }

    async def _conclude(
        self,
        run: Run,
        job: dict,
        status: str,
        fields: dict,
        content: str,
        *,
        exception: bool = False,
        deliverable: bool = True,
    ) -> None:
        """Record the outcome and what follows from it: a retry, or the job's new state,
        its children's dispatches and, for a used-up job, its end; and the delivery the
        job's delivery mode asks for. All in one transaction."""
        self.concluding.add(run.id)
        now = datetime.now(UTC)
        cause = run.id
        meta = self.meta(cause)
        current = views.job(self.db(), job["id"]) or job
        started = run.started_at or now
        fields = {**fields, "duration_ms": int((now - started).total_seconds() * 1000)}
        follow_ups: list[Any] = []
        if retry_allowed(current, status, run.retry_count):
            attempt = run.retry_count + 1
            follow_ups.append(
                Dispatch(
                    id=retry_dispatch_id(run.id),
                    job_id=job["id"],
                    kind="retry",
                    scheduled_for=to_ts(now + retry_delay(attempt, retry_base_seconds())),
                    source_run_id=run.id,
                    retry_count=attempt,
                    meta=meta,
                    timestamp=now,
                )
            )
            job_changes = {"last_run_at": to_ts(now), "last_status": status}
            if current["schedule_kind"] != "at" and not current["parent_id"]:
                job_changes["next_run_at"] = next_run_at(current, now)
            retry = (attempt, current["max_retries"])
        else:
            retry = None
            job_changes = job_changes_after_run(current, status, now)
            follow_ups += self._chain_dispatches(run, current, status, content, meta, now)
            follow_ups += self._end_job(current, status, meta, now)
        text = delivery_text(
            current,
            agent=current["session_target"] != "shell",
            status=status,
            text=content,
            error=fields.get("error_message"),
            exception=exception,
            retry=retry,
            deliverable=deliverable,
        )
        if text:
            follow_ups += self._delivery(run.id, current, "result", text, meta, now)
        run.finish(status, fields, job_changes, meta, now)
        try:
            await self.writer.save(run, *follow_ups)
        except Conflict:
            log(f"run {run.id}: outcome already recorded elsewhere")

    def _chain_dispatches(self, run, job, status, content, meta, now) -> list[Dispatch]:
        from ocsched.domain.dispatch import chain_dispatch_id

        dispatches = []
        for child in children_to_fire(job, views.children(self.db(), job["id"]), status, content):
            if views.dispatch_backlog(self.db(), child["id"]) >= child["max_queued_dispatches"]:
                continue
            if self._ancestors(child) > MAX_CHAIN_DEPTH:
                log(f"not triggering {child['id']}: chain deeper than {MAX_CHAIN_DEPTH}")
                continue
            delay = child["trigger_delay_s"] or 0
            due = now + timedelta(seconds=delay) if delay else now - timedelta(seconds=1)
            dispatches.append(
                Dispatch(
                    id=chain_dispatch_id(run.id, child["id"]),
                    job_id=child["id"],
                    kind="chain",
                    scheduled_for=to_ts(due),
                    source_run_id=run.id,
                    retry_count=0,
                    meta=meta,
                    timestamp=now,
                )
            )
        return dispatches

    def _ancestors(self, job: dict) -> int:
        """How many ancestors a job has now (the structure may have changed since the
        checks at create/update time, which is why the reactor counts again)."""
        count, parent = 0, job["parent_id"]
        while parent and count <= MAX_CHAIN_DEPTH:
            row = views.job(self.db(), parent)
            count, parent = count + 1, row["parent_id"] if row else None
        return count

    def _end_job(self, job: dict, status: str, meta: EventMeta, now: datetime) -> list[Job]:
        ending = ends_job(job, status)
        if ending is None:
            return []
        aggregate: Job = self.ctx.log.repository.get(job["id"])
        if aggregate.deleted:
            return []
        if ending == "delete":
            aggregate.delete(meta, now)
        else:
            aggregate.disable(meta, now)
        return [aggregate] if aggregate.pending_events else []

    async def _start_queued(self, job_id: str) -> None:
        """After a run of a `queue` job ends, start its oldest queued run, if any."""
        job = views.job(self.db(), job_id)
        queued = views.queued_runs(self.db(), job_id) if job else []
        if not queued or self._busy_reason(job):
            return
        run: Run = self.ctx.log.repository.get(queued[0]["id"])
        if run.status == "queued":
            self._execute(run, job, {"queued_count": len(queued) - 1})

    # Periodic passes

    async def every(self, seconds: float, action) -> None:
        """Run `action` now and then every `seconds`, until stopping."""
        while not self.stopping.is_set():
            try:
                await action()
            except Exception as error:  # noqa: BLE001 - a failed pass must not stop the daemon
                log(f"error in {action.__name__}: {type(error).__name__}: {error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)

    async def sweep(self) -> None:
        """Spec §25: runs of a daemon that died are recovered (a surviving daemon does it
        too), and runs of another daemon far past their timeout are finished as timeout."""
        await self.recover()
        await self.expire_approvals()
        now = datetime.now(UTC)
        for row in views.active_runs(self.db(), ("running",)):
            if row["id"] in self.active or row["owner"] == self.identity:
                continue
            limit_ms = row["run_timeout_ms"] or 0
            overdue = now - from_ts(row["started_at"]) - timedelta(milliseconds=limit_ms)
            if overdue < timedelta(seconds=FOREIGN_TIMEOUT_GRACE_S):
                continue
            run: Run = self.ctx.log.repository.get(row["id"])
            job = views.job(self.db(), row["job_id"])
            cause = f"sweep/{row['id']}"
            fields = {"error_message": f"Exceeded {limit_ms}ms timeout"}
            if row["process_group"] and owner_is_dead(row["owner"]):
                await _kill_and_wait(row["process_group"])
            if job is None:
                run.finish("timeout", fields, {}, self.meta(cause), now)
                await self._save_quietly(run)
            else:
                await self._conclude(run, job, "timeout", fields, fields["error_message"])

    async def prune(self) -> None:
        """Spec §26: delete used-up one-shot jobs a day after their run, children whose
        parent is gone, and finished disabled jobs past their `ttl_hours`."""
        now = datetime.now(UTC)
        doomed: list[tuple[str, str]] = []
        records = views.jobs(self.db())
        ids = {r["id"] for r in records}
        for job in records:
            last_run = from_ts(job["last_run_at"]) if job["last_run_at"] else None
            if job["parent_id"] and job["parent_id"] not in ids:
                doomed.append((job["id"], "orphan"))
            elif job["enabled"] or last_run is None:
                continue
            elif job["delete_after_run"] and now - last_run > timedelta(hours=24):
                doomed.append((job["id"], "used-up"))
            elif (
                job["ttl_hours"]
                and job["last_status"] in ("ok", "error", "timeout")
                and now - last_run > timedelta(hours=job["ttl_hours"])
            ):
                doomed.append((job["id"], "ttl"))
        for job_id, rule in doomed:
            aggregate: Job = self.ctx.log.repository.get(job_id)
            if not aggregate.deleted:
                aggregate.delete(self.meta(f"prune/{rule}/{job_id}"), now)
                if await self._save_quietly(aggregate):
                    log(f"pruned job {job_id} ({rule})")

    # Crash recovery

    async def recover(self, abandoned_by: str | None = None) -> None:
        """Finish runs whose daemon is gone as `crashed`, after making sure their processes
        are dead; under at-least-once, a replay dispatch runs the job again (spec §19.3)."""
        for row in views.active_runs(self.db(), ("pending", "queued", "running")):
            owner = row["owner"]
            if row["id"] in self.active:
                continue
            if abandoned_by is not None and owner != abandoned_by:
                continue
            if abandoned_by is None and not owner_is_dead(owner):
                continue
            if row["session_target"] not in (None, "shell"):
                if abandoned_by is None:
                    self._resume_turn(row)
                continue  # an agent turn lives on in the gateway: the next daemon resumes it
            await self._recover_run(row)

    def _resume_turn(self, row: dict) -> None:
        """Pick up an agent run whose daemon died: asking the gateway again with the same
        idempotency key returns that turn's result; it never starts a second turn."""
        job = views.job(self.db(), row["job_id"])
        run: Run = self.ctx.log.repository.get(row["id"])
        if job is None or run.is_finished:
            return
        log(f"run {row['id']} of job {row['job_id']}: resuming the agent turn")
        self._execute(run, job)

    async def _recover_run(self, row: dict) -> None:
        group = row["process_group"]
        if group:
            await _kill_and_wait(group)
        now = datetime.now(UTC)
        cause = f"crash/{row['id']}"
        meta = self.meta(cause)
        run: Run = self.ctx.log.repository.get(row["id"])
        if run.is_finished:
            return
        job = views.job(self.db(), row["job_id"])
        follow_ups: list[Any] = []
        job_changes: dict[str, Any] = {}
        if job is not None:
            job_changes = {"last_run_at": to_ts(now), "last_status": "crashed"}
            if job["schedule_kind"] != "at" or job["parent_id"]:
                job_changes["next_run_at"] = next_run_at(job, now)
            if job["delivery_guarantee"] == "at-least-once":
                follow_ups.append(
                    Dispatch(
                        id=replay_dispatch_id(row["id"]),
                        job_id=job["id"],
                        kind="replay",
                        scheduled_for=to_ts(now - timedelta(seconds=1)),
                        source_run_id=row["id"],
                        retry_count=row["retry_count"] or 0,
                        meta=meta,
                        timestamp=now,
                    )
                )
            elif job["schedule_kind"] == "at" and not job["parent_id"]:
                aggregate: Job = self.ctx.log.repository.get(job["id"])
                aggregate.disable(meta, now)
                follow_ups += [aggregate] if aggregate.pending_events else []
        message = "The scheduler stopped while this run was active; its processes were killed"
        run.finish("crashed", {"error_message": message}, job_changes, meta, now)
        if await self._save_quietly(run, *follow_ups):
            log(f"run {row['id']} of job {row['job_id']}: crashed, recovered")
        self.timers_dirty = True


async def _kill_and_wait(group: int) -> None:
    shell.kill_group(group, signal.SIGKILL)
    for _ in range(100):
        if not shell.group_alive(group):
            return
        await asyncio.sleep(0.02)


def _offload(result: ShellResult, outcome: ShellOutcome, paths: tuple[str, str]) -> None:
    """Write streams too large to keep in the run record to the artifacts directory."""
    if not (outcome.offload_stdout or outcome.offload_stderr):
        return
    stdout, stderr, _ = stream_texts(result)
    for wanted, text, path in (
        (outcome.offload_stdout, stdout, paths[0]),
        (outcome.offload_stderr, stderr, paths[1]),
    ):
        if wanted:
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            Path(path).write_text(text, encoding="utf-8")


def _apply_auth_profile(job: dict, session_key: str) -> None:
    """Spec §11.6, best effort: refresh the agent's credentials, then pin the job's profile
    (`inherit`: the main session's) on the turn's session."""
    agent = job["agent_id"] or "main"
    try:
        openclaw_files.sync_credentials(agent)
        profile = job["auth_profile"]
        if profile == "inherit":
            profile = openclaw_files.main_session_profile(agent)
        if profile and profile != "inherit":
            openclaw_files.set_session_auth_profile(agent, session_key, profile)
    except OSError as error:
        log(f"auth profile for job {job['id']} not applied: {error}")


def _reply_text(final: dict) -> str:
    payloads = ((final.get("result") or {}).get("payloads")) or []
    return "\n".join(p.get("text") or "" for p in payloads if isinstance(p, dict)).strip()


def _usage(final: dict) -> dict[str, int | None]:
    meta = (final.get("result") or {}).get("meta") or {}
    usage = (meta.get("agentMeta") or {}).get("usage") or {}
    return {
        "input_tokens": usage.get("input"),
        "output_tokens": usage.get("output"),
        "total_tokens": usage.get("total"),
    }


def _limits(job: dict) -> OutputLimits:
    return OutputLimits(
        store=job["output_store_limit_bytes"],
        excerpt=job["output_excerpt_limit_bytes"],
        summary=job["output_summary_limit_bytes"],
        offload_threshold=job["output_offload_threshold_bytes"],
    )


def _epoch(ts: str) -> float:
    return from_ts(ts).timestamp()


def _report_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log(f"error: {type(error).__name__}: {error}")
