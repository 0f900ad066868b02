"""`--as-of TIME`: a scripted day of changes, each at a controlled time, with what the
read commands printed after each; asked afterwards as of each moment, they print the same.

The day is driven the way the CLI and the daemon drive it, in process: service functions
and the reactions, given a `Context` whose `now` is the scripted time (every event is
stamped with it), saved as the daemon saves them."""

from __future__ import annotations

import contextlib
import io
import json
import random
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ocsched.adapters.settings import Settings
from ocsched.commands.approvals import decide_approval
from ocsched.commands.as_of import KEPT
from ocsched.commands.cli import build_parser
from ocsched.commands.context import Context
from ocsched.commands.dispatch_service import import_labels
from ocsched.commands.jobs import add_job, run_now, set_enabled, update_job
from ocsched.commands.reactor.facts import DaemonFacts, OwnRuns
from ocsched.domain.reactions import firing, outcome
from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.reactions.plan import Plan, StartRun, reactor_meta
from ocsched.domain.run import Run
from ocsched.projections import views
from ocsched.projections.as_of import cut_of

from .conftest import shell_job

OWNER = "testhost:1:1"
DAY = datetime(2026, 12, 5, tzinfo=UTC)


class Day:
    """A scheduler home whose clock the test moves: `at("09:00")`."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.settings = Settings.from_environment(scheduler.env)
        self.ctx = Context(settings=self.settings, actor="tester", now=DAY)
        self.own = OwnRuns()
        self.facts = DaemonFacts(self.ctx.views, self.ctx.log.repository.get, self.own)
        self.ids: dict[str, str] = {}

    def at(self, clock: str) -> datetime:
        hours, minutes = map(int, clock.split(":"))
        self.ctx.now = DAY + timedelta(hours=hours, minutes=minutes)
        return self.ctx.now

    def job(self, job_id: str) -> dict:
        row = views.job(self.ctx.views(), job_id)
        assert row is not None
        return row

    def save(self, plan: Plan) -> Run | None:
        """Save a plan as the daemon does; a run it starts is then marked started."""
        self.ctx.save(*plan.records)
        for effect in plan.effects:
            if isinstance(effect, StartRun):
                run = effect.run
                self.own[run.id] = effect.job
                run.start(123, 123, reactor_meta(OWNER, run.id), self.ctx.now, effect.start_changes)
                self.ctx.save(run)
                return run
        return None

    def fire_slot(self, job_id: str) -> Run:
        job = self.job(job_id)
        run = self.save(
            firing.fire_slot(job, gateway_up=True, owner=OWNER, now=self.ctx.now, facts=self.facts)
        )
        assert run is not None
        return run

    def fire_pending(self, job_id: str) -> Run | None:
        """The job's oldest pending dispatch, fired as the daemon fires a due one."""
        db = self.ctx.views()
        row = db.execute(
            "SELECT * FROM dispatches WHERE job_id = ? AND status = 'pending'"
            " ORDER BY scheduled_for LIMIT 1",
            (job_id,),
        ).fetchone()
        dispatch = self.ctx.log.repository.get(row["id"])
        plan = firing.fire_dispatch(
            row,
            dispatch,
            self.job(job_id),
            gateway_up=True,
            owner=OWNER,
            now=self.ctx.now,
            facts=self.facts,
        )
        return self.save(plan)

    def finish(self, run: Run, status: str, summary: str) -> None:
        job = self.job(run.job_id)
        fields = {"summary": summary} | ({"error_message": summary} if status == "error" else {})
        result = Outcome(status, fields, summary)
        plan = outcome.conclude(
            run, job, result, retry_base_s=30, owner=OWNER, now=self.ctx.now, facts=self.facts
        )
        self.ctx.save(*plan.records)
        self.own.pop(run.id, None)


