"""The agent prompt's notes in the anchor's words (spec §11.3), the trigger context of a
chain run (§15.4) and the context summary stored on agent runs (§11.4)."""

from __future__ import annotations

import json

from ocsched.domain.agent_turn import build_prompt, context_summary, trigger_context


def job(**fields) -> dict:
    return {"id": "j1", "name": "nightly", "payload_message": "Do the thing", **fields}


def test_a_read_only_run_is_told_every_side_effect_is_forbidden():
    prompt = build_prompt(job(execution_read_only=1))
    assert prompt == "\n".join(
        [
            "[scheduler:j1 nightly]",
            "",
            "[SYSTEM NOTE -- execution boundary]",
            "This run is read-only. Inspect and summarize state, but do not execute external "
            "side effects.",
            "Treat every write, send, post, mutation, or shelling out for side effects as "
            "forbidden.",
            "If a concrete change is needed, describe it as a recommendation instead of "
            "performing it.",
            "[END SYSTEM NOTE]",
            "",
            "Do the thing",
        ]
    )


def test_planning_wins_over_read_only_and_keeps_the_recommendation_line():
    both = build_prompt(job(execution_intent="plan", execution_read_only=1)).split("\n")
    assert both[3].startswith("This run is planning-only.")
    assert both[4].startswith("Treat every write")
    plan = build_prompt(job(execution_intent="plan")).split("\n")
    assert plan[2:6] == [
        "[SYSTEM NOTE -- execution boundary]",
        "This run is planning-only. Analyze, reason, and propose actions, but do not execute "
        "external side effects.",
        "If a concrete change is needed, describe it as a recommendation instead of performing it.",
        "[END SYSTEM NOTE]",
    ]
    assert "execution boundary" not in build_prompt(job(execution_intent="execute"))


def test_the_flush_scope_and_idempotency_notes_use_the_anchors_words():
    prompt = build_prompt(
        job(
            job_class="pre_compaction_flush",
            payload_scope="global",
            delivery_guarantee="at-least-once",
        ),
        idempotency_key="clock/j1/2026-12-05 03:00:00",
    )
    assert (
        "\n\n[SYSTEM: Pre-compaction flush required]\n"
        "Write a structured summary of: active decisions, constraints, task owners, open "
        "questions.\n"
        "Format as labeled sections. If nothing needs flushing, respond with exactly: NO_FLUSH\n"
        "[END SYSTEM]\n"
    ) in prompt
    assert "\n\n[SYSTEM NOTE -- scope=global]\nThis job has cross-session sub-agent" in prompt
    assert "other session -- not just this isolated scheduler session.\n[END SYSTEM NOTE]" in prompt
    assert prompt.endswith(
        "\n\n[IDEMPOTENCY KEY: clock/j1/2026-12-05 03:00:00]\n"
        "This is an at-least-once job. Before performing side effects, verify this key\n"
        "has not already been processed. If you've already handled this exact execution,\n"
        "respond with: IDEMPOTENT_SKIP\n\nDo the thing"
    )


SHELL_PARENT = {
    "id": "r0",
    "job_id": "p1",
    "status": "error",
    "shell_exit_code": None,
    "shell_signal": "SIGKILL",
    "shell_timed_out": 1,
    "shell_stdout": "x" * 3500,
    "shell_stderr": "",
    "shell_stdout_path": "/art/runs/r0/stdout.txt",
    "shell_stdout_bytes": 70000,
    "shell_stderr_path": None,
    "error_message": "Shell command timed out after 1000ms",
    "summary": "ignored for a shell parent",
}


def test_a_shell_parent_that_timed_out_is_described_with_its_signal_and_file():
    text = trigger_context({"name": "fetch"}, SHELL_PARENT)
    lines = text.split("\n")
    assert lines[:8] == [
        "--- Trigger Context ---",
        "Triggered by: fetch",
        "Parent run status: error",
        "Parent shell result:",
        "Timed out: true",
        "Signal: SIGKILL",
        "Error: Shell command timed out after 1000ms",
        "stdout:",
    ]
    assert lines[8] == "x" * 2984
    assert lines[9:] == [
        "...[truncated]",
        "stdout file: /art/runs/r0/stdout.txt (70000 bytes)",
        "---",
    ]


def test_an_agent_parent_passes_its_reply_on():
    parent = {"id": "r0", "job_id": "p1", "status": "ok", "shell_timed_out": 0, "summary": "42"}
    assert trigger_context(None, parent).split("\n")[1:] == [
        "Triggered by: p1",
        "Parent run status: ok",
        "Parent run output:",
        "42",
        "---",
    ]


