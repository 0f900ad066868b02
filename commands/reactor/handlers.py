"""The daemon's handlers: for each timer kind and pass, load the facts, ask the reaction
(`domain/reactions/`), save its plan in one transaction, and only then act on it.

A plan whose save fails (a lost race, a storage error) is acted on not at all; the runs
it would have started are forgotten, and the caller's timer is armed again."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from ocsched.adapters import shell
from ocsched.adapters.executors import RunExecutor, RunOrder, Started
from ocsched.adapters.process_identity import on_this_host, owner_is_dead
from ocsched.adapters.processes import end_run_processes
from ocsched.adapters.senders import Sender, SendError
from ocsched.adapters.settings import ReactorSettings
from ocsched.adapters.storage_errors import backoff
from ocsched.commands.daemon_log import run_finished, run_started
from ocsched.domain.agent_turn import (
    build_prompt,
    context_summary,
    messages_in,
    session_key,
    trigger_context,
)
from ocsched.domain.delivery import Delivery
from ocsched.domain.job import Job
from ocsched.domain.reactions import approvals, firing, outcome, pruning
from ocsched.domain.reactions.deliveries import send_failed
from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.reactions.plan import Defer, Plan, Row, StartRun, reactor_meta
from ocsched.domain.retrieval import HYBRID_CANDIDATES, context_block, match_expression
from ocsched.domain.run import Run
from ocsched.projections import views

from .facts import IN_CHUNK, DaemonFacts, OwnRuns
from .post_office import inject_inbox
from .writer import Conflict, EventWriter

log = logging.getLogger("ocsched")

JOB_DELETED_TOPIC = get_topic(Job.Deleted)

RECORD_AGAIN_S, RECORD_AGAIN_MAX_S = 1.0, 30.0
"""The pause before a run's outcome that could not be recorded is recorded again, doubling
up to the most."""

GroupWatcher = Callable[[int, bool], None]
"""`watch(group, True)` when a run's process group starts, `(group, False)` when it ends."""