def scripted_day(day: Day, after_each=lambda moment: None) -> dict[str, str]:
    """A parent job whose run chains to a child that needs an approval; approved, the
    child fails once and succeeds on its retry; later a manual run is asked for, a ledger
    of sub-agent dispatches imported and the child disabled. `after_each(moment)` is
    called after each step. Returns the ids."""
    ctx = day.ctx
    day.at("08:00")
    parent = add_job(ctx, shell_job(name="parent", schedule_cron="0 9 * * *"))
    day.ids["parent"] = parent["id"]
    after_each(ctx.now)
    day.at("08:10")
    child = add_job(
        ctx,
        shell_job(
            name="child",
            schedule_cron=None,
            parent_id=parent["id"],
            trigger_on="success",
            approval_required=True,
            max_retries=1,
        ),
    )
    day.ids["child"] = child["id"]
    after_each(ctx.now)
    day.at("08:30")
    update_job(ctx, parent["id"], {"name": "nightly"})
    after_each(ctx.now)
    day.at("09:00")
    parent_run = day.fire_slot(parent["id"])
    after_each(ctx.now)
    day.at("09:05")
    day.finish(parent_run, "ok", "all good")
    after_each(ctx.now)
    day.at("09:06")
    assert day.fire_pending(child["id"]) is None  # held for an approval
    after_each(ctx.now)
    day.at("10:00")
    ctx.actor = "alice"
    decide_approval(ctx, child["id"], approve=True)
    ctx.actor = "tester"
    after_each(ctx.now)
    day.at("10:01")
    first = day.fire_pending(child["id"])
    assert first is not None
    after_each(ctx.now)
    day.at("10:02")
    day.finish(first, "error", "disk full")
    after_each(ctx.now)
    day.at("10:03")
    retry = day.fire_pending(child["id"])
    assert retry is not None and retry.trigger == "retry"
    after_each(ctx.now)
    day.at("10:04")
    day.finish(retry, "ok", "written")
    after_each(ctx.now)
    day.at("11:00")
    run_now(ctx, parent["id"])
    after_each(ctx.now)
    day.at("11:30")
    ledger = Path(day.scheduler.home.parent / "labels.json")
    ledger.write_text(
        json.dumps(
            {
                "fix-login": {
                    "sessionKey": "agent:main:subagent:abc",
                    "status": "done",
                    "summary": "Shipped.",
                    "spawnedAt": "2026-12-05T11:20:00.000Z",
                }
            }
        )
    )
    import_labels(ctx, str(ledger))
    after_each(ctx.now)
    day.at("12:00")
    set_enabled(ctx, child["id"], False)
    after_each(ctx.now)
    day.ids.update(first=first.id, retry=retry.id, parent_run=parent_run.id)
    return day.ids


def live(day: Day, moment: datetime, argv: tuple[str, ...]) -> str:
    """What the command printed at `moment`: its handler given a context whose now is
    `moment`, on the live read models."""
    json_mode = "--json" in argv
    words = [word for word in argv if word != "--json"]
    namespace = build_parser("ocsched", words[0]).parse_args(words)
    namespace.json, namespace.actor, namespace.prog = json_mode, None, "ocsched"
    ctx = Context(json=json_mode, settings=day.settings, now=moment)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            namespace.handler(ctx, namespace)
    finally:
        ctx.close()
    return out.getvalue()


def commands(ids: dict[str, str]) -> list[tuple[str, ...]]:
    """The read commands of the issue, those whose ids exist by now."""
    every = [
        ("--json", "jobs", "list"),
        ("jobs", "list"),
        ("--json", "jobs", "get", ids.get("parent")),
        ("--json", "runs", "list", ids.get("child")),
        ("runs", "list", ids.get("parent")),
        ("--json", "status"),
        ("status",),
        ("--json", "approvals", "list"),
        ("approvals", "list"),
        ("--json", "dispatch", "list"),
        ("dispatch", "list"),
    ]
    return [argv for argv in every if None not in argv]  # type: ignore[misc]


