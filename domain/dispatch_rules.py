"""The rules of the `dispatch` sub-agent CLI (spec §31), as pure functions.

Nothing here reads the clock, the disk, git or the gateway: "now" and everything observed
outside (does a commit exist, what the gateway said about a session, the ledger entry) come
in as arguments, so `commands/dispatch.py` does the I/O and these functions decide.

* §31.4: the task message sent to a new session (`task_message`, `with_origin_chat_id`)
* §31.5 / §31.6: auto-resolution thresholds and the "session done" check
* §31.7: the guards of `done`, in order, with the anchor's messages (`check_done`)
* §31.8: the completion payload, version 2 (`completion_payload`)
* §31.9: completion-text normalization (`humanize`) and delivery resolution
* §31.11: overload (529) detection and the recovery policy
* §31.12: lifecycle hook payloads (Loki, webhook)
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

# ---------------------------------------------------------------------------------------
# Small shared helpers


def _js_round(value: float) -> int:
    """`Math.round`: halves go up (Python's `round` goes to the even neighbour)."""
    return math.floor(value + 0.5)


def _js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value: `[]` and `{}` are true, `""`, 0, null false."""
    if isinstance(value, (list, dict)):
        return True
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def _no_constant(name: str) -> Any:
    """JSON.parse knows no NaN or Infinity; Python's json would accept them."""
    raise ValueError(f"not JSON: {name}")


def _field(entry: dict[str, Any] | None, *names: str) -> Any:
    """The first of `names` present (not None) in a ledger entry; camelCase ledger keys
    (spec §31.2) and our snake_case read-model columns are both accepted."""
    if not entry:
        return None
    for name in names:
        value = entry.get(name)
        if value is not None:
            return value
    return None


def time_ms(value: Any) -> int | None:
    """A timestamp as epoch milliseconds: a number (seconds when < 1e12, else ms), an
    aware `datetime`, or ISO text (`…Z` or with an offset; no offset = UTC). None when it
    is none of these."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        return int(value * 1000 if value < 1e12 else value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def iso_from_ms(now_ms: int) -> str:
    """`Date#toISOString`: UTC, millisecond precision, `Z`."""
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shell_single_quote_escape(text: str) -> str:
    """The body of a single-quoted shell word: `'` becomes `'\\''`."""
    return str(text).replace("'", "'\\''")


# ---------------------------------------------------------------------------------------
# §31.4 The task message

DEFAULT_GATEWAY_URL = "http://127.0.0.1:18789"
DEFAULT_DONE_COMMAND = "ocsched dispatch done"
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
    checkpoint_command: str | None = None,
) -> str:
    """The message that starts a dispatched session (spec §31.4.2), lines joined by `\\n`.

    `prompt` is used literally (apply `with_origin_chat_id` first). `checkin` (default:
    whether there is a target) adds the CHECK_IN curl block; it needs a target.
    `done_command` is the program and subcommand the agent runs to signal completion.
    `checkpoint_command` (e.g. a post-office `messages send`) adds the CHECKPOINT MESSAGING
    block; ocsched has no post office, so by default the block is left out. `brand` is
    accepted for the CLI's convenience; the layout names no brand.
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


# ---------------------------------------------------------------------------------------
# §31.7 The git-SHA gate's prompt test

_GIT_COMMAND = re.compile(
    r"\bgit\s+(?:push|rebase|cherry-pick)\b|(?:^|\s)--force-with-lease\b|(?:^|\s)--force-push\b",
    re.IGNORECASE,
)
_NEGATIONS = (
    re.compile(r"\b(?:do\s+not|don't|dont|never)\s+(?:use|run|call|invoke)?\s*$", re.IGNORECASE),
    re.compile(r"\bavoid\s+(?:using\s+)?$", re.IGNORECASE),
    re.compile(r"\bwithout\s+(?:using\s+)?$", re.IGNORECASE),
)


def task_requires_git_sha(task_prompt: str | None) -> bool:
    """Whether a task prompt contains a real git command (`git push|rebase|cherry-pick`,
    word bounded, or `--force-with-lease` / `--force-push` at the start or after
    whitespace) that is not negated in the 40 characters before it ("do not use", "never",
    "avoid using", "without"). Bare words like "rebase" do not count."""
    if not isinstance(task_prompt, str) or not task_prompt:
        return False
    for match in _GIT_COMMAND.finditer(task_prompt):
        before = task_prompt[max(0, match.start() - 40) : match.start()]
        if not any(negation.search(before) for negation in _NEGATIONS):
            return True
    return False


# ---------------------------------------------------------------------------------------
# §31.7 `done`

DEFAULT_DONE_SUMMARY = "completed (agent signal)"
_SHA = re.compile(r"[0-9a-f]{7,40}", re.IGNORECASE)

REJECT_NO_CHECKLIST = (
    "REJECTED: --checklist is required. Pass --checklist with JSON object asserting completion "
    "status. Example: --checklist '{\"work_complete\":true}' work_complete MUST be true -- you "
    "are asserting all assigned work is finished. Do NOT call done while planning, reading "
    "files, or mid-task."
)
REJECT_BAD_JSON = "REJECTED: --checklist must be valid JSON. Example: '{\"work_complete\":true}'"
REJECT_NOT_COMPLETE = (
    "REJECTED: checklist.work_complete must be true. You are asserting all assigned work is "
    "done. Do NOT call done until all work is complete."
)
REJECT_FORCE_WITHOUT_REASON = (
    "REJECTED: --force-done requires --reason explaining why short runtime is valid."
)
REJECT_NO_SHA = (
    "REJECTED: Task involves git commits but --sha was not provided. Pass --sha with the "
    "actual HEAD SHA of your pushed branch."
)
DONE_MESSAGE_KNOWN = "Label marked done via agent signal."
DONE_MESSAGE_UNKNOWN = "Label not previously registered; marked done."


def reject_false_field(field: str) -> str:
    return (
        f"REJECTED: checklist.{field} is false. Do not call done until all required checks "
        f"pass. Fix the failing {field.replace('_', ' ', 1)} before calling done."
    )


def reject_too_short(elapsed_s: int) -> str:
    return (
        f"REJECTED: Session ran for only {elapsed_s}s -- suspiciously short for this task "
        'scope. If work is genuinely complete, re-run with --force-done --reason "explanation".'
    )


def reject_bad_sha(sha: str) -> str:
    return (
        f'REJECTED: --sha "{sha}" is not a valid git SHA (must be 7-40 hex characters). '
        "Pass the actual commit SHA."
    )


def reject_unknown_sha(sha: str) -> str:
    return f"REJECTED: SHA {sha} not found in local git. Push your commits before calling done."


def reject_few_messages(count: int) -> str:
    return (
        f"REJECTED: Session has only {count} messages -- likely did not complete the assigned "
        "work. Use --force-done --reason if work is genuinely complete, or "
        "--skip-activity-check to bypass this check."
    )


def done_min_runtime_ms(entry: dict[str, Any] | None) -> int:
    """§31.7 step 6: 120 s when the stored timeout (`timeout`, else `timeoutSeconds`, else
    300) exceeds 600 s, else 60 s."""
    raw = _field(entry, "timeout", "timeoutSeconds", "timeout_seconds")
    try:
        timeout = float(raw) if raw is not None and not isinstance(raw, bool) else 0.0
    except (TypeError, ValueError):
        timeout = 0.0
    if not math.isfinite(timeout) or timeout == 0:
        timeout = 300.0
    return 120_000 if timeout > 600 else 60_000


def _message_count(activity: Any) -> int | None:
    """`messageCount`, else `messages.length`, from a `GET /sessions/<key>` answer."""
    if not isinstance(activity, dict):
        return None
    count = activity.get("messageCount")
    if isinstance(count, (int, float)) and not isinstance(count, bool):
        return int(count)
    messages = activity.get("messages")
    if isinstance(messages, list):
        return len(messages)
    return None


class DoneDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What `done` decided. Rejected: `error` is the message for stderr (the CLI prefixes
    `[<brand>] `), `exit_code` 1, and the ledger must not change. Accepted: `exit_code` 0,
    `completion`/`summary` go to the ledger and the output, `message` is the output's."""

    accepted: bool
    exit_code: int
    error: str | None = None
    forced: bool = False
    reason: str | None = None
    checklist: dict[str, Any] | None = None
    completion: dict[str, Any] | None = None
    summary: str | None = None
    known: bool = False
    message: str | None = None
    warnings: tuple[str, ...] = ()


def check_done(
    *,
    entry: dict[str, Any] | None,
    summary: str | None,
    checklist_text: str | None,
    sha: str | None,
    force: bool,
    reason: str | None,
    now_ms: int,
    min_runtime_ms: int | None = None,
    task_used_git: bool | None = None,
    sha_exists: bool | None,
    activity: dict[str, Any] | None,
    skip_activity_check: bool = False,
    activity_error: str | None = None,
    label: str | None = None,
) -> DoneDecision:
    """The guards of `done` (spec §31.7), in order; the first that fails decides.

    `entry` is the label's ledger entry, None for an unknown label. `min_runtime_ms` and
    `task_used_git` default to what the entry says (`done_min_runtime_ms(entry)`,
    `task_requires_git_sha(taskPrompt)`). `sha_exists`: whether `--sha` names a commit in
    the repository of the current directory (None = could not tell, which rejects like
    the anchor's failed `git cat-file`). `activity`: the JSON of a 2xx
    `GET /sessions/<key>`, None when the gateway did not answer, answered non-2xx or
    timed out (the check then fails open); `activity_error` is that failure's text, for
    the warning.
    """
    name = label or _field(entry, "label") or ""
    warnings: list[str] = []

    def reject(message: str, **found: Any) -> DoneDecision:
        return DoneDecision(
            accepted=False, exit_code=1, error=message, warnings=tuple(warnings), **found
        )

    # 1-4: the checklist
    if not checklist_text:
        return reject(REJECT_NO_CHECKLIST)
    try:
        checklist = json.loads(checklist_text, parse_constant=_no_constant)
    except (TypeError, ValueError):
        return reject(REJECT_BAD_JSON)
    fields = checklist if isinstance(checklist, dict) else {}
    if not _js_truthy(fields.get("work_complete")):
        return reject(REJECT_NOT_COMPLETE)
    for field in ("tests_passed", "pushed"):
        if field in fields and fields[field] is False:
            return reject(reject_false_field(field), checklist=fields)

    # 5: the completion payload
    raw_summary = summary if isinstance(summary, str) and summary else DEFAULT_DONE_SUMMARY
    completion = completion_payload(summary=raw_summary, checklist=fields, sha=sha, now_ms=now_ms)
    built = {"checklist": fields, "completion": completion, "summary": completion["summary"]}
    known = entry is not None

    # 6: minimum runtime
    forced = bool(force)
    spawned_ms = time_ms(_field(entry, "spawnedAt", "spawned_at")) if known else None
    if spawned_ms is not None:
        threshold = min_runtime_ms if min_runtime_ms is not None else done_min_runtime_ms(entry)
        elapsed = now_ms - spawned_ms
        if elapsed < threshold:
            if not force:
                return reject(reject_too_short(_js_round(elapsed / 1000)), **built)
            if not reason or not reason.strip():
                return reject(REJECT_FORCE_WITHOUT_REASON, **built)
            warnings.append(
                f"warn: force-done used for label={name} after "
                f"{_js_round(elapsed / 1000)}s, reason={reason}"
            )

    # 7: the git-SHA gate
    if known:
        if task_used_git is None:
            prompt = _field(entry, "taskPrompt", "task_prompt")
            if not prompt:
                warnings.append(
                    f"warn: taskPrompt not stored for label={name} (enqueued before guard), "
                    "skipping git-SHA check"
                )
            else:
                task_used_git = task_requires_git_sha(prompt)
        if task_used_git and not sha:
            return reject(REJECT_NO_SHA, **built)

    # 8: the SHA itself
    if sha:
        if not _SHA.fullmatch(sha):
            return reject(reject_bad_sha(sha), **built)
        if not sha_exists:
            return reject(reject_unknown_sha(sha), **built)

    # 9: session activity (fails open)
    session_key = _field(entry, "sessionKey", "session_key") if known else None
    if session_key and not skip_activity_check and not force:
        count = _message_count(activity)
        if count is not None and count <= 2:
            return reject(reject_few_messages(count), **built)
        if activity is None and activity_error:
            warnings.append(
                f"warn: session activity check unavailable for label={name}: "
                f"{activity_error} -- skipping check"
            )

    # 10-11: accepted
    if not known:
        warnings.append(f'warn: no session found for label "{name}" -- registering as done')
    return DoneDecision(
        accepted=True,
        exit_code=0,
        forced=forced,
        reason=reason if forced else None,
        known=known,
        message=DONE_MESSAGE_KNOWN if known else DONE_MESSAGE_UNKNOWN,
        warnings=tuple(warnings),
        **built,
    )


def done_output(label: str, decision: DoneDecision) -> dict[str, Any]:
    """The JSON `done` prints when it accepted (§31.7 steps 10–11)."""
    return {
        "ok": True,
        "label": label,
        "status": "done",
        "summary": decision.summary,
        "completion": decision.completion,
        "message": decision.message,
    }


# ---------------------------------------------------------------------------------------
# §31.8 The completion payload, version 2


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _clone_checklist(checklist: Any) -> dict[str, Any] | None:
    if not isinstance(checklist, dict):
        return None
    return json.loads(json.dumps(checklist))


def short_sha(sha: str | None) -> str | None:
    text = _text(sha)
    if not text:
        return None
    return text[:7] if _SHA.fullmatch(text) else text


def _extra_checks(checklist: dict[str, Any]) -> list[str]:
    return [
        key.replace("_", " ")
        for key, value in checklist.items()
        if value is True and key not in ("work_complete", "tests_passed", "pushed")
    ]


def synthesize_completion_reply(checklist: Any, sha: str | None) -> str | None:
    """§31.8: `Work complete.` + ` Tests passed.` + ` Pushed <sha7>.` / ` Changes pushed.` /
    ` Commit <sha7>.` + ` Checks: <up to 3 other true keys>.`; None when none applies."""
    facts = _checklist_facts(_clone_checklist(checklist) or {}, sha)
    sentences = [f"{fact[0].upper()}{fact[1:]}." for fact in facts]
    if not sentences:
        return None
    return "Work complete. " + " ".join(sentences)


def completion_payload(
    *, summary: str | None, checklist: Any, sha: str | None, now_ms: int
) -> dict[str, Any]:
    """The completion payload v2 of spec §31.8 (`recordedAt` is `now_ms` as ISO text)."""
    raw_summary = _text(summary)
    fields = _clone_checklist(checklist)
    sha_text = _text(sha)
    normalized = humanize(raw_summary)
    synthesized = None if normalized else synthesize_completion_reply(fields, sha_text)
    summary_human = normalized or synthesized
    details: dict[str, Any] = {}
    if fields is not None:
        details["checklist"] = fields
    if sha_text:
        details["sha"] = sha_text
        details["sha_short"] = short_sha(sha_text)
    if raw_summary and raw_summary != summary_human:
        details["raw_summary"] = raw_summary
    source = "summary_human" if normalized else "technical-synthesis" if synthesized else "none"
    return {
        "version": 2,
        "recordedAt": iso_from_ms(now_ms),
        "summary_human": summary_human,
        "summary": summary_human or raw_summary,
        "details_technical": details or None,
        "deliveryText": summary_human,
        "prose": normalized,
        "checklist": fields,
        "sha": sha_text,
        "debug": {
            "rawSummary": raw_summary,
            "normalizedSummary": normalized,
            "synthesizedReply": synthesized,
            "deliverySource": source,
        },
    }


# ---------------------------------------------------------------------------------------
# §31.9 Completion-text normalization ("humanizing")

MAX_SENTENCES = 5
MAX_CHARS = 700
MAX_ITEMS = 3
# Beyond this a text is a dump: only its beginning is read (JSON is still parsed whole).
MAX_ANALYZED_CHARS = 20_000

_GENERIC = re.compile(
    r"^(?:completed(?:\s*\([^\n)]*\))?|done|ok|okay|success|successful|complete|all set|none"
    r"|n/?a)[.!?]*$",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^(?:hi|hello|hey|yo|sup|thanks|thank you|cool|nice|sure|yep|yeah|k|kk|roger|copy that)"
    r"[.!?]*$",
    re.IGNORECASE,
)
_DONE_PAYLOAD = re.compile(
    r'"message"\s*:\s*"Label marked done via agent signal\."|"status"\s*:\s*"done"',
    re.IGNORECASE,
)
_DONE_MESSAGE = re.compile(r"^label marked done via agent signal\.[!?]*$", re.IGNORECASE)
_AUTO_RESOLVED = re.compile(r"^auto-resolved(?:\s+as\s+[a-z-]+)?\s*:", re.IGNORECASE)
_TRANSPORT_NOISE = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^session not found in gateway store[.!?]*$",
        r"^session not found in sessions store[.!?]*$",
        r"^session never found(?:\s+--\s+spawn likely failed)?[.!?]*$",
        r"^the delivery watcher stopped before the task reached a terminal state[.!?]*$",
        r"^session went idle without calling done(?:\.\s*work may be incomplete\.)?"
        r"(?:\s*\([^)]*\))?[.!?]*$",
    )
)
_PAYLOAD_KEYS = re.compile(
    r'"(?:ok|status|label|sessionKey|idempotencyKey|deliveryText|summary|message|checklist'
    r'|stdout|stderr|tool|args|result|content)"\s*:',
    re.IGNORECASE,
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STACK_LINE = re.compile(r"^\s*at\s+\S+")
_SEPARATOR_LINE = re.compile(r"^[`~=_-]{3,}$")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?$")
_ITEM = re.compile(r"^(?:[-*•]\s+|\d+[.)]\s+|#\d+\b)")
_ITEM_MARKER = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_URL = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]}]*(\s+)")

