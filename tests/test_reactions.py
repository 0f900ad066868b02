"""Reactions: rows and facts in, a plan out — no daemon, no clock, no processes.

Facts come from a real store in a temp directory, filled through the same service
functions the CLI uses; a reaction's plan is then saved the way the daemon saves it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ocsched.adapters.settings import Settings
from ocsched.commands.context import Context
from ocsched.commands.jobs import add_job, run_now, update_job
from ocsched.commands.reactor.facts import DaemonFacts, OwnRuns
from ocsched.domain.reactions import approvals, firing, outcome, pruning
from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.reactions.plan import Defer, Plan, StartRun, reactor_meta
from ocsched.domain.run import Run
from ocsched.domain.schedule import to_ts
from ocsched.projections import views

from .conftest import shell_job

OWNER = "testhost:1:1"
NOW = datetime(2026, 12, 5, 3, 0, 0, tzinfo=UTC)


class Store:
    """A scheduler home with its log and read models, as the daemon sees them."""

    def __init__(self, home: Path) -> None:
        env = {"HOME": str(home), "SCHEDULER_HOME": str(home / "scheduler")}
        self.ctx = Context(settings=Settings.from_environment(env), actor="tester", now=NOW)
        self.own = OwnRuns()
        self.facts = DaemonFacts(self.db, self.ctx.log.repository.get, self.own)

    def db(self):
        return self.ctx.views()

    def add(self, **fields) -> dict:
        return add_job(self.ctx, shell_job(**fields))

    def job(self, job_id: str) -> dict:
        row = views.job(self.db(), job_id)
        assert row is not None
        return row

    def save(self, plan: Plan) -> None:
        """Save as the daemon does, telling its facts what changed."""
        changes = self.facts.changes(plan.records)
        self.ctx.save(*plan.records)
        self.facts.saved(changes)

    def run(self, run_id: str) -> dict:
        row = views.run(self.db(), run_id)
        assert row is not None
        return row


@pytest.fixture
def store(tmp_path: Path):
    store = Store(tmp_path)
    yield store
    store.ctx.close()


def due_job(store: Store, **fields) -> dict:
    """A job whose clock slot came due a second before NOW."""
    job = store.add(**fields)
    row = dict(store.job(job["id"]))
    row["next_run_at"] = to_ts(NOW - timedelta(seconds=1))
    return row


def fire(store: Store, job: dict, *, gateway_up: bool = True) -> Plan:
    return firing.fire_slot(job, gateway_up=gateway_up, owner=OWNER, now=NOW, facts=store.facts)


def started(store: Store, plan: Plan) -> Run:
    """Save a plan that starts a run, and mark the run started as the executor would."""
    store.save(plan)
    (start,) = [e for e in plan.effects if isinstance(e, StartRun)]
    run = start.run
    run.start(123, 123, reactor_meta(OWNER, run.id), NOW, {})
    store.ctx.save(run)
    return run


def conclude(store: Store, run: Run, job: dict, result: Outcome) -> Plan:
    return outcome.conclude(
        run, job, result, retry_base_s=30, owner=OWNER, now=NOW, facts=store.facts
    )


def one_shot(store: Store) -> dict:
    """A used-up-after-one-run job whose moment came a second before NOW."""
    job = store.add(
        schedule_cron=None,
        schedule_kind="at",
        schedule_at="2026-12-05 02:59:59",
        delete_after_run=True,
    )
    return store.job(job["id"])


# Firing and admission


def test_a_due_slot_schedules_one_run_and_moves_the_jobs_next_slot(store):
    job = due_job(store, schedule_cron="0 3 * * *")
    plan = fire(store, job)
    (run,) = plan.records
    assert isinstance(run, Run) and run.trigger == "clock"
    assert [type(e) for e in plan.effects] == [StartRun]
    scheduled = run.pending_events[0]
    assert scheduled.job_changes == {"next_run_at": "2026-12-06 03:00:00"}
    assert scheduled.meta.cause == f"clock/{job['id']}/{job['next_run_at']}"


def test_the_same_slot_always_gets_the_same_run_id(store):
    job = due_job(store)
    assert fire(store, job).records[0].id == fire(store, job).records[0].id


def test_a_slot_not_yet_due_or_a_disabled_job_plans_nothing(store):
    job = due_job(store)
    assert not firing.fire_slot(
        job, gateway_up=True, owner=OWNER, now=NOW - timedelta(minutes=1), facts=store.facts
    )
    assert not fire(store, {**job, "enabled": 0})


def test_an_agent_job_waits_for_the_gateway_and_a_shell_job_does_not(store):
    agent = due_job(
        store, session_target="isolated", payload_message="hi", delivery_opt_out_reason="test"
    )
    plan = fire(store, agent, gateway_up=False)
    assert plan.records == [] and plan.effects == [Defer(f"job/{agent['id']}", 60)]
    assert fire(store, due_job(store), gateway_up=False).records


def test_a_busy_job_skips_its_slot_and_says_why(store):
    job = due_job(store, overlap_policy="skip")
    store.own["other-run"] = job
    (run,) = fire(store, job).records
    finished = run.pending_events[-1]
    assert finished.status == "skipped"
    assert finished.outcome == {"summary": "Skipped: previous run still running: other-run"}


def test_a_busy_queue_job_holds_its_run_behind_the_busy_one(store):
    job = due_job(store, overlap_policy="queue")
    store.own["other-run"] = job
    plan = fire(store, job)
    (run,) = plan.records
    assert run.status == "queued" and plan.effects == []
    assert run.pending_events[-1].behind == "other-run"


def test_allow_starts_beside_a_busy_run_but_a_busy_pool_holds_the_run(store):
    job = due_job(store, overlap_policy="allow", resource_pool="gpu")
    store.own["mine"] = job
    assert fire(store, job).effects
    other = due_job(store, overlap_policy="allow", resource_pool="gpu")
    plan = fire(store, other)
    (run,) = plan.records
    assert run.status == "queued" and plan.effects == []
    assert run.pending_events[-1].behind == "mine"


def slot_before(job: dict, seconds: int) -> dict:
    """The job's row with its clock slot `seconds` before NOW."""
    return {**job, "next_run_at": to_ts(NOW - timedelta(seconds=seconds))}


