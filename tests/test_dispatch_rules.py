"""The dispatch CLI's rules (spec §31) as pure functions: no gateway, no git, no clock."""

from __future__ import annotations

import json
import time

import pytest

from ocsched.domain.dispatch_rules.auto_resolution import (
    auto_resolve_threshold_ms,
    bootstrap_failure,
    hard_ceiling_ms,
    idle_threshold_ms,
    resolution_fields,
    session_done,
    stuck_threshold_ms,
)
from ocsched.domain.dispatch_rules.completion import (
    checks_line,
    completion_payload,
    synthesize_completion_reply,
)
from ocsched.domain.dispatch_rules.delivery_text import (
    NOISE_IDLE,
    NOISE_NOT_FOUND,
    NOISE_TRANSPORT,
    delivery_text,
    resolve_delivery_text,
)
from ocsched.domain.dispatch_rules.done_guards import (
    DONE_MESSAGE_KNOWN,
    REJECT_BAD_JSON,
    REJECT_NO_SHA,
    check_done,
    done_min_runtime_ms,
    done_output,
)
from ocsched.domain.dispatch_rules.git_sha import task_requires_git_sha
from ocsched.domain.dispatch_rules.hook_payloads import (
    finished_fields,
    finished_notice_body,
    loki_payload,
    started_fields,
    stuck_fields,
    webhook_payload,
)
from ocsched.domain.dispatch_rules.humanize import humanize
from ocsched.domain.dispatch_rules.overload import (
    find_lane_task_error,
    is_overload_error,
    overload_error_text,
    recovery_decision,
    recovery_notice,
    recovery_skip_reason,
)
from ocsched.domain.dispatch_rules.task_message import task_message, with_origin_chat_id
from ocsched.domain.dispatch_rules.technical import (
    COMPLETION_LEAD_DEDUPE,
    COMPLETION_LEAD_READ,
    COMPLETION_LEAD_SCAN,
    FOLLOW_UPS,
)
from ocsched.domain.dispatch_rules.values import iso_from_ms

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z
MINUTE = 60_000
FULL_CHECKLIST = '{"work_complete":true,"tests_passed":true,"pushed":true}'
SHA = "deadbeefcafebabe1234"


def spawned(ms_ago: int) -> str:
    return iso_from_ms(NOW - ms_ago)


def entry(**fields) -> dict:
    base = {
        "label": "ticket-42",
        "sessionKey": "agent:main:subagent:abc",
        "spawnedAt": spawned(30 * MINUTE),
        "timeoutSeconds": 300,
        "taskPrompt": "Fix the typo in the README.",
    }
    base.update(fields)
    return base


def done(**overrides):
    arguments = {
        "entry": entry(),
        "summary": "Fixed the typo so the README reads correctly.",
        "checklist_text": '{"work_complete":true}',
        "sha": None,
        "force": False,
        "reason": None,
        "now_ms": NOW,
        "sha_exists": None,
        "activity": {"messageCount": 12},
    }
    arguments.update(overrides)
    return check_done(**arguments)


def message(**overrides) -> str:
    arguments = {
        "label": "ticket-42",
        "prompt": "Fix the deploy script",
        "target": "-100200",
        "channel": "telegram",
        "origin": "telegram:-100200",
    }
    arguments.update(overrides)
    return task_message(**arguments)


# §31.4 the task message


def test_the_task_message_opens_with_the_subagent_context_and_a_blank_line():
    lines = message().split("\n")
    assert lines[0] == (
        "[Subagent Context] You are running as a subagent (depth 1/3). Results auto-announce "
        "to your requester; do not busy-poll for status."
    )
    assert lines[1] == ""


def test_the_prompt_is_used_literally():
    prompt = "  keep   my spacing\n\n$HOME `and` 'quotes'  "
    assert f"[Subagent Task]: {prompt}\n" in message(prompt=prompt)


def test_a_target_adds_a_check_in_block_with_a_curl_to_the_message_tool():
    text = message(gateway_url="http://gw.local:18789/")
    assert "---\nCHECK_IN: To report progress, use curl:\nGW_TOKEN=$(node -e " in text
    assert "curl -s -X POST 'http://gw.local:18789/tools/invoke' " in text
    assert (
        '-d \'{"tool":"message","args":{"action":"send","channel":"telegram",'
        '"target":"-100200","message":"[ticket-42] <your status here>"},"sessionKey":"main"}\''
    ) in text
    assert "Call this every ~5 minutes with a brief progress update.\n---\n" in text


def test_check_in_values_lose_backslashes_quotes_and_line_breaks():
    text = message(label='it\'s "x"\\\ny', target="12'3", channel='tele"gram')
    assert '"channel":"telegram","target":"123","message":"[its xy] <your status here>"' in text


def test_without_a_target_or_with_checkin_off_there_is_no_check_in_block():
    assert "CHECK_IN" not in message(target=None, origin=None)
    assert "CHECK_IN" not in message(checkin=False)


def test_the_completion_block_names_our_done_command_with_a_shell_escaped_label():
    text = message(label="bob's task")
    assert (
        "  ocsched dispatch done --label 'bob'\\''s task' --summary \"<what you actually did>\" "
        '--checklist \'{"work_complete":true,"tests_passed":true,"pushed":true}\' '
        '[--sha "<git commit SHA if applicable>"]'
    ) in text
    assert "COMPLETION SIGNAL -- READ CAREFULLY:" in text
    assert "Do NOT call done while planning, reading files, or mid-task." in text
    assert "--sha is required and must be the actual SHA of your pushed commit" in text


def test_the_done_command_can_be_named_by_the_caller():
    assert "  openclaw-scheduler done --label 'x'" in message(
        label="x", done_command="openclaw-scheduler done"
    )