_COMMIT_PREFIX = re.compile(
    r"^(?:fix|feat|feature|chore|refactor|perf|docs|test|tests|build|ci|style|revert|hotfix)"
    r"(?:\([^)]+\))?!?:\s*",
    re.IGNORECASE,
)
_CODE_FILE = r"(?:[cm]?[jt]sx?|json|md|py|sh|sql|ya?ml|toml)"
# Path parts are bounded: an unbounded `[…]+` before a `/` or `.ext` makes these searches
# quadratic in the length of a token like "a.a.a.a…" (40k characters took half a minute).
_PART = r"[A-Za-z0-9_.-]{1,200}"
_FILE_PREFIX = re.compile(rf"^(?:(?:{_PART}/){{0,20}}{_PART}\.{_CODE_FILE}):\s*", re.IGNORECASE)
_CODEISH = re.compile(
    r"`[^`]+`|--[a-z0-9-]+|\b[A-Z_]{3,}\b|\b[a-z0-9_]+\(\)|\b[a-z]+[A-Z][A-Za-z0-9_]+\b"
    rf"|\b(?:{_PART}/){{1,20}}{_PART}\b"
    rf"|\b{_PART}\.{_CODE_FILE}\b"
)
_HUMAN_CUE = re.compile(
    r"\b(?:now|so that|so\b|because|this\b|future runs?|expect|easier|readable|reliable"
    r"|cleaner|people|users?|operators?|chat|helps?|lets?|allows?|prevents?|stops?|keeps?"
    r"|avoids?)\b",
    re.IGNORECASE,
)
_AUDIENCE = re.compile(r"\b(?:people|users?|operators?)\b", re.IGNORECASE)
_PURPOSE = re.compile(
    r"\b(?:now|because|so that|helps?|prevents?|avoids?|keeps?|lets?|allows?)\b", re.IGNORECASE
)
_TECHNICAL_KEYWORDS = re.compile(
    r"\b(?:api|artifact|assert|build|checklist|cli|commit|completion|config|context|cron|db"
    r"|delivery|dispatch|gateway|guard|hook|json|job|label|lint|message|metadata|notify|output"
    r"|path|payload|pipeline|post-office|queue|raw|regex|report|retry|scheduler|session|sha"
    r"|shell|spec|sql|stderr|stdout|structured|summary|sync|test|tests|tool|transcript"
    r"|transport|typecheck|watcher|webhook|workflow)\b",
    re.IGNORECASE,
)
_PAYLOAD_FIELD_NAMES = re.compile(
    r"\b(?:summary_human|deliveryText|details_technical|sessionKey|idempotencyKey)\b"
)
_LEAD_BLOCKLIST = re.compile(
    r"\b(?:summary(?:_human|Human)?|deliveryText|details_technical|sessionKey|idempotencyKey"
    r"|payload-precedence|raw summary|watcher path|completion delivery)\b",
    re.IGNORECASE,
)
_FRAGMENT_SPLIT = re.compile(r"\s*;\s*|\s+\|\s+|\s+&&\s+|\s+->\s+|\s+=>\s+")
_CAMEL_TOKEN = re.compile(r"\b([a-z][A-Za-z0-9_]*[A-Z][A-Za-z0-9_]*)\b")
_CODE_PATH = re.compile(rf"\b(?:{_PART}/){{1,20}}({_PART}\.{_CODE_FILE})\b")