def manual_run(store: Store, job: dict) -> Run:
    """A `jobs run` dispatch of the job, fired: its run, as admission left it (saved)."""
    plan = fire_dispatch(store, run_now(store.ctx, job["id"])["dispatch_id"])
    store.save(plan)
    return plan.records[0]


def test_a_run_held_by_a_busy_pool_starts_when_a_run_of_the_pool_ends(store):
    # Issue 11: the anchor keeps work blocked by a pool pending; it must not be dropped.
    busy_job = due_job(store, resource_pool="gpu")
    store.own["busy-run"] = busy_job
    job = due_job(store, resource_pool="gpu")
    plan = fire(store, job)
    (held,) = plan.records
    assert held.status == "queued" and plan.effects == []
    assert held.pending_events[-1].job_changes == {"queued_count": 1}
    store.save(plan)
    assert store.run(held.id)["queued_behind"] == "busy-run"
    assert not firing.start_queued(busy_job, store.facts)  # the busy run has not ended
    del store.own["busy-run"]
    (start,) = firing.start_queued(busy_job, store.facts).effects
    assert isinstance(start, StartRun) and start.run.id == held.id
    assert start.start_changes == {"queued_count": 0}


def test_the_oldest_run_waiting_for_a_pool_starts_first(store):
    busy_job = due_job(store, resource_pool="gpu")
    store.own["busy-run"] = busy_job
    first, second = due_job(store, resource_pool="gpu"), due_job(store, resource_pool="gpu")
    held = [manual_run(store, job) for job in (first, second)]
    assert [run.status for run in held] == ["queued", "queued"]
    del store.own["busy-run"]
    (start,) = firing.start_queued(busy_job, store.facts).effects
    assert start.run.id == held[0].id


def test_a_skip_job_holds_one_clock_fire_for_its_pool_and_every_manual_run(store):
    store.own["busy-run"] = due_job(store, resource_pool="gpu")
    job = due_job(store, resource_pool="gpu", overlap_policy="skip")
    plan = fire(store, slot_before(job, 2))
    store.save(plan)
    (skipped,) = fire(store, job).records
    assert skipped.pending_events[-1].outcome["summary"] == (
        "Skipped: resource pool gpu busy with run busy-run;"
        f" run {plan.records[0].id} already waits for it"
    )
    assert manual_run(store, job).status == "queued"  # work a user asked for waits