def test_the_push_reminder_appears_only_for_tasks_that_push():
    assert "If you have not yet pushed a commit, you are not done." in message(
        prompt="Fix it, then git push origin main"
    )
    assert "If you have not yet pushed a commit" not in message(prompt="Summarize the logs")


def test_the_delivery_rule_names_the_origin_when_there_is_one():
    text = message()
    assert "DELIVERY RULE: Do NOT use the message tool" in text
    assert text.endswith(
        "Note: This job will be delivered to origin channel: telegram:-100200\n---"
    )
    assert "Note: This job will be delivered" not in message(origin=None)


def test_the_checkpoint_block_names_the_post_office_command_with_a_shell_escaped_label():
    assert "CHECKPOINT MESSAGING" not in message(checkpoint_command=None)
    assert "dispatch send" not in message()
    text = message(label="a'b")
    notify = "ocsched messages send --from 'a'\\''b' --to main --kind status --body"
    assert f'  {notify} "<message>"' in text
    assert f'Example: {notify} "Starting step 2: running tests"' in text
    assert f"(Environment variable CHECKPOINT_NOTIFY_CMD is set to: {notify})\n---\n" in text


def test_the_blocks_come_in_the_spec_order():
    text = message(checkpoint_command="ocsched messages send")
    order = ["[Subagent Context]", "CHECK_IN:", "[Subagent Task]:", "CHECKPOINT MESSAGING"]
    order += ["COMPLETION SIGNAL", "DELIVERY RULE:"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_origin_chat_id_is_prefixed_when_there_is_a_target():
    assert with_origin_chat_id("do it", "-100") == "ORIGIN_CHAT_ID: -100\n\ndo it"


def test_origin_chat_id_is_not_added_twice_or_without_a_target():
    already = "ORIGIN_CHAT_ID: 5\n\ndo it"
    assert with_origin_chat_id(already, "-100") == already
    assert with_origin_chat_id("do it", None) == "do it"


# §31.7 the git-SHA gate's prompt test


@pytest.mark.parametrize(
    "prompt",
    [
        "Commit and git push the fix",
        "GIT  REBASE onto main",
        "git cherry-pick abc123",
        "--force-with-lease is fine",
        "then push with --force-push",
    ],
)
def test_real_git_commands_require_a_sha(prompt):
    assert task_requires_git_sha(prompt)


@pytest.mark.parametrize(
    "prompt",
    [
        "Do NOT use git push",
        "never git push",
        "don't run git rebase",
        "avoid using git push",
        "without git cherry-pick",
        "rebase the plan on the new numbers",
        "use foo--force-push",
        "",
        None,
    ],
)
def test_negated_or_bare_git_words_do_not_require_a_sha(prompt):
    assert not task_requires_git_sha(prompt)


def test_a_negation_far_before_the_command_does_not_count():
    prompt = "Do not use " + "x" * 50 + " git push"
    assert task_requires_git_sha(prompt)


# §31.7 the guards of done


def test_done_without_a_checklist_is_rejected():
    decision = done(checklist_text=None)
    assert not decision.accepted
    assert decision.exit_code == 1
    assert decision.error.startswith("REJECTED: --checklist is required. ")
    assert decision.completion is None


def test_done_with_a_malformed_checklist_is_rejected():
    decision = done(checklist_text="{work_complete: true")
    assert decision.exit_code == 1
    assert decision.error == (
        "REJECTED: --checklist must be valid JSON. Example: '{\"work_complete\":true}'"
    )


def test_javascript_does_not_parse_nan_so_neither_do_we():
    assert done(checklist_text='{"work_complete": NaN}').error == REJECT_BAD_JSON


@pytest.mark.parametrize(
    "checklist",
    ["{}", '{"work_complete":false}', '{"work_complete":0}', '{"work_complete":""}', "[1]", "7"],
)
def test_done_without_a_truthy_work_complete_is_rejected(checklist):
    decision = done(checklist_text=checklist)
    assert decision.exit_code == 1
    assert decision.error == (
        "REJECTED: checklist.work_complete must be true. You are asserting all assigned work "
        "is done. Do NOT call done until all work is complete."
    )


def test_work_complete_is_judged_by_javascript_truthiness():
    assert done(checklist_text='{"work_complete":"yes"}').accepted
    assert done(checklist_text='{"work_complete":[]}').accepted


@pytest.mark.parametrize(
    ("field", "words"), [("tests_passed", "tests passed"), ("pushed", "pushed")]
)
def test_a_false_checklist_field_is_rejected_and_named(field, words):
    decision = done(checklist_text=json.dumps({"work_complete": True, field: False}))
    assert decision.exit_code == 1
    assert decision.error == (
        f"REJECTED: checklist.{field} is false. Do not call done until all required checks "
        f"pass. Fix the failing {words} before calling done."
    )


def test_only_an_exact_false_rejects_an_optional_field():
    assert done(checklist_text='{"work_complete":true,"tests_passed":0}').accepted
    assert done(checklist_text='{"work_complete":true,"pushed":null}').accepted


def test_done_too_soon_is_rejected_with_the_runtime_in_seconds():
    decision = done(entry=entry(spawnedAt=spawned(42_500)))
    assert decision.exit_code == 1
    assert decision.error == (
        "REJECTED: Session ran for only 43s -- suspiciously short for this task scope. If work "
        'is genuinely complete, re-run with --force-done --reason "explanation".'
    )
    assert decision.completion is not None  # the payload is built before this guard


def test_the_minimum_runtime_is_two_minutes_for_tasks_longer_than_ten_minutes():
    assert done(entry=entry(spawnedAt=spawned(90_000), timeoutSeconds=601)).exit_code == 1
    assert done(entry=entry(spawnedAt=spawned(90_000), timeoutSeconds=600)).accepted
    assert done(entry=entry(spawnedAt=spawned(90_000), timeout=1200)).exit_code == 1
    assert done_min_runtime_ms({}) == 60_000


def test_the_caller_may_set_the_minimum_runtime():
    assert done(entry=entry(spawnedAt=spawned(90_000)), min_runtime_ms=120_000).exit_code == 1


def test_force_done_without_a_reason_is_rejected():
    for reason in (None, "", "   "):
        decision = done(entry=entry(spawnedAt=spawned(10_000)), force=True, reason=reason)
        assert decision.error == (
            "REJECTED: --force-done requires --reason explaining why short runtime is valid."
        )


def test_force_done_with_a_reason_is_accepted_and_audited():
    decision = done(entry=entry(spawnedAt=spawned(10_000)), force=True, reason="one-line fix")
    assert decision.accepted and decision.forced
    assert decision.reason == "one-line fix"
    assert decision.warnings == (
        "warn: force-done used for label=ticket-42 after 10s, reason=one-line fix",
    )


def test_an_unparseable_spawn_time_skips_the_runtime_guard():
    assert done(entry=entry(spawnedAt="not a time")).accepted


def test_a_task_that_used_git_needs_a_sha():
    decision = done(entry=entry(taskPrompt="Fix it and git push"))
    assert decision.exit_code == 1
    assert decision.error == (
        "REJECTED: Task involves git commits but --sha was not provided. Pass --sha with the "
        "actual HEAD SHA of your pushed branch."
    )
    assert done(task_used_git=True).error == REJECT_NO_SHA
    assert done(entry=entry(taskPrompt="Fix it and git push"), task_used_git=False).accepted


def test_a_label_without_a_stored_prompt_skips_the_git_gate_with_a_warning():
    decision = done(entry=entry(taskPrompt=None))
    assert decision.accepted
    assert (
        "warn: taskPrompt not stored for label=ticket-42 (enqueued before guard), "
        "skipping git-SHA check"
    ) in decision.warnings


def test_a_sha_that_is_not_hex_is_rejected():
    decision = done(sha="HEAD~1", sha_exists=True)
    assert decision.error == (
        'REJECTED: --sha "HEAD~1" is not a valid git SHA (must be 7-40 hex characters). '
        "Pass the actual commit SHA."
    )
    assert done(sha="abc12", sha_exists=True).exit_code == 1
    assert done(sha="a" * 41, sha_exists=True).exit_code == 1
    assert done(sha="abc1234\n", sha_exists=True).exit_code == 1


def test_a_sha_missing_from_the_repository_is_rejected():
    decision = done(sha="abc1234", sha_exists=False)
    assert decision.error == (
        "REJECTED: SHA abc1234 not found in local git. Push your commits before calling done."
    )
    assert done(sha="abc1234", sha_exists=None).error == decision.error


def test_a_sha_that_exists_satisfies_the_git_gate():
    decision = done(entry=entry(taskPrompt="git push it"), sha="ABC1234", sha_exists=True)
    assert decision.accepted


def test_a_session_with_two_messages_or_fewer_is_rejected():
    decision = done(activity={"messageCount": 2})
    assert decision.error == (
        "REJECTED: Session has only 2 messages -- likely did not complete the assigned work. "
        "Use --force-done --reason if work is genuinely complete, or --skip-activity-check to "
        "bypass this check."
    )
    assert done(activity={"messages": [{}, {}]}).error.startswith("REJECTED: Session has only 2")
    assert done(activity={"messageCount": 0, "messages": [1, 2, 3]}).exit_code == 1
    assert done(activity={"messageCount": 3}).accepted


def test_the_activity_check_fails_open_when_the_gateway_does_not_answer():
    assert done(activity=None).accepted
    decision = done(activity=None, activity_error="connect ECONNREFUSED")
    assert decision.accepted
    assert decision.warnings == (
        "warn: session activity check unavailable for label=ticket-42: connect ECONNREFUSED "
        "-- skipping check",
    )
    assert done(activity={"unexpected": True}).accepted


def test_the_activity_check_is_skipped_on_request_or_by_force_done():
    assert done(activity={"messageCount": 1}, skip_activity_check=True).accepted
    decision = done(activity={"messageCount": 1}, force=True, reason="trivial")
    assert decision.accepted and decision.forced
    assert done(entry=entry(sessionKey=None), activity={"messageCount": 1}).accepted


def test_the_guards_run_in_the_spec_order():
    everything_wrong = {
        "entry": entry(spawnedAt=spawned(1000), taskPrompt="git push"),
        "sha": "zzz",
        "activity": {"messageCount": 0},
    }
    assert done(**everything_wrong, checklist_text="[").error == REJECT_BAD_JSON
    assert done(**everything_wrong).error.startswith("REJECTED: Session ran for only 1s")
    quick = {**everything_wrong, "force": True, "reason": "ok"}
    assert done(**quick).error.startswith('REJECTED: --sha "zzz"')


def test_an_accepted_done_carries_the_completion_and_the_output_message():
    decision = done()
    assert decision.accepted and decision.exit_code == 0 and not decision.forced
    assert decision.checklist == {"work_complete": True}
    assert decision.summary == "Fixed the typo so the README reads correctly."
    assert decision.completion["recordedAt"] == "2023-11-14T22:13:20.000Z"
    assert done_output("ticket-42", decision) == {
        "ok": True,
        "label": "ticket-42",
        "status": "done",
        "summary": decision.summary,
        "completion": decision.completion,
        "message": "Label marked done via agent signal.",
    }


def test_done_for_an_unknown_label_skips_the_label_guards_and_warns():
    decision = done(
        entry=None, label="stray", checklist_text=FULL_CHECKLIST, activity={"messageCount": 0}
    )
    assert decision.accepted and not decision.known
    assert decision.message == "Label not previously registered; marked done."
    assert decision.warnings == ('warn: no session found for label "stray" -- registering as done',)


def test_done_for_an_unknown_label_still_checks_the_sha():
    assert done(entry=None, sha="abc1234", sha_exists=False).exit_code == 1


def test_done_without_a_summary_uses_the_default_summary():
    decision = done(summary=None, checklist_text=FULL_CHECKLIST, sha=SHA, sha_exists=True)
    assert decision.completion["debug"]["rawSummary"] == "completed (agent signal)"
    assert decision.summary == "Work complete. Tests passed. Pushed deadbee."


# §31.8 the completion payload


def test_the_completion_payload_synthesizes_from_checklist_and_sha_for_a_generic_summary():
    payload = completion_payload(
        summary="completed (agent signal)",
        checklist=json.loads(FULL_CHECKLIST),
        sha=SHA,
        now_ms=NOW,
    )
    assert payload == {
        "version": 2,
        "recordedAt": "2023-11-14T22:13:20.000Z",
        "summary_human": "Work complete. Tests passed. Pushed deadbee.",
        "summary": "Work complete. Tests passed. Pushed deadbee.",
        "details_technical": {
            "checklist": {"work_complete": True, "tests_passed": True, "pushed": True},
            "sha": SHA,
            "sha_short": "deadbee",
            "raw_summary": "completed (agent signal)",
        },
        "deliveryText": "Work complete. Tests passed. Pushed deadbee.",
        "prose": None,
        "checklist": {"work_complete": True, "tests_passed": True, "pushed": True},
        "sha": SHA,
        "debug": {
            "rawSummary": "completed (agent signal)",
            "normalizedSummary": None,
            "synthesizedReply": "Work complete. Tests passed. Pushed deadbee.",
            "deliverySource": "technical-synthesis",
        },
    }


def test_a_human_summary_is_kept_and_no_raw_summary_is_repeated():
    text = "Rebuilt the nightly report so the totals match the invoices."
    payload = completion_payload(
        summary=text, checklist={"work_complete": True}, sha=None, now_ms=NOW
    )
    assert payload["summary_human"] == payload["summary"] == payload["prose"] == text
    assert payload["deliveryText"] == text
    assert payload["details_technical"] == {"checklist": {"work_complete": True}}
    assert payload["debug"]["deliverySource"] == "summary_human"
    assert payload["debug"]["synthesizedReply"] is None


def test_a_350_character_summary_is_kept_whole():
    text = ("The importer now skips empty rows and reports them at the end, " * 6)[:349] + "."
    assert len(text) == 350
    payload = completion_payload(summary=text, checklist={}, sha=None, now_ms=NOW)
    assert payload["summary"] == text


def test_work_complete_alone_synthesizes_nothing_and_the_raw_summary_remains():
    payload = completion_payload(
        summary="done", checklist={"work_complete": True}, sha=None, now_ms=NOW
    )
    assert payload["summary_human"] is None
    assert payload["summary"] == "done"
    assert payload["deliveryText"] is None
    assert payload["debug"]["deliverySource"] == "none"


def test_nothing_at_all_gives_null_details():
    payload = completion_payload(summary=None, checklist=None, sha=None, now_ms=NOW)
    assert payload["details_technical"] is None
    assert payload["summary"] is None and payload["checklist"] is None


@pytest.mark.parametrize(
    ("checklist", "sha", "expected"),
    [
        ({"work_complete": True, "pushed": True}, None, "Work complete. Changes pushed."),
        ({"work_complete": True}, "abcdef0123", "Work complete. Commit abcdef0."),
        (
            {"work_complete": True, "lint_clean": True, "docs_updated": True, "a": 1, "b_c": True},
            None,
            "Work complete. Checks: lint clean, docs updated, b c.",
        ),
        ({"work_complete": True}, "release-7", "Work complete. Commit release-7."),
    ],
)
def test_the_synthesis_sentences(checklist, sha, expected):
    assert synthesize_completion_reply(checklist, sha) == expected


# §31.9 normalization: what counts as nothing


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_empty_text_humanizes_to_nothing(text):
    assert humanize(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "completed",
        "Completed (agent signal)",
        "done",
        "Done.",
        "OK!",
        "okay",
        "success",
        "successful",
        "complete",
        "all set",
        "none",
        "N/A.",
        "na",
        "hi",
        "Thanks!",
        "thank you",
        "yep",
        "k",
        "kk",
        "roger",
        "copy that",
    ],
)
def test_generic_and_trivial_text_is_rejected(text):
    assert humanize(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "Auto-resolved: session went idle without calling done.",
        "Auto-resolved as interrupted: session idle 12min",
        "Auto-resolved as spawn-failure: whatever",
        'prefix "message": "Label marked done via agent signal." suffix',
        'something "status" : "done" here',
        "Label marked done via agent signal.",
        "session not found in gateway store",
        "Session not found in sessions store.",
        "session never found",
        "session never found -- spawn likely failed",
        "The delivery watcher stopped before the task reached a terminal state.",
        "session went idle without calling done",
        "Session went idle without calling done. Work may be incomplete. (idle 12min)",
        '{"ok": true, "label": "x"',
        '[{"stdout": "", "status": "running"',
    ],
)
def test_internal_transport_noise_is_rejected(text):
    assert humanize(text) is None


