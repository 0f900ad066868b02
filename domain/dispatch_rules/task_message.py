"""Spec §31.4: the message that starts a dispatched session (§31.4.2) and the
`ORIGIN_CHAT_ID:` prefix (step 6).
"""

from __future__ import annotations

import re

from .git_sha import task_requires_git_sha
from .values import shell_single_quote_escape

DEFAULT_GATEWAY_URL = "http://127.0.0.1:18789"
DEFAULT_DONE_COMMAND = "ocsched dispatch done"
DEFAULT_CHECKPOINT_COMMAND = "ocsched messages send"
CHECKLIST_EXAMPLE = '{"work_complete":true,"tests_passed":true,"pushed":true}'

SUBAGENT_CONTEXT = (
    "[Subagent Context] You are running as a subagent (depth 1/3). Results auto-announce to "
    "your requester; do not busy-poll for status."
)
_TOKEN_SNIPPET = (
    "GW_TOKEN=$(node -e \"process.stdout.write(JSON.parse(require('fs').readFileSync("
    "require('os').homedir()+'/.openclaw/openclaw.json','utf8')).gateway.auth.token)\")"
)
_UNSAFE_IN_JSON = re.compile(r"[\\'\"\n\r]")


def with_origin_chat_id(prompt: str, target: str | None) -> str:
    """§31.4 step 6: with a target and no `ORIGIN_CHAT_ID:` in the prompt, prefix
    `ORIGIN_CHAT_ID: <target>` and a blank line; otherwise the prompt unchanged."""
    if target and "ORIGIN_CHAT_ID:" not in prompt:
        return f"ORIGIN_CHAT_ID: {target}\n\n{prompt}"
    return prompt


def _json_safe(value: str | None) -> str:
    return _UNSAFE_IN_JSON.sub("", str(value or ""))


def task_message(
    *,
    label: str,
    prompt: str,
    target: str | None,
    channel: str | None,
    origin: str | None,
    gateway_url: str = DEFAULT_GATEWAY_URL,
    brand: str = "dispatch",
    done_command: str = DEFAULT_DONE_COMMAND,
    checkin: bool | None = None,
    checkpoint_command: str | None = DEFAULT_CHECKPOINT_COMMAND,
) -> str:
    """The message that starts a dispatched session (spec §31.4.2), lines joined by `\\n`.

    `prompt` is used literally (apply `with_origin_chat_id` first). `checkin` (default:
    whether there is a target) adds the CHECK_IN curl block; it needs a target.
    `done_command` is the program and subcommand the agent runs to signal completion.
    `checkpoint_command` is the post office's `messages send` the CHECKPOINT MESSAGING block
    tells the agent to run for mid-run status messages (None leaves the block out). `brand`
    is accepted for the CLI's convenience; the layout names no brand.
    """
    del brand  # the anchor's layout does not name the brand
    escaped_label = shell_single_quote_escape(label)
    lines = [SUBAGENT_CONTEXT, ""]

    if (target if checkin is None else checkin) and target:
        url = gateway_url.rstrip("/") + "/tools/invoke"
        body = (
            '{"tool":"message","args":{"action":"send",'
            f'"channel":"{_json_safe(channel or "telegram")}",'
            f'"target":"{_json_safe(target)}",'
            f'"message":"[{_json_safe(label)}] <your status here>"}},"sessionKey":"main"}}'
        )
        lines += [
            "---",
            "CHECK_IN: To report progress, use curl:",
            _TOKEN_SNIPPET,
            f"curl -s -X POST '{shell_single_quote_escape(url)}' "
            "-H 'Content-Type: application/json' "
            f"-H \"Authorization: Bearer $GW_TOKEN\" -d '{body}'",
            "Call this every ~5 minutes with a brief progress update.",
            "---",
            "",
        ]

    lines.append(f"[Subagent Task]: {prompt}")

    if checkpoint_command:
        notify = f"{checkpoint_command} --from '{escaped_label}' --to main --kind status --body"
        lines += [
            "",
            "---",
            "CHECKPOINT MESSAGING: You can send mid-run status updates using this command:",
            f'  {notify} "<message>"',
            "Call this at logical checkpoints: start of a major step, on conflict/error, "
            "before completing.",
            f'Example: {notify} "Starting step 2: running tests"',
            # (The anchor's wording: it sets no such variable either.)
            f"(Environment variable CHECKPOINT_NOTIFY_CMD is set to: {notify})",
            "---",
            "",
        ]

    not_done_yet = "Do NOT call done while planning, reading files, or mid-task."
    if task_requires_git_sha(prompt):
        not_done_yet += " If you have not yet pushed a commit, you are not done."
    lines += [
        "",
        "---",
        "COMPLETION SIGNAL -- READ CAREFULLY:",
        "",
        "Only call this command after ALL of the following are true:",
        "  1. All file edits are saved",
        "  2. All commits are pushed (git push completed successfully)",
        "  3. All API calls (e.g. GitHub comment replies) are done",
        "  4. You have verified the work is complete",
        "",
        "Call this as your ABSOLUTE FINAL action -- nothing else runs after this:",
        f"  {done_command} --label '{escaped_label}' "
        '--summary "<what you actually did>" '
        f"--checklist '{CHECKLIST_EXAMPLE}' "
        '[--sha "<git commit SHA if applicable>"]',
        "",
        "Checklist rules:",
        "  - work_complete MUST be true -- you are asserting you have finished ALL assigned work",
        "  - If tests failed or push failed, do NOT set tests_passed:true or pushed:true "
        "-- instead continue working",
        "  - Only include tests_passed/pushed if they apply to your task",
        "If your task involved git commits, --sha is required and must be the actual SHA of "
        "your pushed commit. The done command will reject invented or placeholder SHAs.",
        not_done_yet,
        "---",
        "",
        "---",
        "DELIVERY RULE: Do NOT use the message tool, sessions_send, or any direct messaging to "
        "send updates or results to Telegram or any chat. Do NOT reference chat IDs, user IDs, "
        "or delivery targets in your work.",
        "Your ONLY output channel is the done signal above. The scheduler handles delivery "
        "automatically.",
    ]
    if origin:
        lines.append(f"Note: This job will be delivered to origin channel: {origin}")
    lines.append("---")
    return "\n".join(lines)
