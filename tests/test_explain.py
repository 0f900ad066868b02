"""`runs explain`: a chain child held for an approval, approved, failed and retried; the
retry's explanation shows every step back to the parent's clock slot."""

from __future__ import annotations

from .test_as_of import Day, scripted_day


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