def test_a_noise_phrase_inside_a_real_report_is_not_noise():
    text = "The session went idle without calling done, so I restarted it and it finished."
    assert humanize(text) == text


# §31.9 normalization: embedded JSON


def test_json_text_yields_its_first_meaningful_string_in_key_order():
    text = json.dumps({"summary": "Second choice.", "deliveryText": "Shipped the fix."})
    assert humanize(text) == "Shipped the fix."


def test_generic_strings_inside_json_are_skipped():
    text = json.dumps({"ok": True, "deliveryText": "done", "summary": "Rotated the keys."})
    assert humanize(text) == "Rotated the keys."


def test_nested_result_keys_come_after_the_preferred_keys():
    text = json.dumps({"result": {"text": "Nested answer."}, "note": "Other key."})
    assert humanize(text) == "Nested answer."
    assert humanize(json.dumps({"note": "Any other key works too."})) == (
        "Any other key works too."
    )


def test_the_last_line_that_starts_with_a_brace_is_parsed():
    text = 'All good, here is the result:\n{"summary": "Migrated 3 tables."}'
    assert humanize(text) == "Migrated 3 tables."


def test_the_text_from_the_first_brace_is_parsed():
    text = 'Result: {"message": "Renewed the certificate."}'
    assert humanize(text) == "Renewed the certificate."