def test_at_most_max_queued_dispatches_runs_of_a_job_wait_for_its_pool(store):
    store.own["busy-run"] = due_job(store, resource_pool="gpu")
    job = due_job(store, resource_pool="gpu", overlap_policy="allow", max_queued_dispatches=1)
    store.save(fire(store, slot_before(job, 2)))
    (skipped,) = fire(store, job).records
    assert skipped.pending_events[-1].outcome == {
        "summary": "Skipped: resource pool gpu queue full (1 queued)"
    }


def test_queued_count_counts_a_queue_jobs_waiting_runs(store):
    job = due_job(store, overlap_policy="queue", max_queued_dispatches=2)
    store.own["own-run"] = job
    for seconds in (3, 2):
        store.save(fire(store, slot_before(job, seconds)))
    (full,) = fire(store, job).records
    assert full.pending_events[-1].outcome == {"summary": "Skipped: overlap queue full (2 queued)"}
    assert store.job(job["id"])["queued_count"] == 2
    del store.own["own-run"]
    (start,) = firing.start_queued(job, store.facts).effects
    assert start.start_changes == {"queued_count": 1}
    start.run.start(1, 1, reactor_meta(OWNER, start.run.id), NOW, start.start_changes)
    store.ctx.save(start.run)
    assert store.job(job["id"])["queued_count"] == 1


def test_a_manual_dispatch_runs_a_disabled_job_but_a_chain_dispatch_is_cancelled(store):
    job = store.add(enabled=False)
    dispatch = run_now(store.ctx, job["id"])
    row = views.dispatch(store.db(), dispatch["dispatch_id"])

    def fire_as(kind: str) -> Plan:
        aggregate = store.ctx.log.repository.get(dispatch["dispatch_id"])
        return firing.fire_dispatch(
            {**row, "dispatch_kind": kind},
            aggregate,
            store.job(job["id"]),
            gateway_up=True,
            owner=OWNER,
            now=NOW,
            facts=store.facts,
        )

    plan = fire_as("manual")
    assert plan.records[0].trigger == "manual" and [type(e) for e in plan.effects] == [StartRun]
    (cancelled,) = fire_as("chain").records
    assert cancelled.pending_events[-1].reason == "job is disabled"


# Outcomes


def test_an_error_with_retries_left_plans_a_retry_and_leaves_the_error_count(store):
    job = due_job(store, max_retries=2)
    run = started(store, fire(store, job))
    plan = conclude(store, run, job, Outcome("error", {"error_message": "boom"}, "boom"))
    finished, retry = plan.records[0], plan.records[1]
    assert retry.kind == "retry" and retry.retry_count == 1
    assert retry.scheduled_for == to_ts(NOW + timedelta(seconds=30))
    changes = finished.pending_events[-1].job_changes
    assert "consecutive_errors" not in changes and changes["last_status"] == "error"


def fire_dispatch(store: Store, dispatch_id: str, now: datetime = NOW) -> Plan:
    row = views.dispatch(store.db(), dispatch_id)
    return firing.fire_dispatch(
        row,
        store.ctx.log.repository.get(dispatch_id),
        store.job(row["job_id"]),
        gateway_up=True,
        owner=OWNER,
        now=now,
        facts=store.facts,
    )


def test_the_run_that_schedules_a_retry_shows_its_attempt_number_as_the_retry_does(store):
    # Spec §14.1: the failed run's retry_count becomes n, and the retry starts with n.
    job = due_job(store, max_retries=2)
    run = started(store, fire(store, job))
    plan = conclude(store, run, job, Outcome("error", {"error_message": "boom"}, "boom"))
    store.save(plan)
    assert store.run(run.id)["retry_count"] == 1
    retry_plan = fire_dispatch(store, plan.records[1].id, NOW + timedelta(seconds=30))
    retry = started(store, retry_plan)
    assert store.run(retry.id)["retry_count"] == 1
    plan = conclude(store, retry, job, Outcome("error", {"error_message": "boom"}, "boom"))
    store.save(plan)
    assert store.run(retry.id)["retry_count"] == 2
    assert [r.retry_count for r in plan.records if type(r).__name__ == "Dispatch"] == [2]