_TEST_FRAGMENT = re.compile(
    r"\b(?:test|tests|spec|coverage|lint|typecheck|tsc|eslint|oxlint|assert(?:ion)?s?)\b",
    re.IGNORECASE,
)
_NOT_A_TEST = re.compile(
    r"\b(?:human(?:-|\s)?readable|summary|summaries|message|report|chat|duplicate|user-facing)\b",
    re.IGNORECASE,
)
_COMPLETION_TERMS = re.compile(
    r"\b(?:completion|deliver(?:y|ed)?|notifications?|chat|user-facing)\b"
)
_SUMMARY_TERMS = re.compile(
    r"\b(?:summary|summaries|messages?|reports?|human(?:-|\s)?readable|readability"
    r"|plain english)\b"
)
_COMPLETION_FIELDS = re.compile(
    r"\b(?:summary_human|deliverytext|details_technical|payload-precedence|completion delivery)\b"
)
_DUPLICATES = re.compile(
    r"\b(?:duplicates?|duplicated|double[- ]delivery|single final|dedupe\w*|deduplicat\w*"
    r"|one clean)\b"
)
_PRESERVES_CONTEXT = re.compile(r"\b(?:structur\w*|context|preserv\w*|kept|retain\w*|surviv\w*)\b")
_RELIABILITY = re.compile(
    r"\b(?:fix\w*|guard\w*|retr(?:y|ies|ied)|timeouts?|errors?|fail\w*|stuck|prevent\w*"
    r"|avoid\w*|dedupe\w*|deduplicat\w*|preserv\w*|ensur\w*|handl\w*|recover\w*|reliab\w*)\b"
)
_ADDED = re.compile(r"\b(?:add|added|introduce|introduced|support|supported|enable|enabled)\b")