def test_arrays_are_searched_only_through_their_first_six_items():
    items = ["ok"] * 6 + ["Too far down."]
    assert humanize(json.dumps({"content": items})) is None


def test_json_is_searched_only_four_levels_deep():
    deep = {"a": {"b": {"c": {"d": "Four deep."}}}}
    assert humanize(json.dumps(deep)) == "Four deep."
    assert humanize(json.dumps({"result": deep})) is None


def test_a_done_payload_with_nothing_meaningful_is_nothing():
    text = json.dumps({"ok": True, "status": "done", "message": DONE_MESSAGE_KNOWN})
    assert humanize(text) is None


# §31.9 normalization: cleanup


def test_markdown_links_become_their_text():
    assert humanize("Read [the release notes](https://x.test/notes) first.") == (
        "Read the release notes first."
    )


def test_inline_code_bold_heading_and_quote_markers_are_removed():
    assert humanize("# Result\n> **All** green") == "Result All green"
    assert humanize("Ran it with `make` twice.") == "Ran it with make twice."


def test_ansi_colors_are_removed():
    assert humanize("\x1b[32mAll green\x1b[0m again") == "All green again"


def test_fences_separator_rows_bracket_lines_and_stack_frames_are_dropped():
    text = "Deployed it.\n```\n---\n]}\n    at foo (bar.js:1:2)\n```"
    assert humanize(text) == "Deployed it."