def test_with_the_dispatch_backlog_full_a_failure_is_final_and_fires_its_failure_child(store):
    # Spec §14.1, §17.3: no room for the retry, so no retry; the failure is final.
    job = due_job(store, max_retries=2, max_queued_dispatches=1)
    child = store.add(schedule_cron=None, parent_id=job["id"], trigger_on="failure")
    run_now(store.ctx, job["id"])  # the backlog's one place is taken
    run = started(store, fire(store, job))
    plan = conclude(store, run, job, Outcome("error", {"error_message": "boom"}, "boom"))
    dispatches = [r for r in plan.records if type(r).__name__ == "Dispatch"]
    assert [(d.kind, d.job_id) for d in dispatches] == [("chain", child["id"])]
    assert plan.notes == [f"retry skipped for job {job['id']}: dispatch backlog full (1)"]
    store.save(plan)
    assert store.run(run.id)["retry_count"] == 0
    assert store.job(job["id"])["consecutive_errors"] == 1


def test_a_final_error_counts_and_backs_the_next_slot_off(store):
    job = due_job(store, schedule_cron="* * * * * *", max_retries=0)
    run = started(store, fire(store, job))
    plan = conclude(store, run, job, Outcome("error", {}, "boom"))
    changes = plan.records[0].pending_events[-1].job_changes
    assert changes["consecutive_errors"] == 1
    assert changes["next_run_at"] == to_ts(NOW + timedelta(seconds=30))


def test_a_finished_parent_dispatches_its_matching_children_once_each(store):
    parent = due_job(store)
    child = store.add(
        schedule_cron=None,
        parent_id=parent["id"],
        trigger_on="success",
        trigger_condition="contains:ready",
    )
    store.add(schedule_cron=None, parent_id=parent["id"], trigger_on="failure")
    run = started(store, fire(store, parent))
    plan = conclude(store, run, parent, Outcome("ok", {}, "all ready"))
    chained = [r for r in plan.records if type(r).__name__ == "Dispatch"]
    assert [(d.job_id, d.kind, d.source_run_id) for d in chained] == [
        (child["id"], "chain", run.id)
    ]


def test_a_one_shot_job_ends_with_its_run(store):
    row = one_shot(store)
    run = started(store, fire(store, row))
    plan = conclude(store, run, row, Outcome("ok", {}, "done"))
    ended = [e for r in plan.records if r.id == row["id"] for e in r.pending_events]
    assert [type(e).__name__ for e in ended] == ["Deleted"]
    store.save(plan)  # the deletion, decided from the job's version, is its next event
    assert views.job(store.db(), row["id"]) is None
    assert store.ctx.log.repository.get(row["id"]).deleted


def test_a_crash_under_at_least_once_plans_a_replay(store):
    job = due_job(store, delivery_guarantee="at-least-once")
    run = started(store, fire(store, job))
    plan = outcome.recover_crashed(run, job, owner=OWNER, now=NOW, facts=store.facts)
    finished, replay = plan.records
    assert finished.pending_events[-1].status == "crashed"
    assert replay.kind == "replay" and replay.source_run_id == run.id


def test_a_crash_under_at_most_once_disables_a_one_shot_job_instead_of_deleting_it(store):
    row = one_shot(store)
    run = started(store, fire(store, row))
    plan = outcome.recover_crashed(run, row, owner=OWNER, now=NOW, facts=store.facts)
    ended = [r for r in plan.records if type(r).__name__ == "Job"]
    assert [type(e).__name__ for e in ended[0].pending_events] == ["Disabled"]


def test_a_finished_run_plans_nothing_more(store):
    job = due_job(store)
    run = started(store, fire(store, job))
    store.save(conclude(store, run, job, Outcome("ok")))
    assert not conclude(store, run, job, Outcome("ok"))


def test_a_shell_failure_is_delivered_to_the_jobs_target(store):
    job = due_job(store, delivery_mode="announce", delivery_channel="telegram", delivery_to="42")
    run = started(store, fire(store, job))
    plan = conclude(store, run, job, Outcome("error", {"error_message": "exit 1"}, "it broke"))
    (delivery,) = [r for r in plan.records if type(r).__name__ == "Delivery"]
    assert delivery.target == "42" and delivery.chunks == ["it broke"]


# Approvals and pruning


def test_an_unanswered_approval_takes_its_automatic_answer_after_the_timeout():
    row = {"id": "a1", "requested_at": to_ts(NOW - timedelta(hours=2)), "approval_timeout_s": 3600}
    assert approvals.approval_expired(row, NOW)
    assert not approvals.approval_expired({**row, "approval_timeout_s": 3 * 3600}, NOW)