_PAST_TENSE = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        (r"^clean up\b", "cleaned up"),
        (r"^normalize\b", "cleaned up"),
        (r"^humani[sz]e\b", "made more readable"),
        (r"^rewrite\b", "reworked"),
        (r"^refactor\b", "refined"),
        (r"^fix\b", "fixed"),
        (r"^update\b", "updated"),
        (r"^adjust\b", "adjusted"),
        (r"^change\b", "updated"),
        (r"^improve\b", "improved"),
        (r"^add\b", "added"),
        (r"^introduce\b", "introduced"),
        (r"^enable\b", "enabled"),
        (r"^support\b", "supported"),
        (r"^preserve\b", "kept"),
        (r"^keep\b", "kept"),
        (r"^retain\b", "retained"),
        (r"^prevent\b", "prevented"),
        (r"^avoid\b", "avoided"),
        (r"^stop\b", "stopped"),
        (r"^pass through\b", "passed through"),
        (r"^leave\b", "left"),
        (r"^prefer\b", "preferred"),
        (r"^wire\b", "wired up"),
        (r"^route\b", "routed"),
        (r"^surface\b", "surfaced"),
        (r"^append\b", "appended"),
        (r"^format\b", "formatted"),
        (r"^teach\b", "taught"),
        (r"^ensure\b", "ensured"),
        (r"^dedupe\b", "deduplicated"),
    )
)
_PHRASES = tuple(
    (re.compile(pattern, flags), replacement)
    for pattern, replacement, flags in (
        (r"\bsummary_human\b", "human summary", re.IGNORECASE),
        (r"\bsummaryHuman\b", "human summary", 0),
        (r"\bdeliveryText\b", "delivery text", 0),
        (r"\bdetails_technical\b", "technical details", re.IGNORECASE),
        (r"\bcompletion delivery\b", "how the final completion message is delivered", re.I),
        (r"\bdelivery path\b", "delivery flow", re.IGNORECASE),
        (r"\bwatcher path\b", "completion watcher flow", re.IGNORECASE),
        (r"(?<!completion )\bwatcher\b", "completion watcher", re.IGNORECASE),
        (r"\bstdout\b", "command output", re.IGNORECASE),
        (r"\bstderr\b", "error output", re.IGNORECASE),
        (r"\bpayload\b", "result payload", re.IGNORECASE),
        (r"\braw transcript\b", "raw completion text", re.IGNORECASE),
        (r"\bdouble[- ]delivery\b", "duplicate completion messages", re.IGNORECASE),
        (r"\bsummary fallback\b", "fallback summary", re.IGNORECASE),
    )
)

COMPLETION_LEAD_READ = (
    "Final completion updates now start with a short plain-English summary. That makes the "
    "result easier to read without hiding the useful detail. Future runs should show the "
    "clean summary first, with technical details underneath when needed."
)
COMPLETION_LEAD_SCAN = COMPLETION_LEAD_READ.replace("easier to read", "easier to scan")
COMPLETION_LEAD_DEDUPE = (
    "Final completion updates now arrive as one clean plain-English summary. That makes the "
    "result easier to scan and avoids noisy repeat messages. Future runs should show the "
    "clean summary first, with technical details underneath when needed."
)
FOLLOW_UPS = {
    "tests": "That makes the behavior easier to trust. Future regressions should get caught "
    "quickly.",
    "reliability": "That should make the workflow more reliable. Future runs should be less "
    "likely to hit the same problem.",
    "added": "That makes the new behavior available without extra follow-up. Future runs "
    "should use it automatically.",
    "other": "That should make the result easier to work with. Future runs should reflect the "
    "change automatically.",
}
FALLBACK_LEADS = {
    "tests": "Added focused coverage for the weak spot.",
    "reliability": "The requested fix is in place.",
    "added": "The requested behavior is now in place.",
    "other": "The update is in place.",
}

NOISE_IDLE = (
    "The session ended without a final completion signal, so no reliable final report is available."
)
NOISE_NOT_FOUND = (
    "The session ended before a final report could be retrieved, so there is no user-facing "
    "completion message to deliver."
)
NOISE_TRANSPORT = (
    "The session completed with internal transport status only and no user-facing completion "
    "report."
)


def _truncate(text: str | None, limit: int = MAX_CHARS) -> str | None:
    text = _text(text)
    if not text:
        return None
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def _as_sentence(text: str | None) -> str | None:
    text = _text(text)
    if not text:
        return None
    return text if text[-1] in ".!?" else text + "."


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def is_generic(text: str | None) -> bool:
    """Generic or trivial completion text (`completed`, `done`, `ok`, `n/a`, `thanks`, …)."""
    normalized = " ".join((text or "").lower().split())
    return not normalized or bool(_GENERIC.match(normalized) or _CHATTER.match(normalized))


def is_noise(text: str | None) -> bool:
    """Internal transport status rather than a report: `Auto-resolved…:`, the `done`
    command's own output, "session not found …", "session went idle without calling
    done…" and the like (spec §31.9)."""
    normalized = " ".join((text or "").split())
    if not normalized:
        return False
    if _AUTO_RESOLVED.match(normalized) or _DONE_PAYLOAD.search(normalized):
        return True
    if _DONE_MESSAGE.match(normalized):
        return True
    return any(pattern.match(normalized) for pattern in _TRANSPORT_NOISE)


def _looks_like_payload(text: str) -> bool:
    if is_noise(text):
        return True
    return text[:1] in "{[" and bool(_PAYLOAD_KEYS.search(text))