@pytest.fixture
def utc_terminal(monkeypatch):
    """Local times in UTC and an 80-column table, as the `scheduler` fixture's commands
    see them."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "80")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_as_of_each_moment_of_a_day_answers_what_the_commands_printed_then(scheduler, utc_terminal):
    day = Day(scheduler)
    printed: list[tuple[datetime, tuple[str, ...], str]] = []

    def record(moment: datetime) -> None:
        for argv in commands(day.ids):
            printed.append((moment, argv, live(day, moment, argv)))

    record(day.at("07:00"))  # before the first event
    scripted_day(day, after_each=record)
    day.ctx.close()
    assert len({moment for moment, _, _ in printed}) == 15
    said = {(moment.strftime("%H:%M"), " ".join(argv)): text for moment, argv, text in printed}
    assert "Running:  1" in said["09:00", "status"]
    assert "Approvals:1 pending" in said["09:06", "status"]
    assert "No pending approvals" in said["10:00", "approvals list"]
    retried = json.loads(said["10:04", f"--json runs list {day.ids['child']}"])
    assert [(r["status"], r["trigger"]) for r in retried] == [("ok", "retry"), ("error", "chain")]
    assert "fix-login" in said["11:30", "dispatch list"]
    assert "fix-login" not in said["11:00", "dispatch list"]
    # Asked in an order of their own: a moment's store starts from another's or afresh.
    random.Random(14).shuffle(printed)
    for moment, argv, then in printed:
        result = scheduler.run(*argv, "--as-of", moment.isoformat())
        assert (result.returncode, result.stdout) == (0, then), (moment, argv)
    cuts = [cut_of(str(path)) for path in (scheduler.home / "as-of").glob("*.db")]
    assert len(cuts) == KEPT and all(cut and cut.prefix_end is not None for cut in cuts)


def test_events_stamped_out_of_log_order_are_cut_by_their_own_times(scheduler):
    """An event appended after others but stamped before them (as an import keeps its
    rows' times) belongs to the moments after its own time; a store that took it in after
    holding back an earlier-appended event is no longer a prefix, and no base for others."""
    day = Day(scheduler)
    day.at("10:00")
    add_job(day.ctx, shell_job(name="appended-first"))
    day.at("09:00")
    add_job(day.ctx, shell_job(name="stamped-earlier"))
    day.ctx.close()

    def names(clock: str) -> list[str]:
        moment = DAY + timedelta(hours=int(clock[:2]), minutes=int(clock[3:]))
        jobs = scheduler.ok("--json", "jobs", "list", "--as-of", moment.isoformat()).json
        return [job["name"] for job in jobs]

    assert names("09:30") == ["stamped-earlier"]
    assert names("08:00") == []
    assert names("09:45") == ["stamped-earlier"]
    assert names("10:30") == ["appended-first", "stamped-earlier"]
    cuts = {cut.moment.strftime("%H:%M"): cut for cut in map(cut_of, _stores(scheduler))}
    assert cuts["08:00"].prefix_end == 0 and cuts["09:30"].prefix_end is None
    assert cuts["10:30"].prefix_end == 2


def _stores(scheduler) -> list[str]:
    return [str(path) for path in (scheduler.home / "as-of").glob("*.db")]


def test_a_new_moment_starts_from_the_longest_prefix_kept_before_it(scheduler):
    first = scheduler.add(shell_job(name="first"))
    early = datetime.now(UTC)
    scheduler.ok("jobs", "update", first["id"], '{"name": "second"}')
    later = datetime.now(UTC)
    assert scheduler.ok("--json", "jobs", "list", "--as-of", early.isoformat()).json
    (base,) = _stores(scheduler)
    assert cut_of(base).prefix_end == 1
    with closing(sqlite3.connect(base)) as db, db:  # marked: what a copy of it would show
        db.execute("UPDATE jobs SET schedule_cron = 'from the base'")
    jobs = scheduler.ok("--json", "jobs", "list", "--as-of", later.isoformat()).json
    assert [(j["name"], j["schedule_cron"]) for j in jobs] == [("second", "from the base")]


def test_as_of_answers_repeat_from_the_kept_store_and_see_later_appends(scheduler):
    job = scheduler.add(shell_job(name="first"))
    moment = datetime.now(UTC) + timedelta(hours=1)
    as_of = ("--json", "jobs", "list", "--as-of", moment.isoformat())
    assert [j["name"] for j in scheduler.ok(*as_of).json] == ["first"]
    assert len(list((scheduler.home / "as-of").glob("*.db"))) == 1
    scheduler.ok("jobs", "update", job["id"], '{"name": "renamed"}')
    assert [j["name"] for j in scheduler.ok(*as_of).json] == ["renamed"]
    assert len(list((scheduler.home / "as-of").glob("*.db"))) == 1


def test_as_of_a_time_given_to_the_second_includes_that_whole_second(scheduler):
    job = scheduler.add(shell_job())
    second = job["created_at"].replace(" ", "T") + "Z"
    assert len(scheduler.ok("--json", "jobs", "list", "--as-of", second).json) == 1
    before = datetime.fromisoformat(second) - timedelta(seconds=1)
    assert scheduler.ok("--json", "jobs", "list", "--as-of", before.isoformat()).json == []


def test_as_of_refuses_a_bad_time_and_is_only_on_reading_commands(scheduler):
    scheduler.add(shell_job())
    result = scheduler.run("--json", "jobs", "list", "--as-of", "noon")
    assert result.returncode == 1
    assert result.json["error"].startswith("--as-of needs an ISO 8601 time")
    for far in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        result = scheduler.run("jobs", "list", "--as-of", far)
        assert (result.returncode, result.stderr) == (1, f"--as-of is out of range: {far}\n")
    assert scheduler.ok("--json", "jobs", "list", "--as-of", "1h").json == []  # (an hour ago)
    assert len(scheduler.ok("--json", "jobs", "list", "--as-of", "0s").json) == 1
    refused = scheduler.run("jobs", "add", "{}", "--as-of", "2026-12-05T10:00:00Z")
    assert refused.returncode == 1 and "--as-of" in refused.stderr