def test_whitespace_is_collapsed():
    assert humanize("Moved   the\tfiles\n\nover here.") == "Moved the files over here."


# §31.9 normalization: structured text


def test_a_list_becomes_heading_context_and_three_highlights():
    text = (
        "Weekly cleanup finished\n"
        "Removed stale branches across repos\n"
        "- pruned 14 branches\n"
        "- archived 2 repos https://git.test/archived\n"
        "* closed 5 issues\n"
        "1. fourth item is not shown"
    )
    assert humanize(text) == (
        "Weekly cleanup finished. Removed stale branches across repos. "
        "Highlights: pruned 14 branches; archived 2 repos; closed 5 issues."
    )


def test_highlights_are_cut_at_110_characters_and_context_at_180():
    long_item = "- " + "word " * 40
    long_context = "context " * 40
    text = f"Heading\n{long_context}\n{long_item}\n{long_item}"
    result = humanize(text)
    highlight = result.split("Highlights: ")[1].split("; ")[0]
    assert len(highlight) <= 110 and highlight.endswith("…")
    context = result.split(". ")[1]
    assert len(context) <= 181


def test_structured_text_is_at_most_700_characters():
    text = "\n".join(f"Heading line {n} " + "x" * 300 for n in range(3)) + "\n- a\n- b"
    assert len(humanize(text)) <= 700


def test_four_lines_without_items_become_one_sentence_of_at_most_260_characters():
    assert humanize("alpha\nbeta\ngamma\ndelta\nepsilon") == "alpha beta gamma delta."
    long = "\n".join(["y" * 100] * 4)
    assert len(humanize(long)) <= 261


def test_a_pipe_line_makes_text_structured():
    assert humanize("Status | ok").endswith(".")


def test_the_deal_scanner_report_has_its_own_summary():
    text = (
        "🔫 Deal Scanner report\n"
        "Baseline: median $1,060 over 40 listings\n"
        "#1 Glock | +32% — $1,400 (6 bids, 2h)\n"
        "#2 | +12% - $980 (1 bid, 5h)\n"
        "#3 something unparseable\n"
        "#4 | +1% - $1 (x)"
    )
    assert humanize(text) == (
        "Deal Scanner report. Baseline: median $1,060 over 40 listings. Top deals: "
        "#1 +32% at $1,400 (6 bids, 2h); #2 +12% at $980 (1 bid, 5h); #3 something unparseable."
    )


# §31.9 normalization: prose


def test_short_prose_is_kept_whole():
    text = "One. Two. Three. Four. Five."
    assert humanize(text) == text


def test_long_prose_keeps_the_leading_five_sentences():
    text = "One. Two. Three. Four. Five. Six."
    assert humanize(text) == "One. Two. Three. Four. Five."


def test_prose_over_700_characters_keeps_whole_sentences_that_fit():
    sentence = "This sentence is about eighty characters long, give or take a few of them here."
    result = humanize(" ".join([sentence] * 9))
    assert result == " ".join([sentence] * 5)
    single = "word " * 200
    assert len(humanize(single)) == 700


def test_a_dot_inside_a_token_does_not_end_a_sentence():
    text = "Took 0.00s on v0.6.6. See example.com/a.html. Two. Three. Four. Five. Six."
    assert humanize(text) == "Took 0.00s on v0.6.6. See example.com/a.html. Two. Three. Four."


# §31.9 normalization: technical rewrite


def test_a_commit_subject_becomes_a_plain_english_lead():
    assert humanize("fix(watcher): add retry guard; update timeout handling") == (
        "Added retry guard and updated timeout handling. That should make the workflow more "
        "reliable. Future runs should be less likely to hit the same problem."
    )