def _clean_markdown(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", text)
    text = re.sub(r"`([^`\n]+)`", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"__([^_]+)__", r"\1", text)
    text = re.sub(r"^#{1,6}\s+", "", text, flags=re.MULTILINE)
    return re.sub(r"^>\s?", "", text, flags=re.MULTILINE)


def _prepare_lines(text: str) -> list[str]:
    lines = []
    for line in _clean_markdown(text).split("\n"):
        line = " ".join(line.replace("\t", " ").split())
        if not line or line.startswith("```"):
            continue
        if _SEPARATOR_LINE.match(line) or _TABLE_SEPARATOR.match(line):
            continue
        if all(char in "{}[]," for char in line) or _STACK_LINE.match(line):
            continue
        lines.append(line)
    return lines


def _split_sentences(text: str) -> list[str]:
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        sentences.append(text[start : match.start(1)])
        start = match.end(1)
    sentences.append(text[start:])
    return [sentence for sentence in sentences if sentence]


def _shorten(text: str, limit: int = 110) -> str | None:
    cleaned = " ".join(_URL.sub("", _clean_markdown(text)).split())
    return _truncate(cleaned, limit)


def _looks_like_deal_report(text: str) -> bool:
    if re.search(r"deal scanner", text, re.IGNORECASE):
        return True
    return bool(
        re.search(r"^Baseline:", text, re.IGNORECASE | re.MULTILINE)
        and re.search(r"^#\d+", text, re.MULTILINE)
    )


def _deal_item(line: str) -> str | None:
    match = re.match(
        r"^#(\d+)(?:\s+\S+)?\s*\|\s*([+-]\d+%)\s*[—-]\s*\$?([\d,]+)\s*\(([^)]*)\)", line
    )
    if not match:
        return _shorten(line, 100)
    rank, edge, price, context = match.groups()
    return f"#{rank} {edge} at ${price} ({context.strip()})"


def _summarize_deal_report(text: str) -> str | None:
    """The "deal scanner" summarizer: `<title>. Baseline: …. Top deals: #1 +32% at $1,400
    (6 bids, 2h); …`."""
    lines = _prepare_lines(text)
    title = next((line for line in lines if re.search(r"deal scanner", line, re.I)), None)
    baseline = next((line for line in lines if re.match(r"^Baseline:", line, re.I)), None)
    no_deals = next((line for line in lines if re.search(r"no deals", line, re.I)), None)
    items = [_deal_item(line) for line in lines if re.match(r"^#\d+", line)]
    items = [item for item in items if item][:MAX_ITEMS]
    parts = []
    if title:
        parts.append(_as_sentence(re.sub(r"^[^\w#]+", "", title)))
    if baseline:
        parts.append(_as_sentence(baseline))
    if no_deals and not items:
        parts.append(_as_sentence(no_deals))
    if items:
        parts.append(f"Top deals: {'; '.join(items)}.")
    return _truncate(" ".join(part for part in parts if part))


def _summarize_structured(lines: list[str]) -> str | None:
    items = [line for line in lines if _ITEM.match(line)]
    others = [line for line in lines if not _ITEM.match(line)]
    if not items:
        compact = _truncate(" ".join(lines[:4]), 260)
        return _as_sentence(compact)
    heading = others[0] if others else None
    context = " ".join(others[1:3])
    highlights = [_shorten(_ITEM_MARKER.sub("", line), 110) for line in items[:MAX_ITEMS]]
    highlights = [highlight.rstrip(".;") for highlight in highlights if highlight]
    parts = [_as_sentence(heading), _as_sentence(_truncate(context, 180))]
    if highlights:
        parts.append(f"Highlights: {'; '.join(highlights)}.")
    return _truncate(" ".join(part for part in parts if part))


def _summarize_prose(lines: list[str]) -> str | None:
    text = " ".join(" ".join(lines).split())
    if not text or is_generic(text):
        return None
    sentences = _split_sentences(text)
    if len(text) <= MAX_CHARS and len(sentences) <= MAX_SENTENCES:
        return text
    kept: list[str] = []
    length = 0
    for sentence in sentences:
        following = length + (1 if kept else 0) + len(sentence)
        if len(kept) >= MAX_SENTENCES or following > MAX_CHARS:
            break
        kept.append(sentence)
        length = following
    return " ".join(kept) if kept else _truncate(text)


def _summarize(raw: str) -> str | None:
    """Noise, structure, prose (§31.9), for text that is not (or no longer) JSON."""
    if _looks_like_payload(raw):
        return None
    if _looks_like_deal_report(raw):
        return _summarize_deal_report(raw)
    lines = _prepare_lines(raw)
    if not lines:
        return None
    items = sum(1 for line in lines if _ITEM.match(line))
    if len(lines) >= 4 or any("|" in line for line in lines) or items >= 2:
        summary = _summarize_structured(lines)
        if summary and not is_generic(summary):
            return summary
    return _summarize_prose(lines)


def _keyword_hits(text: str) -> int:
    return len({hit.lower() for hit in _TECHNICAL_KEYWORDS.findall(text)})


def looks_technical(raw: str, summarized: str | None = None) -> bool:
    """A commit subject, a leading file path, code-ish tokens, `;`/`|` delimiters or dense
    technical keywords, not outweighed by human cues (§31.9 "Technical rewrite"). URLs are
    not code: they are removed first."""
    raw = _URL.sub("", raw)
    cleaned = " ".join(_clean_markdown(raw).split())
    if not cleaned:
        return False
    commit = bool(_COMMIT_PREFIX.match(cleaned))
    file_prefix = bool(_FILE_PREFIX.match(cleaned))
    codeish = bool(_CODEISH.search(raw) or _CODEISH.search(cleaned))
    delimited = bool(re.search(r"[;|]", cleaned))
    technical = 3 * commit + 3 * file_prefix + 2 * codeish + delimited
    technical += min(2, _keyword_hits(cleaned))
    if _PAYLOAD_FIELD_NAMES.search(cleaned):
        technical += 2
    human = 2 * bool(_HUMAN_CUE.search(cleaned))
    human += bool(_AUDIENCE.search(cleaned)) + bool(_PURPOSE.search(cleaned))
    if summarized and not commit and not file_prefix and _summarize_prose([summarized]):
        human += 1
    if not (commit or file_prefix or codeish or delimited):
        return technical >= 5 and technical > human + 2
    return technical >= 3 and technical > human + 1


def _humanize_camel(token: str) -> str:
    if not re.search(r"[a-z][A-Z]", token) and "_" not in token:
        return token
    return re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", token.replace("_", " ")).lower()


def _replace_phrases(text: str) -> str:
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    return text


def _clean_fragment(text: str) -> str | None:
    cleaned = _COMMIT_PREFIX.sub("", _clean_markdown(text.strip()))
    cleaned = _FILE_PREFIX.sub("", cleaned)
    cleaned = _CODE_PATH.sub(r"\1", cleaned)
    cleaned = _CAMEL_TOKEN.sub(lambda match: _humanize_camel(match.group(1)), cleaned)
    cleaned = cleaned.replace("()", "")
    cleaned = re.sub(r"^[:\-–—]+\s*", "", cleaned)
    cleaned = re.sub(r"^(?:and|then)\s+", "", cleaned, flags=re.IGNORECASE)
    cleaned = _replace_phrases(" ".join(cleaned.split()))
    cleaned = re.sub(r"\s+([,.])", r"\1", cleaned)
    return re.sub(r"[;,:]+$", "", cleaned).strip() or None


def _past_tense(fragment: str) -> str | None:
    text = _clean_fragment(fragment)
    if not text:
        return None
    for pattern, replacement in _PAST_TENSE:
        if pattern.match(text):
            text = pattern.sub(replacement, text, count=1)
            break
    return _upper_first(" ".join(text.split()).rstrip(".!?;:, ")) or None


def _is_test_fragment(fragment: str) -> bool:
    return bool(_TEST_FRAGMENT.search(fragment)) and not _NOT_A_TEST.search(fragment)


def _plain_english(text: str) -> bool:
    if _FILE_PREFIX.match(text) or _CODEISH.search(text) or _LEAD_BLOCKLIST.search(text):
        return False
    return not looks_technical(text, text)


def _technical_rewrite(raw: str, summarized: str | None) -> str | None:
    """The plain-English lead that replaces technical text (§31.9)."""
    fragments = [
        cleaned
        for line in _prepare_lines(raw)
        for piece in _FRAGMENT_SPLIT.split(line)
        if piece.strip() and (cleaned := _clean_fragment(piece))
    ]
    combined = (_clean_markdown(raw) + " " + " ".join(fragments)).lower()
    if (_COMPLETION_TERMS.search(combined) and _SUMMARY_TERMS.search(combined)) or (
        _COMPLETION_FIELDS.search(combined)
    ):
        if _DUPLICATES.search(combined):
            return COMPLETION_LEAD_DEDUPE
        return COMPLETION_LEAD_READ if _PRESERVES_CONTEXT.search(combined) else COMPLETION_LEAD_SCAN

    if fragments and all(_is_test_fragment(fragment) for fragment in fragments):
        theme = "tests"
    elif _RELIABILITY.search(combined):
        theme = "reliability"
    elif _ADDED.search(combined):
        theme = "added"
    else:
        theme = "other"
    primary = [fragment for fragment in fragments if not _is_test_fragment(fragment)]
    chosen = [
        lead
        for fragment in (primary or fragments)[:2]
        if (lead := _past_tense(fragment)) and _plain_english(lead)
    ]
    if len(chosen) == 1:
        action = _as_sentence(chosen[0])
    elif chosen:
        action = f"{chosen[0]} and {_lower_first(chosen[1])}."
    elif summarized and _plain_english(summarized):
        action = _as_sentence(summarized)
    else:
        action = FALLBACK_LEADS[theme]
    return _truncate(f"{action} {FOLLOW_UPS[theme]}")


def _embedded_json(text: str) -> Any:
    """The text, its last line starting with `{`, or the text from its first `{`, whichever
    parses as JSON first; `_NOT_JSON` when none does."""
    candidates = [text]
    last_line = text.rfind("\n{")
    if last_line >= 0:
        candidates.append(text[last_line + 1 :])
    first_brace = text.find("{")
    if first_brace > 0:
        candidates.append(text[first_brace:])
    for candidate in dict.fromkeys(candidate.strip() for candidate in candidates):
        if not candidate:
            continue
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return _NOT_JSON


_NOT_JSON = object()
_PREFERRED_KEYS = (
    "deliveryText",
    "summary",
    "body",
    "text",
    "content",
    "message",
    "stdout",
    "stderr",
)
_NESTED_KEYS = ("completion", "result", "response", "data", "payload")


def _strings_in(value: Any, depth: int = 0, found: list[str] | None = None) -> list[str]:
    """Strings of a parsed JSON value in the order §31.9 prefers them (depth ≤ 4, the first
    6 items of arrays)."""
    found = [] if found is None else found
    if depth > 4 or value is None:
        return found
    if isinstance(value, str):
        text = value.strip()
        if text and text not in found:
            found.append(text)
    elif isinstance(value, list):
        for item in value[:6]:
            _strings_in(item, depth + 1, found)
    elif isinstance(value, dict):
        for key in (*_PREFERRED_KEYS, *_NESTED_KEYS):
            if key in value:
                _strings_in(value[key], depth + 1, found)
        for key, item in value.items():
            if key not in _PREFERRED_KEYS and key not in _NESTED_KEYS:
                _strings_in(item, depth + 1, found)
    return found


class _Humanized(msgspec.Struct, frozen=True):
    text: str
    technical_source: str | None  # the technical text a lead replaced


def _humanize_plain(raw: str) -> _Humanized | None:
    raw = raw[:MAX_ANALYZED_CHARS]
    summarized = _summarize(raw)
    if not summarized:
        return None
    if looks_technical(raw, summarized):
        lead = _technical_rewrite(raw, summarized)
        if lead:
            return _Humanized(lead, raw)
    return _Humanized(summarized, None)


def _humanize(text: Any) -> _Humanized | None:
    raw = _text(text)
    if not raw:
        return None
    parsed = _embedded_json(raw)
    if parsed is not _NOT_JSON:
        for candidate in _strings_in(parsed):
            result = _humanize_plain(candidate)
            if result:
                return result
        if _looks_like_payload(raw):
            return None
    return _humanize_plain(raw)


def humanize(text: str | None) -> str | None:
    """Completion-text normalization (spec §31.9); None means "nothing to say": empty,
    noise, generic, or JSON with nothing meaningful in it."""
    result = _humanize(text)
    return result.text if result else None


def checks_line(checklist: Any, sha: str | None) -> str | None:
    """`Checks: tests passed; pushed <sha7>.` (items: `tests passed`, `pushed <sha7>` /
    `changes pushed` / `commit <sha7>`, `checks: <extras>`), None when none applies."""
    fields = _clone_checklist(checklist)
    if fields is None:
        return None
    facts = _checklist_facts(fields, sha)
    return f"Checks: {'; '.join(facts)}." if facts else None


def _checklist_facts(fields: dict[str, Any], sha: str | None) -> list[str]:
    """What a checklist and sha state: `tests passed`, `pushed <sha7>` / `changes pushed` /
    `commit <sha7>`, `checks: <up to 3 other true keys>`."""
    short = short_sha(sha)
    facts = []
    if fields.get("tests_passed") is True:
        facts.append("tests passed")
    if fields.get("pushed") is True:
        facts.append(f"pushed {short}" if short else "changes pushed")
    elif short:
        facts.append(f"commit {short}")
    extras = _extra_checks(fields)
    if extras:
        facts.append(f"checks: {', '.join(extras[:3])}")
    return facts


def _technical_detail(raw: str) -> str | None:
    lines = [_ITEM_MARKER.sub("", line) for line in _prepare_lines(raw)]
    return _truncate(" ".join(line for line in lines if line), 260)


def delivery_text(text: str | None, *, checklist: Any = None, sha: str | None = None) -> str | None:
    """`humanize(text)`, plus — when a plain-English lead replaced technical text — the
    footer `\\n\\nTechnical details:\\n- <original, ≤260 chars>` and, with checklist data,
    `\\n- Checks: …`."""
    result = _humanize(text)
    if not result:
        return None
    return _with_footer(result.text, result.technical_source, checklist, sha)


def _with_footer(text: str, source: str | None, checklist: Any, sha: str | None) -> str:
    detail = _technical_detail(source) if source else None
    if not detail:
        return text
    footer = f"\n\nTechnical details:\n- {detail}"
    checks = checks_line(checklist, sha)
    if checks:
        footer += f"\n- {checks}"
    return text + footer


def resolve_delivery_text(
    *,
    completion: dict[str, Any] | None,
    last_reply: str | None,
    fallback_summary: str | None,
) -> str | None:
    """What the watcher (and an unknown-label `done`) delivers (§31.9 "Delivery resolution
    order"): the completion's `summary_human`, `summary`, `deliveryText`, the last
    assistant reply, the checklist synthesis, the fallback summary — each humanized, noise
    skipped. If all fail but some input was noise, a fixed explanation; else None
    (delivery suppressed)."""
    completion = completion if isinstance(completion, dict) else {}
    checklist = completion.get("checklist")
    sha = completion.get("sha") if isinstance(completion.get("sha"), str) else None
    details = completion.get("details_technical")
    raw_summary = details.get("raw_summary") if isinstance(details, dict) else None
    replaced = _humanize(raw_summary)
    stored_source = replaced.technical_source if replaced else None

    candidates: list[tuple[Any, str | None]] = [
        (completion.get("summary_human") or completion.get("prose"), stored_source),
        (completion.get("summary"), stored_source),
        (completion.get("deliveryText"), stored_source),
        (last_reply, None),
        (synthesize_completion_reply(checklist, sha), None),
        (fallback_summary, None),
    ]
    for raw, source in candidates:
        result = _humanize(raw)
        if not result or is_noise(result.text):
            continue
        return _with_footer(result.text, result.technical_source or source, checklist, sha)

    noisy = [raw for raw, _ in candidates if isinstance(raw, str) and is_noise(raw)]
    if not noisy:
        return None
    joined = " ".join(noisy).lower()
    if "session went idle without calling done" in joined:
        return NOISE_IDLE
    if "session not found" in joined or "session never found" in joined:
        return NOISE_NOT_FOUND
    return NOISE_TRANSPORT


# ---------------------------------------------------------------------------------------
# §31.11 Overload (529) detection and recovery

MAX_OVERLOAD_RETRIES = 3
MAX_ERROR_AGE_MS = 60 * 60_000
WATCHER_GRACE_MS = 5 * 60_000

_OVERLOAD = re.compile(
    r"\b529\b|failover\s*error|overload|temporarily\s+overloaded|service.*overloaded",
    re.IGNORECASE,
)
_RATE_LIMITED = re.compile(r"rate\s*limit|too many requests", re.IGNORECASE)
_LANE_ERROR_FIELD = re.compile(r'error="([^"]+)"')
_LOG_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+Z)")