class Handlers:
    def __init__(
        self,
        *,
        writer: EventWriter,
        load: Callable[[str], Any],
        db: Callable[[], sqlite3.Connection],
        owner: str,
        settings: ReactorSettings,
        executors: dict[str, RunExecutor],
        sender: Sender,
        gateway_up: Callable[[], Any],
        watch_group: GroupWatcher,
        on_defer: Callable[[str, float], None],
        on_change: Callable[[], None],
        stopping: asyncio.Event,
        moves_timers: Callable[[list[Any]], bool] = lambda records: True,
        on_timers_moved: Callable[[], None] = lambda: None,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.writer = writer
        self.load = load
        self.db = db
        self.owner = owner
        self.settings = settings
        self.executors = executors
        self.sender = sender
        self.gateway_up = gateway_up
        self.watch_group = watch_group
        self.on_defer = on_defer
        self.on_change = on_change
        """Something this daemon could not record: its timers may be wrong."""
        self.moves_timers = moves_timers
        """Whether records about to be saved (still holding their events) move timers."""
        self.on_timers_moved = on_timers_moved
        """Records that move timers were saved."""
        self.on_progress = on_progress
        """A run admitted by this daemon has begun or ended."""
        self.stopping = stopping
        self.own = OwnRuns()
        """Runs this daemon admitted and has not finished: run id -> job row."""
        self.remote_gone: Callable[[str | None], bool] = lambda owner: False
        """Whether a run's owner is a daemon whose cluster lease ran out (PostgreSQL)."""
        self.running: dict[str, asyncio.Task] = {}
        self.not_begun: set[str] = set()
        """Runs started here that have not begun yet (no process, no accepted turn)."""
        self.groups: dict[str, int] = {}
        self.concluding: set[str] = set()
        self.sending: set[str] = set()
        self.facts = DaemonFacts(
            db,
            load,
            self.own,
            owner=owner,
            job_version=getattr(load, "job_version", None),
            job_versions=getattr(load, "job_versions", None),
        )

    # Save, then act

    async def apply(self, plan: Plan, joining: asyncio.Future | None = None) -> bool:
        """Save the plan's records in one transaction; then log its notes and perform its
        effects. Runs it starts are reserved while the save is under way, so a second
        decision for the same job sees them busy; a failed save releases them.

        `joining`: a queued save the plan depends on (a run's `Run.Started`); when it is
        not being written yet the plan joins its transaction, else the plan is saved only
        after it succeeded."""
        starts = [effect for effect in plan.effects if isinstance(effect, StartRun)]
        for start in starts:
            self.own.setdefault(start.run.id, start.job)
        try:
            if joining is not None and not self.writer.join(joining, *plan.records):
                await joining  # being written: the plan follows it, if it succeeds
                joining = None
            moves_timers = bool(plan.records) and self.moves_timers(plan.records)
            changes = self.facts.changes(plan.records)
            if plan.records:
                await (joining if joining is not None else self.writer.queue(*plan.records))
        except Conflict:
            saved = False
        except Exception as error:  # noqa: BLE001 - a failed save must not stop the daemon
            log.error("could not save %s: %s: %s", _names(plan), type(error).__name__, error)
            saved = False
        else:
            saved = True
            if moves_timers:
                self.on_timers_moved()
            if changes:
                self.facts.saved(changes)
                self.writer.when_settled(lambda: self.facts.saved(changes))
        if not saved:
            for start in starts:
                if start.run.id not in self.running:
                    self.own.pop(start.run.id, None)
            self.on_change()
            return False
        for note in plan.notes:
            log.info("%s", note)
        for effect in plan.effects:
            if isinstance(effect, StartRun):
                self.start(effect)
            elif isinstance(effect, Defer):
                self.on_defer(effect.timer, effect.seconds)
        return True

    def now(self) -> datetime:
        return datetime.now(UTC)

    # Timers

    async def fire_job(self, job_id: str) -> None:
        job = self.facts.job(job_id)
        gateway_up = await self._gateway_up_for(job)
        plan = firing.fire_slot(
            job, gateway_up=gateway_up, owner=self.owner, now=self.now(), facts=self.facts
        )
        if await self.apply(plan):
            self._held(plan)

    async def fire_dispatch(self, dispatch_id: str) -> None:
        row = views.dispatch(self.db(), dispatch_id)
        if row is None or row["status"] != "pending":
            return
        job = self.facts.job(row["job_id"])
        gateway_up = await self._gateway_up_for(job)
        plan = firing.fire_dispatch(
            row,
            self.load(dispatch_id),
            job,
            gateway_up=gateway_up,
            owner=self.owner,
            now=self.now(),
            facts=self.facts,
        )
        if await self.apply(plan):
            self._held(plan)

    async def fire_delivery(self, delivery_id: str) -> None:
        """Send the delivery's unsent chunks in order, each with its own idempotency key,
        recording each (spec §13.4). A send is the one act that precedes its record: the
        key makes a repeated send after a crash harmless."""
        if delivery_id in self.sending:
            return
        self.sending.add(delivery_id)
        try:
            delivery: Delivery = self.load(delivery_id)
            while (index := delivery.next_chunk()) is not None and delivery.status == "pending":
                meta = reactor_meta(self.owner, f"delivery/{delivery_id}/{index}")
                text, key = delivery.chunks[index], delivery.chunk_key(index)
                try:
                    await self.sender.send(delivery.channel, delivery.target, text, key)
                except SendError as error:
                    await self.apply(
                        send_failed(delivery, index, str(error), meta=meta, now=self.now())
                    )
                    return
                delivery.record_sent(index, meta, self.now())
                if not await self.apply(Plan([delivery])):
                    return
        finally:
            self.sending.discard(delivery_id)

    async def _gateway_up_for(self, job: Row | None) -> bool:
        if job is None or not firing.needs_gateway(job):
            return True
        return bool(await self.gateway_up())

    # Execution

    def start(self, effect: StartRun) -> None:
        run, job = effect.run, effect.job
        self.own[run.id] = job
        self.not_begun.add(run.id)
        task = asyncio.create_task(self._carry_out(run, job, effect.start_changes))
        self.running[run.id] = task
        task.add_done_callback(lambda done: self._finished(run, job, done))

    async def _carry_out(self, run: Run, job: Row, start_changes: dict[str, Any]) -> None:
        agent = firing.needs_gateway(job)
        watchdog = job["job_type"] == "watchdog"
        executor = self.executors["watchdog" if watchdog else "agent" if agent else "shell"]
        order = RunOrder(run.id, job)
        began = self.now()
        context: dict[str, Any] | None = None
        if agent:
            key = run.session_key or session_key(job)
            prompt, context = await self._prompt(run, job)
            order = RunOrder(run.id, job, prompt=prompt, session_key=key)
        started: list[asyncio.Future] = []

        def on_started(info: Started) -> None:
            self._begun(run.id)
            if info.process_group is not None:
                self.groups[run.id] = info.process_group
                self.watch_group(info.process_group, True)
            if run.status in ("pending", "queued"):
                meta = reactor_meta(self.owner, run.id)
                run.start(
                    info.process_id,
                    info.process_group,
                    meta,
                    self.now(),
                    start_changes,
                    session_key=info.session_key,
                )
                started.append(self.writer.queue(run))
                run_started(run.id, job)

        try:
            result = await executor.execute(order, on_started)
        finally:
            self._begun(run.id)
        # A run that ended before its `Run.Started` was written records both at once.
        joining = started[-1] if started and self.writer.is_queued(started[-1]) else None
        if result is None or joining is None:
            recorded = await _all_succeeded(started)
            if result is None:
                return
            if not recorded:
                run = self.load(run.id)  # the start was not recorded: conclude from the log
        if context is not None:  # spec §11.4: what the agent's prompt was made of
            result = replace(result, fields={"context_summary": context, **result.fields})
        await self.conclude(run, job, result, joining)
        duration_s = (self.now() - began).total_seconds()
        run_finished(run.id, job, result.status, duration_s, result.fields.get("error_message"))

    @property
    def waiting(self) -> int:
        return len(self.not_begun)

    def _begun(self, run_id: str) -> None:
        if run_id in self.not_begun:
            self.not_begun.discard(run_id)
            self.on_progress()

    async def conclude(
        self, run: Run, job: Row, result: Outcome, joining: asyncio.Future | None = None
    ) -> None:
        """Record the run's outcome (spec §14, §15). A save that failed for another reason
        than a lost race (the writer retries transient storage errors itself: what is left
        is another error, or a daemon that gave up as it stops) is made again from what the
        log holds of the run, after a pause, until it is recorded: an active run whose
        daemon lives is recovered by nobody, and every later slot of its job would be
        skipped as busy. A stopping daemon leaves it to the next start's recovery."""
        self.concluding.add(run.id)
        delays = backoff(first=RECORD_AGAIN_S, cap=RECORD_AGAIN_MAX_S)
        while True:
            plan = outcome.conclude(
                run,
                job,
                result,
                retry_base_s=self.settings.retry_base_s,
                owner=self.owner,
                now=self.now(),
                facts=self.facts,
            )
            if not plan or await self.apply(plan, joining):
                return
            joining = None
            recorded = self._recorded(run.id)
            if recorded is not None and recorded.is_finished:
                log.info("run %s: outcome already recorded elsewhere", run.id)
                return
            if self.stopping.is_set():
                log.warning("run %s: outcome not recorded; the next start recovers it", run.id)
                return
            log.warning("run %s: outcome not recorded yet; trying again", run.id)
            await asyncio.sleep(next(delays))
            if recorded is not None:
                run = recorded

    def _recorded(self, run_id: str) -> Run | None:
        """The run as the log holds it, or None when the log cannot be read now."""
        try:
            run: Run = self.load(run_id)
        except Exception as error:  # noqa: BLE001 - tried again after the pause
            log.warning("run %s: reading it back: %s: %s", run_id, type(error).__name__, error)
            return None
        return run

    def _finished(self, run: Run, job: Row, task: asyncio.Task) -> None:
        report_failure(task)
        self.concluding.discard(run.id)
        self.running.pop(run.id, None)
        self.own.pop(run.id, None)
        self._begun(run.id)
        group = self.groups.pop(run.id, None)
        if group is not None:
            self.watch_group(group, False)
        self._free(job)

    def _held(self, plan: Plan) -> None:
        """A run was held behind a busy one, which may have ended while the decision was
        being saved (its end looked for waiting runs before this one was written)."""
        for record in plan.records:
            if isinstance(record, Run) and record.status == "queued":
                job = self.facts.job(record.job_id)
                if job is not None:
                    self._free(job)

    def _free(self, job: Row) -> None:
        """A run of `job` ended, or was held: once the read models hold this daemon's
        saves, a run waiting for the job or its resource pool may start."""
        self.writer.when_settled(lambda: self._start_waiting(job))

    def _start_waiting(self, job: Row) -> None:
        pool = job["resource_pool"]
        waiting = self.facts.queued_runs(job["id"]) or (
            pool and self.facts.queued_runs_in_pool(pool)
        )
        if waiting and not self.stopping.is_set():
            spawn(self.start_queued(job))

    async def start_queued(self, job: Row) -> None:
        await self.apply(firing.start_queued(job, self.facts))

    def stop_cancelled(self) -> None:
        """Kill the processes of our runs that someone else finished (`jobs cancel`). Runs
        whose outcome this daemon is recording are its own doing and are left alone."""
        watched = [run_id for run_id in self.running if run_id not in self.concluding]
        for row in views.finished_among(self.db(), watched):
            run_id = row["id"]
            task = self.running.get(run_id)
            if task is not None and run_id not in self.concluding:
                log.info("run %s: %s elsewhere; stopping its processes", run_id, row["status"])
                group = self.groups.get(run_id)
                if group is not None:
                    shell.kill_group(group, signal.SIGKILL)
                task.cancel()

    async def _prompt(self, run: Run, job: Row) -> tuple[str, dict[str, Any]]:
        """The agent turn's prompt, and its context summary (spec §11.4)."""
        db = self.db()
        parent_run = views.run(db, run.triggered_by_run) if run.triggered_by_run else None
        parent_job = views.job(db, parent_run["job_id"]) if parent_run else None
        # A resumed turn's prompt is never read (the gateway answers with the first turn).
        fresh = run.status in ("pending", "queued")
        inbox = await inject_inbox(self, job, run.id, self.now()) if fresh else ""
        retrieval = self._retrieval(run, job)
        prompt = build_prompt(
            job,
            inbox=inbox,
            trigger_context=trigger_context(parent_job, parent_run),
            retrieval_context=retrieval,
            idempotency_key=run.idempotency_key or run.id,
        )
        context = context_summary(
            job,
            triggered_by_run=run.triggered_by_run,
            parent_job=parent_job,
            parent_run=parent_run,
            messages_injected=messages_in(inbox),
            retrieval_context=retrieval,
        )
        return prompt, context

    def _retrieval(self, run: Run, job: Row) -> str:
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
            log.warning("run %s: context retrieval failed: %s", run.id, error)
            return ""
        return context_block(rows)

    # Passes

    async def sweep(self) -> None:
        """Spec §25: runs of a daemon that died are recovered (a surviving daemon does it
        too), approvals expire, and runs of another daemon far past their timeout are
        finished as timeout."""
        await self.recover()
        await self.expire_approvals()
        now = self.now()
        for row in views.active_runs(self.db(), ("running",)):
            if row["id"] in self.own or row["owner"] == self.owner:
                continue
            if not outcome.foreign_run_overdue(row, now):
                continue
            if row["process_group"] and owner_is_dead(row["owner"]):
                await kill_and_wait(row["process_group"])
            plan = outcome.time_out_foreign(
                self.load(row["id"]),
                row,
                views.job(self.db(), row["job_id"]),
                retry_base_s=self.settings.retry_base_s,
                owner=self.owner,
                now=self.now(),
                facts=self.facts,
            )
            await self.apply(plan)

    async def expire_approvals(self) -> None:
        now = self.now()
        for row in views.pending_approvals(self.db()):
            if not approvals.approval_expired(row, now):
                continue
            plan = approvals.expire_approval(
                row,
                self.load(row["id"]),
                self.load(row["dispatch_id"]),
                owner=self.owner,
                now=now,
            )
            await self.apply(plan)

    async def prune(self) -> None:
        """Spec §26, over the jobs a prune rule can apply to (read models hold the rest)."""
        db = self.db()
        jobs = views.prune_candidates(db)
        parents = [job["parent_id"] for job in jobs if job["parent_id"]]
        live_ids = {job["id"] for job in jobs} | views.existing_job_ids(db, parents)
        plans = pruning.prune(
            jobs, owner=self.owner, now=self.now(), facts=self.facts, live_ids=live_ids
        )
        for plan in plans:
            await self.apply(plan)

    async def recover(self, abandoned_by: str | None = None) -> None:
        """Finish runs whose daemon is gone as `crashed`, once their processes are proven
        gone (spec §19.3): every process carrying the run's id in its environment, or in
        its recorded group, is killed and waited for, so a replay never runs beside what it
        replays, even for a run whose start was never recorded. With `abandoned_by`, this
        daemon's own runs as it stops. An agent turn lives on in the gateway: the next
        daemon resumes it instead."""
        rows = [
            row
            for row in views.active_runs(self.db(), ("pending", "queued", "running"))
            if row["id"] not in self.own
            and (abandoned_by is None or row["owner"] == abandoned_by)
            and (
                abandoned_by is not None
                or owner_is_dead(row["owner"])
                or self.remote_gone(row["owner"])
            )
        ]
        # Another host's processes are not ours to look for (its groups' numbers mean
        # other processes here); its supervisor killed them with its daemon.
        shell_runs = {
            row["id"]: row["process_group"]
            for row in rows
            if row["session_target"] in (None, "shell") and on_this_host(row["owner"])
        }
        alive = await end_run_processes(shell_runs) if shell_runs else set()
        for row in rows:
            if row["session_target"] not in (None, "shell"):
                if abandoned_by is None:
                    self._resume_turn(row)
                continue
            if row["id"] in alive:
                log.warning("run %s: its processes survive SIGKILL; not recovered yet", row["id"])
                continue
            run = self.load(row["id"])
            job = views.job(self.db(), row["job_id"])
            recovered = outcome.recover_crashed(
                run, job, owner=self.owner, now=self.now(), facts=self.facts
            )
            if await self.apply(recovered) and job is not None:
                self._free(job)

    def _resume_turn(self, row: Row) -> None:
        """Asking the gateway again with the same idempotency key returns the dead daemon's
        turn's result; it never starts a second turn."""
        job = views.job(self.db(), row["job_id"])
        run: Run = self.load(row["id"])
        if job is None or run.is_finished:
            return
        log.info("run %s of job %s: resuming the agent turn", row["id"], row["job_id"])
        self.start(StartRun(run, job))


class AggregateLoader:
    """`load(id)`: an aggregate from its events, as the library's `Repository.get` builds
    it (the log has no snapshots and no cache). With SQLite the events are read through a
    plain read-only connection: the library's read goes through its connection pool and a
    transaction, three quarters of the time of loading a job."""

    def __init__(self, log: Any, database: str | None) -> None:
        from eventsourcing.sqlite import SQLiteApplicationRecorder

        self.log = log
        self._select: str | None = None
        self._db: sqlite3.Connection | None = None
        recorder = log.recorder
        if database and isinstance(recorder, SQLiteApplicationRecorder):
            self._database = database
            self._select = (
                "SELECT originator_version, topic, state"
                f" FROM {recorder.events_table_name}"
                " WHERE originator_id = ? ORDER BY originator_version"
            )
            self._newest = (
                f"SELECT originator_version, topic FROM {recorder.events_table_name}"
                " WHERE originator_id = ? ORDER BY originator_version DESC LIMIT 1"
            )
            # SQLite takes a bare column's value from the row whose max() it returns.
            self._newest_of = (
                "SELECT originator_id, max(originator_version), topic"
                f" FROM {recorder.events_table_name}"
                " WHERE originator_id IN ({marks}) GROUP BY originator_id"
            )

    def __call__(self, aggregate_id: str) -> Any:
        aggregate = None
        for event in self._events(aggregate_id):
            aggregate = event.mutate(aggregate)
        if aggregate is None:
            raise AggregateNotFoundError(aggregate_id)
        return aggregate

    def job_version(self, job_id: str) -> int | None:
        """The job's version in the log (None once deleted), from its newest event alone."""
        if self._select is None:
            job = self(job_id)
            return None if job.deleted else int(job.version)
        newest = self._connection().execute(self._newest, (job_id,)).fetchone()
        if newest is None:
            raise AggregateNotFoundError(job_id)
        version, topic = newest
        return None if topic == JOB_DELETED_TOPIC else int(version)

    def job_versions(self, job_ids: list[str]) -> dict[str, int | None]:
        """`job_version` of many jobs, in one query each `IN_CHUNK` with SQLite."""
        if self._select is None:
            return {job_id: self.job_version(job_id) for job_id in job_ids}
        versions: dict[str, int | None] = {}
        for start in range(0, len(job_ids), IN_CHUNK):
            chunk = job_ids[start : start + IN_CHUNK]
            query = self._newest_of.format(marks=",".join("?" * len(chunk)))
            for job_id, version, topic in self._connection().execute(query, chunk):
                versions[job_id] = None if topic == JOB_DELETED_TOPIC else int(version)
        return versions

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True, timeout=5)
        return self._db

    def _events(self, aggregate_id: str) -> Any:
        if self._select is None:
            return self.log.events.get(aggregate_id)
        to_event = self.log.mapper.to_domain_event
        rows = self._connection().execute(self._select, (aggregate_id,)).fetchall()
        return [
            to_event(StoredEvent(aggregate_id, version, topic, state))
            for version, topic, state in rows
        ]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


async def kill_and_wait(group: int) -> None:
    shell.kill_group(group, signal.SIGKILL)
    for _ in range(100):
        if not shell.group_alive(group):
            return
        await asyncio.sleep(0.02)


def spawn(coroutine: Any) -> None:
    task = asyncio.create_task(coroutine)
    task.add_done_callback(report_failure)


async def _all_succeeded(saves: list[asyncio.Future]) -> bool:
    """Wait for every save; whether all succeeded (`gather(return_exceptions=True)` for the
    one save a run mostly has, without the gathering future and its callbacks)."""
    succeeded = True
    for save in saves:
        try:
            await save
        except asyncio.CancelledError:
            if not save.cancelled():
                raise  # this task was cancelled, not the save
            succeeded = False
        except Exception:  # noqa: BLE001 - a failed save: the caller reads the log instead
            succeeded = False
    return succeeded


def report_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("%s: %s", type(error).__name__, error)


def _names(plan: Plan) -> str:
    return ", ".join(f"{type(a).__name__} {a.id}" for a in plan.records[:3])