def test_technical_text_about_completion_messages_gets_the_fixed_lead():
    assert humanize("feat: summary_human first in completion delivery; tweak payload") == (
        COMPLETION_LEAD_SCAN
    )
    assert humanize("refactor(completion): keep structured summary in delivery message") == (
        COMPLETION_LEAD_READ
    )
    assert humanize("fix(delivery): dedupe completion messages; one summary") == (
        COMPLETION_LEAD_DEDUPE
    )
    assert COMPLETION_LEAD_SCAN.split(". ")[1] == (
        "That makes the result easier to scan without hiding the useful detail"
    )


def test_test_only_added_and_other_themes_pick_their_follow_up():
    assert humanize("test(cli): add coverage for --json flag; lint").endswith(FOLLOW_UPS["tests"])
    assert humanize("feat(cli): add --dry-run flag to jobs_add()").endswith(FOLLOW_UPS["added"])
    assert humanize("chore: bump version in package.json; rebuild").endswith(FOLLOW_UPS["other"])


def test_human_cues_outweigh_a_few_technical_words():
    text = "Users can now export reports, because the config page works again."
    assert humanize(text) == text


def test_a_technical_rewrite_gets_a_technical_details_footer_in_the_delivery_text():
    text = delivery_text(
        "fix(watcher): add retry guard; update timeout handling",
        checklist=json.loads(FULL_CHECKLIST),
        sha=SHA,
    )
    assert text.endswith(
        "\n\nTechnical details:\n- fix(watcher): add retry guard; update timeout handling"
        "\n- Checks: tests passed; pushed deadbee."
    )
    assert delivery_text("Cleaned up the garage.") == "Cleaned up the garage."


def test_the_checks_line_lists_what_the_checklist_proves():
    assert checks_line({"work_complete": True, "smoke_ok": True}, "abcdef12") == (
        "Checks: commit abcdef1; checks: smoke ok."
    )
    assert checks_line({"work_complete": True}, None) is None


# §31.9 delivery resolution


def test_delivery_prefers_the_completion_over_the_last_reply():
    completion = completion_payload(
        summary="Renamed the buckets.", checklist={"work_complete": True}, sha=None, now_ms=NOW
    )
    assert resolve_delivery_text(
        completion=completion, last_reply="Intermediate chatter here.", fallback_summary=None
    ) == ("Renamed the buckets.")


def test_delivery_falls_back_through_reply_synthesis_and_fallback_summary():
    assert (
        resolve_delivery_text(
            completion={"summary": "done"}, last_reply="Finished the audit.", fallback_summary=None
        )
        == "Finished the audit."
    )
    assert (
        resolve_delivery_text(
            completion={"checklist": {"work_complete": True, "tests_passed": True}},
            last_reply="ok",
            fallback_summary="Fallback text.",
        )
        == "Work complete. Tests passed."
    )
    assert (
        resolve_delivery_text(completion=None, last_reply=None, fallback_summary="Ran it.")
        == "Ran it."
    )


def test_only_noise_delivers_a_fixed_explanation():
    idle = "Auto-resolved: session went idle without calling done. Work may be incomplete. (x)"
    assert resolve_delivery_text(completion=None, last_reply=None, fallback_summary=idle) == (
        NOISE_IDLE
    )
    assert resolve_delivery_text(
        completion={"summary": "session never found -- spawn likely failed"},
        last_reply=None,
        fallback_summary=None,
    ) == (NOISE_NOT_FOUND)
    assert resolve_delivery_text(
        completion=None, last_reply=DONE_MESSAGE_KNOWN, fallback_summary=None
    ) == (NOISE_TRANSPORT)


def test_nothing_to_say_suppresses_delivery():
    assert resolve_delivery_text(completion=None, last_reply="Done.", fallback_summary="ok") is None


# §31.11 overload detection and recovery


@pytest.mark.parametrize(
    "text",
    [
        "HTTP 529",
        "FailoverError (529): upstream",
        "failover error",
        "FailoverError",
        "model overloaded",
        "Overload",
        "temporarily overloaded",
        "Service is currently overloaded",
    ],
)
def test_overload_errors_are_recognized(text):
    assert is_overload_error(text)


@pytest.mark.parametrize(
    "text", ["rate limit exceeded", "429 Too Many Requests", "timeout", "", None]
)
def test_other_errors_are_not_overload(text):
    assert not is_overload_error(text)


def test_the_watcher_also_counts_rate_limits():
    assert is_overload_error("Rate limit hit", include_rate_limits=True)
    assert is_overload_error("too many requests", include_rate_limits=True)


def test_529_inside_a_longer_number_or_id_is_not_an_overload():
    assert not is_overload_error("session agent:main:subagent:5291-aa not found on port 15290")


def overload(**overrides):
    arguments = {
        "error_text": "FailoverError (529): overloaded",
        "error_at_ms": NOW - 10 * MINUTE,
        "now_ms": NOW,
        "retries_so_far": 0,
        "session_reusable": True,
    }
    arguments.update(overrides)
    return recovery_decision(**arguments)


def test_recovery_reuses_the_session_first_then_a_fresh_one():
    assert overload() == "retry-reuse"
    assert overload(session_reusable=False) == "retry-fresh"


def test_recovery_leaves_errors_alone_during_the_watchers_five_minute_grace():
    assert overload(error_at_ms=NOW - 5 * MINUTE + 1) is None
    assert overload(error_at_ms=NOW - 5 * MINUTE) == "retry-reuse"
    assert recovery_skip_reason(error_at_ms=NOW - 90_000, now_ms=NOW, retries_so_far=0) == (
        "updated 90s ago (watcher may be handling)"
    )


def test_recovery_ignores_errors_older_than_an_hour():
    assert overload(error_at_ms=NOW - 60 * MINUTE) == "retry-reuse"
    assert overload(error_at_ms=NOW - 60 * MINUTE - 1) is None
    assert overload(error_at_ms=None) is None
    assert recovery_skip_reason(error_at_ms=NOW - 95 * MINUTE, now_ms=NOW, retries_so_far=0) == (
        "error too old (95min)"
    )