def test_pruning_removes_orphans_and_used_up_jobs_but_keeps_live_ones():
    base = {
        "parent_id": None,
        "enabled": 0,
        "delete_after_run": 0,
        "ttl_hours": None,
        "last_status": "ok",
        "last_run_at": to_ts(NOW - timedelta(hours=30)),
    }
    live = {"p"}
    assert pruning.prune_rule({**base, "parent_id": "gone"}, live, NOW) == "orphan"
    assert pruning.prune_rule({**base, "delete_after_run": 1}, live, NOW) == "used-up"
    assert pruning.prune_rule({**base, "ttl_hours": 24}, live, NOW) == "ttl"
    assert pruning.prune_rule({**base, "enabled": 1, "delete_after_run": 1}, live, NOW) is None
    assert pruning.prune_rule({**base, "parent_id": "p"}, live, NOW) is None


# Regex trigger conditions that do not finish (issue 9, item 5)


def test_a_regex_condition_that_times_out_triggers_nothing_and_says_why(store):
    parent = due_job(store)
    child = store.add(
        schedule_cron=None,
        parent_id=parent["id"],
        trigger_on="success",
        trigger_condition="regex:(a+)+$",
    )
    other = store.add(
        schedule_cron=None,
        parent_id=parent["id"],
        trigger_on="success",
        trigger_condition="regex:a",
    )
    run = started(store, fire(store, parent))
    plan = conclude(store, run, parent, Outcome("ok", {}, "a" * 5000 + "b"))
    chained = [r for r in plan.records if type(r).__name__ == "Dispatch"]
    assert [d.job_id for d in chained] == [other["id"]]
    assert plan.notes == [
        f"not triggering {child['id']}: trigger_condition regex timed out after 100 ms"
    ]


# What the daemon's facts answer without asking SQLite again


def test_a_run_concludes_with_its_start_row_until_the_job_may_have_changed(store):
    job = store.add(max_retries=0)
    row = store.facts.job(job["id"])
    assert store.facts.current_job(row) is row
    update_job(store.ctx, job["id"], {"max_retries": 2})
    store.facts.others_changed()  # the daemon's watch, once the update reached the read models
    assert store.facts.current_job(row)["max_retries"] == 2


def test_a_childs_arrival_is_seen_once_other_processes_changes_are_noticed(store):
    parent = store.add()
    assert store.facts.children(parent["id"]) == []
    child = store.add(schedule_cron=None, parent_id=parent["id"], trigger_on="success")
    store.facts.others_changed()
    assert [c["id"] for c in store.facts.children(parent["id"])] == [child["id"]]


def test_a_due_batchs_rows_are_read_again_when_the_job_changed_after_the_batch_read(store):
    job = store.add()
    store.facts.prefetch([job["id"]])
    update_job(store.ctx, job["id"], {"max_retries": 3})
    store.facts.others_changed()
    assert store.facts.job(job["id"])["max_retries"] == 3


def test_the_facts_forget_old_changes_and_then_read_every_row_again(store, monkeypatch):
    from ocsched.commands.reactor import facts

    monkeypatch.setattr(facts, "KEPT_CHANGES", 2)
    job = store.add()
    row = store.facts.job(job["id"])
    store.facts.saved([("a", False), ("b", False)])
    assert store.facts.current_job(row) is row
    store.facts.saved([("c", False)])  # a third job: all are forgotten
    assert store.facts.current_job(row) is not row
    assert store.facts.current_job(row) == row


def test_rows_read_ahead_are_not_read_again_when_their_batch_fires(store):
    job = store.add()
    statements: list[str] = []
    store.db().set_trace_callback(statements.append)
    store.facts.prefetch([job["id"]])
    store.facts.prefetch([job["id"]])  # the batch firing: read already, unchanged since
    store.db().set_trace_callback(None)
    assert sum("FROM jobs" in statement for statement in statements) == 1
    assert store.facts.job(job["id"]) == store.job(job["id"])


def test_the_clock_reads_the_jobs_due_within_a_second_before_they_are_due(store):
    from ocsched.commands.reactor.scheduler import READ_AHEAD_S, Reactor

    soon, later = store.add(), store.add()
    reactor = Reactor(store.ctx)
    now = time.time()
    reactor.timers = [(now + 0.5, "job", soon["id"]), (now + 30, "job", later["id"])]
    statements: list[str] = []
    reactor.db().set_trace_callback(statements.append)
    assert reactor._read_ahead(30) == pytest.approx(30 - READ_AHEAD_S, abs=0.01)  # wake then
    assert statements == []
    assert 0.4 < reactor._read_ahead(0.5) <= 0.5  # what is left after reading
    read_ahead = len(statements)
    assert reactor._read_ahead(0.4) == 0.4  # read already
    reactor.handlers.facts.prefetch([soon["id"]])  # the firing batch: nothing left to read
    assert len(statements) == read_ahead > 0
    assert reactor.handlers.facts.job(soon["id"]) == store.job(soon["id"])
    assert len(statements) == read_ahead
    reactor.db().close()
    reactor.loader.close()