RETRY_MESSAGE_SAFETY_NET = (
    "[Auto-retry after 529 overload -- scheduler safety net] This is an automatic retry. "
    "Please continue your previous task from where you left off."
)
RETRY_MESSAGE_REUSE = (
    "[Auto-retry after 529 overload] Please continue your previous task. Pick up where you "
    "left off."
)
RETRY_MESSAGE_FRESH = (
    "[Auto-retry after 529 overload] This is a retry of a previous task that failed due to "
    "API overload. Please continue the task from the beginning."
)

RecoveryAction = Literal["retry-reuse", "retry-fresh"]


def is_overload_error(text: str | None, *, include_rate_limits: bool = False) -> bool:
    """An overload error (§31.11): `529`, `failover error`, `overload`, `temporarily
    overloaded`, `service…overloaded`, case-insensitive. The watcher's list (§31.10.2 step 4)
    also counts `rate limit` and `too many requests`: `include_rate_limits=True`."""
    if not isinstance(text, str) or not text:
        return False
    if _OVERLOAD.search(text):
        return True
    return include_rate_limits and bool(_RATE_LIMITED.search(text))


def overload_error_text(lane_error: str) -> str:
    """The error recorded for an overload seen in the gateway log."""
    return f"FailoverError (529): {lane_error}"