def test_recovery_stops_after_three_retries():
    assert overload(retries_so_far=2) == "retry-reuse"
    assert overload(retries_so_far=3) is None
    assert recovery_skip_reason(error_at_ms=NOW - 10 * MINUTE, now_ms=NOW, retries_so_far=3) == (
        "max retries exhausted (3/3)"
    )


def test_recovery_only_retries_overload_errors():
    assert overload(error_text="spawn-failure: auth timeout") is None
    assert overload(error_text=None) is None


def test_the_recovery_notice_names_the_attempt_and_method():
    assert recovery_notice("t", 2, "send") == (
        "🌶️ Dispatch 529 recovery: [t] retried (2/3) via send"
    )
    assert recovery_notice("t", 3, None) == "🌶️ Dispatch 529 recovery: [t] retry FAILED (3/3)"


def test_the_newest_lane_task_error_for_the_session_is_found_in_the_log():
    key = "agent:main:subagent:abc"
    log = "\n".join(
        [
            f'2026-03-01T10:00:00.000Z lane task error {key} error="old"',
            f'2026-03-01T10:05:00.123Z lane task error {key} error="529 overloaded_error"',
            'lane task error agent:main:subagent:other error="not ours"',
            f"lane task error {key} without an error field",
        ]
    )
    assert find_lane_task_error(log, key) == {
        "error": "529 overloaded_error",
        "timestamp": "2026-03-01T10:05:00.123Z",
    }
    assert find_lane_task_error(log, "agent:main:subagent:zzz") is None
    assert overload_error_text("529 overloaded_error") == (
        "FailoverError (529): 529 overloaded_error"
    )


# §31.12 lifecycle hooks


def test_the_loki_payload_is_one_stream_with_the_event_as_a_json_line():
    fields = started_fields(
        label="t", job_id="j", run_id="r", agent="main", mode="fresh", session_key=""
    )
    payload = loki_payload("dispatch.started", fields, host="box", now_ns=NOW * 1_000_000)
    assert payload == {
        "streams": [
            {
                "stream": {"service_name": "dispatch", "host": "box", "event": "dispatch.started"},
                "values": [
                    [
                        "1700000000000000000",
                        '{"event":"dispatch.started","host":"box","label":"t","job_id":"j",'
                        '"run_id":"r","agent":"main","mode":"fresh","session_key":null}',
                    ]
                ],
            }
        ]
    }


def test_the_webhook_payload_carries_the_time_in_epoch_milliseconds():
    fields = finished_fields(label="t", run_id="r", agent=None, duration_ms=0, session_key="k")
    expected = {
        "event": "dispatch.finished",
        "ts": NOW,
        "host": "box",
        "label": "t",
        "job_id": "r",
        "run_id": "r",
        "agent": "main",
        "status": "ok",
        "duration_ms": None,
        "error": None,
        "session_key": "k",
    }
    assert webhook_payload("dispatch.finished", fields, host="box", now_ms=NOW) == expected
    iso = "2023-11-14T22:13:20.000Z"
    assert webhook_payload("dispatch.finished", fields, host="box", now_iso=iso) == expected


def test_the_stuck_event_lists_each_run():
    run = {"run_id": "k", "job_name": "t", "started_at": "2026-01-01T00:00:00Z", "age_s": 900}
    assert stuck_fields([run]) == {"stuck_count": 1, "runs": [run]}


def test_the_finished_notice_needs_a_text():
    assert finished_notice_body("t", "Shipped.") == "✅ [t] done\n\nShipped."
    assert finished_notice_body("t", None) is None


# §31.5 / §31.6 auto-resolution


@pytest.mark.parametrize(
    ("timeout_s", "idle", "ceiling"),
    [
        (300, 600_000, 900_000),
        (None, 600_000, 900_000),
        (900, 900_000, 1_350_000),
        (3600, 3_600_000, 5_400_000),
    ],
)
def test_idle_threshold_and_hard_ceiling(timeout_s, idle, ceiling):
    assert idle_threshold_ms(timeout_s) == idle
    assert hard_ceiling_ms(timeout_s) == ceiling


def test_stuck_uses_the_larger_of_the_timeout_and_the_threshold_minutes():
    assert stuck_threshold_ms(300, 15) == 900_000
    assert stuck_threshold_ms(3600, 15) == 3_600_000
    assert stuck_threshold_ms(None, 0.5) == 30_000


def test_no_auto_resolution_during_the_startup_grace_or_with_a_fresh_ping():
    threshold = auto_resolve_threshold_ms
    assert threshold(age_ms=4 * MINUTE, timeout_s=300, last_ping_age_ms=None) is None
    assert threshold(age_ms=10 * MINUTE, timeout_s=300, last_ping_age_ms=MINUTE) is None
    assert threshold(age_ms=10 * MINUTE, timeout_s=300, last_ping_age_ms=4 * MINUTE) == 600_000
    assert threshold(age_ms=10 * MINUTE, timeout_s=300, last_ping_age_ms=None) == 600_000
    assert threshold(age_ms=15 * MINUTE, timeout_s=300, last_ping_age_ms=MINUTE) == 120_000


def check(**overrides):
    arguments = {
        "store_available": True,
        "key_present": True,
        "updated_at": NOW - 11 * MINUTE,
        "now_ms": NOW,
        "threshold_ms": 10 * MINUTE,
        "age_ms": 30 * MINUTE,
        "listed": False,
    }
    arguments.update(overrides)
    return session_done(**arguments)