def test_the_context_summary_holds_a_shell_parents_status():
    summary = context_summary(
        job(execution_read_only=1, auth_profile="inherit"),
        triggered_by_run="r0",
        parent_job={"name": "fetch"},
        parent_run=SHELL_PARENT,
        messages_injected=2,
        retrieval_context="--- Prior Run Context ---\n[a] one\n[b] two\n--- End",
    )
    assert summary == {
        "messages_injected": 2,
        "scope": "own",
        "job_class": "standard",
        "delivery_guarantee": "at-most-once",
        "context_retrieval": "none",
        "execution_intent": "execute",
        "execution_read_only": True,
        "payload_model": None,
        "payload_thinking": None,
        "auth_profile": "inherit",
        "triggered_by_run": "r0",
        "parent_job_id": "p1",
        "parent_job_name": "fetch",
        "parent_run_status": "error",
        "parent_shell_exit_code": None,
        "parent_shell_signal": "SIGKILL",
        "parent_shell_timed_out": True,
        "parent_shell_stdout_path": "/art/runs/r0/stdout.txt",
        "parent_shell_stderr_path": None,
        "retrieval_results": 2,
    }


def test_a_missing_parent_run_is_noted_in_the_context_summary():
    summary = context_summary(job(), triggered_by_run="gone", parent_job=None, parent_run=None)
    assert (summary["triggered_by_run"], summary["parent_run_missing"]) == ("gone", True)
    plain = context_summary(job(), triggered_by_run=None, parent_job=None, parent_run=None)
    assert "triggered_by_run" not in plain


# Through a real daemon and the fake gateway


def test_an_agent_child_of_a_shell_parent_gets_its_status_in_prompt_and_summary(
    scheduler, daemons, gateway
):
    from .conftest import shell_job
    from .test_agent_jobs import agent_job
    from .test_daemon import finished_runs

    parent = scheduler.add(
        shell_job(
            name="fetch",
            schedule_cron=None,
            delete_after_run=0,
            payload_message="echo partial; exit 3",
        ),
        "--in",
        "1s",
    )
    child = scheduler.add(
        agent_job(
            name="explain",
            parent_id=parent["id"],
            trigger_on="failure",
            schedule_cron=None,
            delivery_mode="none",
            execution_read_only=1,
        )
    )
    daemons.start()
    (parent_run,) = finished_runs(scheduler, parent["id"])
    (run,) = finished_runs(scheduler, child["id"])
    (turn,) = gateway.calls_of("agent")
    assert (
        "\n--- Trigger Context ---\nTriggered by: fetch\nParent run status: error\n"
        "Parent shell result:\nExit code: 3\nError: Shell exited with code 3\n"
        "stdout:\npartial\n---\n"
    ) in turn["message"]
    assert "Treat every write, send, post, mutation" in turn["message"]
    summary = json.loads(run["context_summary"])
    assert summary["execution_read_only"] is True
    assert (summary["triggered_by_run"], summary["parent_job_name"]) == (parent_run["id"], "fetch")
    assert (summary["parent_run_status"], summary["parent_shell_exit_code"]) == ("error", 3)
    assert summary["parent_shell_timed_out"] is False


def test_an_at_least_once_prompt_carries_the_key_the_run_record_shows(scheduler, daemons, gateway):
    from .test_agent_jobs import agent_job
    from .test_daemon import finished_runs

    job = scheduler.add(
        agent_job(delivery_mode="none", delivery_guarantee="at-least-once"), "--in", "1s"
    )
    daemons.start()
    (run,) = finished_runs(scheduler, job["id"])
    (turn,) = gateway.calls_of("agent")
    key = run["idempotency_key"]
    assert key == f"clock/{job['id']}/{run['slot']}"
    assert f"\n\n[IDEMPOTENCY KEY: {key}]\nThis is an at-least-once job." in turn["message"]


def test_the_messages_of_an_inbox_block_are_counted():
    from ocsched.domain.agent_turn import messages_in

    block = "\n".join(
        [
            "--- Pending Messages ---",
            "From: ops | text | (no subject)",
            "line one\n---\nnot a message",
            "---",
            "From: qa | result | done",
            "ok",
            "---",
        ]
    )
    assert messages_in(block) == 2
    assert messages_in("") == 0