def find_lane_task_error(log_tail: str, session_key: str) -> dict[str, str | None] | None:
    """The newest gateway-log line that names the session, says `lane task error` and has an
    `error="…"` field: `{"error", "timestamp"}` (the line's leading ISO time, or None)."""
    for line in reversed(log_tail.split("\n")):
        if session_key not in line or "lane task error" not in line:
            continue
        found = _LANE_ERROR_FIELD.search(line)
        if not found:
            continue
        stamp = _LOG_TIMESTAMP.match(line)
        return {"error": found.group(1), "timestamp": stamp.group(1) if stamp else None}
    return None


def recovery_skip_reason(
    *,
    error_at_ms: int | None,
    now_ms: int,
    retries_so_far: int | None,
    grace_ms: int = WATCHER_GRACE_MS,
) -> str | None:
    """Why the 529 safety net leaves an overloaded entry alone, in the anchor's words, or
    None when it should retry."""
    age = now_ms - (error_at_ms or 0)
    if age > MAX_ERROR_AGE_MS:
        return f"error too old ({_js_round(age / 60_000)}min)"
    if age < grace_ms:
        return f"updated {_js_round(age / 1000)}s ago (watcher may be handling)"
    retries = retries_so_far or 0
    if retries >= MAX_OVERLOAD_RETRIES:
        return f"max retries exhausted ({retries}/{MAX_OVERLOAD_RETRIES})"
    return None


def recovery_decision(
    *,
    error_text: str | None,
    error_at_ms: int | None,
    now_ms: int,
    retries_so_far: int | None,
    session_reusable: bool,
    grace_ms: int = WATCHER_GRACE_MS,
) -> RecoveryAction | None:
    """The 529 safety net (§31.11) for an entry in `error`: retry an overload error younger
    than 60 minutes and older than the watcher's 5-minute grace, at most 3 times; in the
    same session when it can still take a message, else in a fresh one."""
    if not is_overload_error(error_text):
        return None
    skip = recovery_skip_reason(
        error_at_ms=error_at_ms, now_ms=now_ms, retries_so_far=retries_so_far, grace_ms=grace_ms
    )
    if skip:
        return None
    return "retry-reuse" if session_reusable else "retry-fresh"


def recovery_notice(label: str, attempt: int, method: str | None) -> str:
    """The notification the safety net sends after a retry (`method`: send | fresh, None
    when the respawn failed)."""
    head = f"🌶️ Dispatch 529 recovery: [{label}]"
    if method:
        return f"{head} retried ({attempt}/{MAX_OVERLOAD_RETRIES}) via {method}"
    return f"{head} retry FAILED ({attempt}/{MAX_OVERLOAD_RETRIES})"


# ---------------------------------------------------------------------------------------
# §31.12 Lifecycle hooks


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loki_payload(event: str, fields: dict[str, Any], *, host: str, now_ns: int) -> dict[str, Any]:
    """The Loki push body: one stream labelled service_name/host/event, one value
    `[<epoch ns as text>, <JSON of {event, host, …fields}>]`."""
    line = _compact_json({"event": event, "host": host, **fields})
    return {
        "streams": [
            {
                "stream": {"service_name": "dispatch", "host": host, "event": event},
                "values": [[str(now_ns), line]],
            }
        ]
    }


def webhook_payload(
    event: str,
    fields: dict[str, Any],
    *,
    host: str,
    now_ms: int | None = None,
    now_iso: str | None = None,
) -> dict[str, Any]:
    """The webhook body `{event, ts, host, …fields}`; `ts` is epoch milliseconds (spec
    §31.12), from `now_ms`, or from `now_iso` when that is what the caller has."""
    if now_ms is None:
        now_ms = time_ms(now_iso)
    if now_ms is None:
        raise ValueError("webhook_payload needs now_ms or an ISO now_iso")
    return {"event": event, "ts": now_ms, "host": host, **fields}


def started_fields(
    *, label: str, job_id: str, run_id: str, agent: str, mode: str, session_key: str | None
) -> dict[str, Any]:
    """`dispatch.started`: `job_id` is the enqueue idempotency id, `run_id` the gateway's."""
    return {
        "label": label,
        "job_id": job_id,
        "run_id": run_id,
        "agent": agent,
        "mode": mode,
        "session_key": session_key or None,
    }