def test_a_session_idle_past_the_threshold_is_done():
    assert check() == (True, "session idle 11min in sessions store (completed)")
    assert check(updated_at=iso_from_ms(NOW - 11 * MINUTE))[0]
    assert check(updated_at=(NOW - 11 * MINUTE) / 1000)[0]


def test_a_session_with_recent_activity_is_not_done():
    assert check(updated_at=NOW - 9 * MINUTE) == (
        False,
        "session has recent activity in sessions store",
    )


def test_an_unavailable_store_never_resolves():
    assert check(store_available=False) == (False, "sessions store unavailable for state check")


def test_a_missing_key_resolves_only_when_old_and_absent_from_sessions_list():
    missing = {"key_present": False, "updated_at": None}
    assert check(**missing, age_ms=4 * MINUTE)[0] is False
    assert check(**missing, listed=True)[0] is False
    assert check(**missing, listed=None) == (
        False,
        "sessions store miss + gateway API unreachable -- deferring",
    )
    assert check(**missing) == (True, "session not found in sessions store or gateway API")
    assert check(**missing, age_ms=None)[0] is True


def test_an_updated_at_that_is_not_a_time_counts_from_the_spawn():
    assert check(updated_at="soon", age_ms=30 * MINUTE)[0] is True
    assert check(updated_at="soon", age_ms=6 * MINUTE)[0] is False


def test_resolutions_are_interrupted_or_a_529_error_never_done():
    assert resolution_fields("session idle 11min in sessions store (completed)") == {
        "status": "interrupted",
        "summary": "Auto-resolved: session went idle without calling done. Work may be "
        "incomplete. (session idle 11min in sessions store (completed))",
        "syncAction": "auto-resolved as interrupted: session idle 11min in sessions store "
        "(completed)",
    }
    overloaded = resolution_fields("x", overload_error="529 overloaded", synced=True)
    assert overloaded["status"] == "error"
    assert overloaded["error"] == "FailoverError (529): 529 overloaded"
    assert overloaded["summary"] == (
        "Synced as error: 529/overload error detected: FailoverError (529): 529 overloaded"
    )
    assert overloaded["syncAction"].startswith("auto-resolved as 529 error: ")


def test_a_session_that_never_showed_activity_is_a_spawn_failure():
    arguments = {
        "age_ms": 6 * MINUTE,
        "has_last_ping": False,
        "in_store": True,
        "has_activity_signal": False,
        "lane_error": None,
        "history_count": 0,
        "updated_at": NOW - 30 * MINUTE,
        "spawned_at_ms": NOW - 30 * MINUTE,
    }
    failure = bootstrap_failure
    assert failure(**arguments) == (
        "spawn-failure: session entered sessions store but never wrote transcript/history"
    )
    assert failure(**{**arguments, "lane_error": "auth timeout"}) == "spawn-failure: auth timeout"
    assert failure(**{**arguments, "history_count": None}) == (
        "spawn-failure: session entered sessions store but never showed any activity"
    )
    assert failure(**{**arguments, "age_ms": 11 * MINUTE}) is None
    assert failure(**{**arguments, "has_last_ping": True}) is None
    assert failure(**{**arguments, "has_activity_signal": True}) is None
    fields = resolution_fields("", spawn_failure="spawn-failure: auth timeout")
    assert fields["summary"] == "Auto-resolved as spawn failure: spawn-failure: auth timeout"
    assert fields["error"] == "spawn-failure: auth timeout"


def test_humanizing_a_huge_dotted_token_stays_fast():
    started = time.monotonic()
    humanize("a." * 500_000)
    assert time.monotonic() - started < 5


# --- the last assistant reply (spec §31.6 `result`) ------------------------------------------


def test_the_last_reply_is_the_newest_assistant_message_with_text():
    from ocsched.commands.dispatch_gateway import last_assistant_reply

    def said(content):
        return {"role": "assistant", "content": content}

    assert last_assistant_reply([said("Done."), {"role": "user", "content": "ok"}]) == "Done."
    assert last_assistant_reply([said("Done."), said(""), said(None)]) == "Done."
    parts = [said([{"type": "text", "text": "A"}, {"text": "B"}]), said([{"type": "toolCall"}])]
    assert last_assistant_reply(parts) == "AB"
    assert last_assistant_reply([said({"a": 1})]) == '{"a":1}'  # JSON.stringify's spacing
    assert last_assistant_reply([said(""), "junk"]) is None


# --- ledger times and imported rows (import-labels) -------------------------------------------


def test_ledger_times_become_to_iso_string_text_or_nothing():
    from ocsched.domain.dispatch_rules.values import ledger_time

    assert ledger_time("2026-01-01T01:00:00+01:00") == "2026-01-01T00:00:00.000Z"
    assert ledger_time(1767225600000) == "2026-01-01T00:00:00.000Z"
    assert ledger_time("yesterday") is None
    assert ledger_time(10**30) is None
    assert ledger_time(True) is None


def test_an_imported_row_s_times_are_ones_the_daemon_can_compute_with():
    """An import made before the times were checked kept any text: the row falls back to
    the event's time, and a dispatch imported while running is followed (imported 2)."""
    from datetime import UTC, datetime

    from ocsched.domain.aggregate import EventMeta
    from ocsched.domain.label import Label
    from ocsched.projections import labels

    settings = {"imported": True, "status": "running", "spawned_at": "soon", "updated_at": "?"}
    meta = EventMeta(actor="tester", origin="import", correlation_id="c")
    moment = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    dispatch = Label(
        id="d1", label="old", session_key="k", settings=settings, meta=meta, timestamp=moment
    )
    (event,) = dispatch.collect_events()
    (upsert,) = labels.enqueued(event)
    row = upsert.row
    assert row["spawned_at"] == row["updated_at"] == "2026-12-05T08:00:00.000Z"
    assert (row["status"], row["imported"]) == ("running", labels.IMPORTED_RUNNING)
    assert dispatch.status == "running"