def test_a_write_heard_is_looked_for_again_but_a_look_on_the_clock_is_one_look(store):
    import asyncio

    from ocsched.commands.reactor.scheduler import COMMIT_RECHECKS_S, Reactor

    reactor = Reactor(store.ctx)
    reactor._data_version = reactor.db().execute("PRAGMA data_version").fetchone()["data_version"]
    statements: list[str] = []
    reactor.db().set_trace_callback(statements.append)
    asyncio.run(reactor._notice_others(woken=True))  # its commit may still be on its way
    assert statements == ["PRAGMA data_version"] * len(COMMIT_RECHECKS_S)
    statements.clear()
    asyncio.run(reactor._notice_others(woken=False))  # idle: no commit to wait for
    assert statements == ["PRAGMA data_version"]
    reactor.db().close()
    reactor.loader.close()


def test_a_bursts_first_batch_fills_the_slots_and_starts_before_more_is_decided(store):
    from ocsched.commands.reactor.scheduler import BACKLOG, Reactor

    reactor = Reactor(store.ctx)
    assert reactor.first_batch == min(64, store.ctx.settings.reactor.max_concurrent_runs)
    assert reactor._room()
    reactor.deciding = reactor.first_batch  # decided, being saved; nothing started yet
    reactor._hold_until = time.monotonic() + 10
    assert reactor._room()  # a second batch is decided while the first is saved
    assert reactor._backlog_limit() == 2 * reactor.first_batch
    reactor.deciding = 2 * reactor.first_batch
    assert not reactor._room()  # no third: the first batch's runs start first
    reactor._hold_until = time.monotonic() - 1  # held long enough (a slow gateway probe)
    assert reactor._room()
    reactor._hold_until = time.monotonic() + 10
    reactor.handlers.running["run-1"] = None  # type: ignore[assignment]  # one has started
    assert reactor._room()
    assert reactor._backlog_limit() == BACKLOG
    reactor.loader.close()


def test_the_jobs_due_by_a_time_are_found_in_the_timers_heap():
    import heapq
    import random

    from ocsched.commands.reactor.scheduler import _jobs_due_by

    timers = [
        (random.uniform(0, 100), random.choice(("job", "dispatch")), str(n)) for n in range(500)
    ]
    heapq.heapify(timers)
    for until in (-1.0, 0.5, 10.0, 50.0, 100.0):
        expected = {key for at, kind, key in timers if kind == "job" and at <= until}
        assert set(_jobs_due_by(timers, until)) == expected
    assert _jobs_due_by([], 10.0) == []


def test_a_cancel_that_races_the_daemon_starting_its_run_is_decided_again(store):
    """`jobs cancel` while the daemon records the run's start: the daemon's save lands
    between the command's reading and its save; the command reads again and cancels."""
    from ocsched.commands.jobs import cancel_job

    job = due_job(store)
    plan = fire(store, job)
    store.save(plan)
    (run,) = plan.records
    daemon = Context(settings=store.ctx.settings, actor="daemon")
    get = store.ctx.log.repository.get
    raced: list[str] = []

    def read_while_the_daemon_starts_it(aggregate_id, *args, **kwargs):
        found = get(aggregate_id, *args, **kwargs)
        if aggregate_id == run.id and not raced:
            raced.append(aggregate_id)
            starting = daemon.log.repository.get(run.id)
            starting.start(123, 123, reactor_meta(OWNER, run.id), NOW, {})
            daemon.save(starting)
        return found

    store.ctx.log.repository.get = read_while_the_daemon_starts_it  # type: ignore[method-assign]
    assert cancel_job(store.ctx, job["id"]) == [job["id"]]
    assert raced == [run.id]
    assert store.run(run.id)["status"] == "cancelled"
    assert get(run.id).version == 3  # scheduled, started (the daemon's), cancelled
    daemon.close()