def finished_fields(
    *,
    label: str,
    run_id: str | None,
    agent: str | None,
    duration_ms: int | None,
    session_key: str | None,
    status: str = "ok",
    error: str | None = None,
) -> dict[str, Any]:
    """`dispatch.finished` (emitted by `done`): both ids are the ledger's runId."""
    return {
        "label": label,
        "job_id": run_id,
        "run_id": run_id,
        "agent": agent or "main",
        "status": status,
        "duration_ms": duration_ms or None,
        "error": error or None,
        "session_key": session_key or None,
    }


def stuck_fields(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`dispatch.stuck`; each run is `{run_id: <session key>, job_name: <label>,
    started_at: <spawnedAt>, age_s}`."""
    keys = ("run_id", "job_name", "started_at", "age_s")
    return {"stuck_count": len(runs), "runs": [{key: run.get(key) for key in keys} for run in runs]}


def finished_notice_body(label: str, text: str | None) -> str | None:
    """The message queued with `dispatch.finished` for a target: `✅ [<label>] done`, a
    blank line, the delivery text; None when there is no meaningful text."""
    return f"✅ [{label}] done\n\n{text}" if text else None


# ---------------------------------------------------------------------------------------
# §31.5 / §31.6 Auto-resolution

STARTUP_GRACE_MS = 300_000
PING_FRESH_MS = 3 * 60_000
YOUNG_SESSION_MS = 5 * 60_000
CEILING_THRESHOLD_MS = 2 * 60_000
IDLE_FLOOR_MS = 10 * 60_000
DEFAULT_STATUS_TIMEOUT_S = 600

INTERRUPTED_SUMMARY = (
    "Auto-resolved: session went idle without calling done. Work may be incomplete. ({reason})"
)


def _timeout_s(timeout_s: Any) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        return DEFAULT_STATUS_TIMEOUT_S
    return timeout_s if math.isfinite(timeout_s) and timeout_s > 0 else DEFAULT_STATUS_TIMEOUT_S


def idle_threshold_ms(timeout_s: float | None) -> int:
    """I = max(timeoutSeconds (600 when absent) × 1000, 10 min)."""
    return int(max(_timeout_s(timeout_s) * 1000, IDLE_FLOOR_MS))


def hard_ceiling_ms(timeout_s: float | None) -> int:
    """H = max(timeoutSeconds × 1.5 s, 1.5 × I)."""
    return int(max(_timeout_s(timeout_s) * 1500, 1.5 * idle_threshold_ms(timeout_s)))


def stuck_threshold_ms(timeout_s: float | None, threshold_min: float = 15) -> int:
    """`stuck`'s effective threshold E = max(timeoutSeconds × 1000, N minutes); an absent
    timeout counts as 0 (the anchor's arithmetic gives NaN)."""
    seconds = timeout_s if isinstance(timeout_s, (int, float)) and timeout_s > 0 else 0
    return int(max(seconds * 1000, threshold_min * 60_000))


def auto_resolve_threshold_ms(
    *,
    age_ms: int,
    timeout_s: float | None,
    last_ping_age_ms: int | None,
    grace_ms: int = STARTUP_GRACE_MS,
) -> int | None:
    """§31.5 step 2: None (no action) within the startup grace, or with a ping younger than
    3 min before the hard ceiling; else the "session done" threshold: 2 min past the hard
    ceiling, else the idle threshold."""
    if age_ms < grace_ms:
        return None
    ceiling = hard_ceiling_ms(timeout_s)
    if last_ping_age_ms is not None and last_ping_age_ms < PING_FRESH_MS and age_ms < ceiling:
        return None
    return CEILING_THRESHOLD_MS if age_ms >= ceiling else idle_threshold_ms(timeout_s)


def bootstrap_failure(
    *,
    age_ms: int,
    has_last_ping: bool,
    in_store: bool,
    has_activity_signal: bool,
    lane_error: str | None,
    history_count: int | None,
    updated_at: Any,
    spawned_at_ms: int,
    grace_ms: int = STARTUP_GRACE_MS,
) -> str | None:
    """§31.5 step 1: the spawn-failure error for a session that entered the store but never
    showed an activity signal, checked only without a ping and between G and 2G of age;
    None when it is not a bootstrap failure. `history_count` None: chat.history did not
    answer."""
    if has_last_ping or not grace_ms <= age_ms <= 2 * grace_ms:
        return None
    if not in_store or has_activity_signal:
        return None
    if lane_error:
        return f"spawn-failure: {lane_error}"
    if history_count == 0:
        return "spawn-failure: session entered sessions store but never wrote transcript/history"
    updated_ms = time_ms(updated_at)
    if updated_ms is not None and updated_ms <= spawned_at_ms + 5000:
        return "spawn-failure: session entered sessions store but never showed any activity"
    return None


def session_done(
    *,
    store_available: bool,
    key_present: bool,
    updated_at: Any,
    now_ms: int,
    threshold_ms: int,
    age_ms: int | None,
    listed: bool | None,
) -> tuple[bool, str]:
    """The "session done" check (§31.5 step 3): (done, reason).

    `updated_at`: the store entry's `updatedAt` (epoch s/ms or ISO text); `age_ms`: since
    `spawnedAt` (None when unknown); `listed`: whether `sessions.list` shows the key, None
    when it could not be called. An `updatedAt` that is not a time counts from the spawn
    (the anchor never resolves such a session).
    """
    if not store_available:
        return False, "sessions store unavailable for state check"
    if not key_present:
        if age_ms is not None and age_ms < YOUNG_SESSION_MS:
            return False, "session young, not yet in sessions store -- deferring"
        if listed is None:
            return False, "sessions store miss + gateway API unreachable -- deferring"
        if listed:
            return False, "session not in sessions store but confirmed active via gateway API"
        return True, "session not found in sessions store or gateway API"
    updated_ms = time_ms(updated_at)
    if updated_ms is not None:
        silence = now_ms - updated_ms
    elif age_ms is not None:
        silence = age_ms
    else:
        return False, "session activity time unknown"
    if silence >= threshold_ms:
        return True, f"session idle {_js_round(silence / 60_000)}min in sessions store (completed)"
    return False, "session has recent activity in sessions store"


def resolution_fields(
    reason: str,
    *,
    overload_error: str | None = None,
    spawn_failure: str | None = None,
    synced: bool = False,
) -> dict[str, Any]:
    """The ledger changes and `syncAction` of a resolution (§31.5 steps 1 and 4, §31.6
    `sync`). `overload_error`: the lane error text of an overload seen in the gateway log
    (it makes the resolution a 529 error); `spawn_failure`: a `bootstrap_failure` error.
    `synced` gives `sync`'s summaries (`Synced as …`). Never `done`."""
    if spawn_failure:
        summary = ("Synced" if synced else "Auto-resolved") + f" as spawn failure: {spawn_failure}"
        return {
            "status": "error",
            "error": spawn_failure,
            "summary": summary,
            "syncAction": f"auto-resolved as spawn failure: {spawn_failure}",
        }
    if overload_error:
        error = overload_error_text(overload_error)
        reason = f"529/overload error detected: {error}"
        summary = ("Synced" if synced else "Auto-resolved") + f" as error: {reason}"
        return {
            "status": "error",
            "error": error,
            "summary": summary,
            "syncAction": f"auto-resolved as 529 error: {reason}",
        }
    return {
        "status": "interrupted",
        "summary": INTERRUPTED_SUMMARY.format(reason=reason),
        "syncAction": f"auto-resolved as interrupted: {reason}",
    }
