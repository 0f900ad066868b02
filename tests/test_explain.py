"""`runs explain`: a chain child held for an approval, approved, failed and retried; the
retry's explanation shows every step back to the parent's clock slot. Gate decisions,
deliveries and each gateway send are steps too."""

from __future__ import annotations

from ocsched.commands.jobs import add_job, run_now
from ocsched.domain.reactions import firing
from ocsched.domain.reactions.plan import reactor_meta

from .conftest import shell_job
from .test_as_of import OWNER, Day, scripted_day
from .test_import_anchor import anchor, anchor_db, imported  # noqa: F401 - fixtures
from .test_trust import blob


def _walk(step: dict):
    yield step
    for child in step["children"]:
        yield from _walk(child)


def test_a_retried_chain_child_after_an_approval_shows_every_step(scheduler):
    day = Day(scheduler)
    ids = scripted_day(day)
    day.ctx.close()
    tree = scheduler.ok("--json", "runs", "explain", ids["retry"][:8]).json
    assert tree["text"] == f"run {ids['retry']} of job child ({ids['child'][:8]}..): ok"
    steps = list(_walk(tree))
    texts = [step["text"] for step in steps]
    by_type = {}
    for step in steps:
        by_type.setdefault(step.get("type"), []).append(step)
    # why the retry: the failed run, why that: the approved chain from the parent's slot
    assert texts[1].startswith(f"why: retry 1 of failed run {ids['first'][:8]}")
    assert f"run {ids['first']} of job child ({ids['child'][:8]}..): error" in texts
    assert any(t.startswith(f"why: chained from parent run {ids['parent_run'][:8]}") for t in texts)
    assert f"run {ids['parent_run']} of job nightly ({ids['parent'][:8]}..): ok" in texts
    assert "why: the job's clock slot 2026-12-05 09:00:00 UTC came due" in texts
    (approved,) = by_type["Approval.Approved"]
    assert (approved["text"], approved["actor"], approved["origin"]) == (
        "approved by alice",
        "alice",
        "cli",
    )
    assert [s["text"] for s in by_type["Approval.Requested"]] == ["approval requested"]
    assert by_type["Dispatch.Held"][0]["text"].startswith("held for approval ")
    assert by_type["Dispatch.Released"][0]["actor"] == "alice"
    finished = [s["text"] for s in by_type["Run.Finished"]]
    # (causes come before what they caused: the walk is in time order)
    assert finished == [
        "finished ok: all good",
        "finished error: disk full",
        "finished ok: written",
    ]
    assert (
        len(by_type["Run.Started"]) == 3 and len(by_type["Run.Scheduled"]) == 3 + 1
    )  # (+ the slot)
    assert {s["actor"] for s in by_type["Run.Finished"]} == {"reactor"}
    # times, in order along each run's own steps
    own = [c for c in tree["children"] if c.get("aggregate_id") == ids["retry"]]
    assert [c["time"] for c in own] == sorted(c["time"] for c in own)

    text = scheduler.ok("runs", "explain", ids["retry"]).stdout
    lines = text.splitlines()
    assert lines[0] == tree["text"]
    assert any(line.startswith("├─ why: retry 1 of failed run") for line in lines)
    assert any(
        "approved by alice  [2026-12-05 10:00:00 UTC, alice via cli]" in line for line in lines
    )
    assert any("└─ " in line and "finished ok: written" in line for line in lines)


def test_the_failed_run_says_what_it_led_to(scheduler):
    day = Day(scheduler)
    ids = scripted_day(day)
    day.ctx.close()
    tree = scheduler.ok("--json", "runs", "explain", ids["first"]).json
    (led,) = [c for c in tree["children"] if c["text"] == "led to:"]
    (retry,) = led["children"]
    assert retry["text"].startswith("retry dispatch ")
    assert retry["text"].endswith(f"run {ids['retry']} (ok)")
    parent = scheduler.ok("--json", "runs", "explain", ids["parent_run"]).json
    (led,) = [c for c in parent["children"] if c["text"] == "led to:"]
    assert [c["text"].split(" dispatch ")[0] for c in led["children"]] == ["chain"]


def test_explain_of_an_unknown_run_is_one_line(scheduler):
    result = scheduler.run("runs", "explain", "nope")
    assert (result.returncode, result.stderr.strip()) == (1, "Run not found: nope")
    result = scheduler.run("--json", "runs", "explain", "nope")
    assert result.json == {"ok": False, "error": "Run not found: nope"}


def test_gate_decisions_deliveries_and_gateway_sends_are_steps(scheduler):
    day = Day(scheduler)
    ctx = day.ctx
    day.at("09:00")
    refused = add_job(
        ctx,
        shell_job(
            name="reports",
            identity=blob(principal="svc:reports", trust_level="restricted"),
            contract_required_trust_level="supervised",
            contract_trust_enforcement="block",
        ),
    )
    plan = firing.fire_slot(
        {**day.job(refused["id"]), "next_run_at": "2026-12-05 08:59:00"},
        gateway_up=True,
        owner=OWNER,
        now=ctx.now,
        facts=day.facts,
    )
    (refused_run,) = plan.records
    day.save(plan)
    told = add_job(
        ctx,
        shell_job(
            name="told",
            delivery_mode="announce-always",
            delivery_channel="telegram",
            delivery_to="42",
        ),
    )
    day.at("09:10")
    run_now(ctx, told["id"])
    run = day.fire_pending(told["id"])
    assert run is not None
    day.at("09:11")
    day.finish(run, "ok", "sent the report")
    (delivery_id,) = [
        row["id"] for row in ctx.views().execute("SELECT id FROM deliveries").fetchall()
    ]
    delivery = ctx.log.repository.get(delivery_id)
    day.at("09:12")
    delivery.record_failure(
        0, "gateway down", "2026-12-05 09:13:00", reactor_meta(OWNER, run.id), ctx.now
    )
    day.at("09:13")
    delivery.record_sent(0, reactor_meta(OWNER, run.id), ctx.now)
    ctx.save(delivery)
    ctx.close()

    lines = scheduler.ok("runs", "explain", refused_run.id).stdout.splitlines()
    assert any(
        "├─ identity gate: permit (identity resolved from the declaration)" in line
        for line in lines
    )
    assert any(
        "trust gate: deny (trust level restricted is below required supervised)" in line
        for line in lines
    )
    assert any("finished error: Trust enforcement blocked dispatch" in line for line in lines)

    tree = scheduler.ok("--json", "runs", "explain", run.id).json
    assert tree["children"][0]["text"].startswith("why: asked for by tester (jobs run)")
    (sent,) = [c for c in tree["children"] if c.get("type") == "Delivery.Requested"]
    assert sent["text"].endswith("delivery to telegram:42 (1 chunk)")
    assert [c["text"] for c in sent["children"]] == [
        "gateway send of chunk 1 failed (attempt 1): gateway down; again at 2026-12-05 09:13:00",
        "the gateway accepted chunk 1 (attempt 2)",
    ]


def test_every_run_imported_from_openclaw_scheduler_is_explained(imported, scheduler):  # noqa: F811
    runs = [
        run
        for job in scheduler.ok("--json", "jobs", "list").json
        for run in scheduler.ok("--json", "runs", "list", job["id"], "200").json
    ]
    assert len(runs) >= 5
    whys = []
    for run in runs:
        tree = scheduler.ok("--json", "runs", "explain", run["id"]).json
        assert tree["text"].endswith(f": {run['status']}")
        whys.append(tree["children"][0]["text"])
    assert all(why.startswith("why: ") for why in whys)
    assert any("imported without its dispatch" in why or "dispatch" in why for why in whys)
