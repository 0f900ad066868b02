"""Agent turns (spec §11, §12): session keys, the prompt, and what a reply means."""

from __future__ import annotations

import re
from typing import Any

SENTINELS_WITHOUT_DELIVERY = ("HEARTBEAT_OK", "NO_FLUSH", "IDEMPOTENT_SKIP")
TASK_FAILED = "TASK_FAILED"

_TRANSIENT = re.compile(
    "|".join(
        (
            r"temporarily overloaded",
            r"service (?:is )?unavailable",
            r"rate[ -]?limit(?:ed|s)?",
            r"too many requests",
            r"5\d\d\b.{0,20}?(?:internal )?server error",
            r"gateway timeout",
            r"bad gateway",
            r"model (?:is )?(?:overloaded|unavailable)",
            r"api (?:error|unavailable|timeout)",
            r"capacity (?:exceeded|limit)",
            r"retry (?:after|later|in \d)",
            r"context (?:length|window) exceeded",
            r"token limit exceeded",
            r"gateway is draining",
            r"new tasks are not accepted",
        )
    ),
    re.IGNORECASE,
)


def session_key(job: dict[str, Any]) -> str:
    """`preferred_session_key`, else `scheduler:<job id>` for isolated jobs and `main` for
    main-session jobs; made canonical as `agent:<agent id>:<key>` (spec §11.1, §12)."""
    default = "main" if job["session_target"] == "main" else f"scheduler:{job['id']}"
    requested = job.get("preferred_session_key") or default
    if requested.startswith("agent:"):
        return requested
    return f"agent:{job.get('agent_id') or 'main'}:{requested}"


def starts_with_sentinel(reply: str, sentinel: str) -> bool:
    text = reply.strip()
    if not text.startswith(sentinel):
        return False
    rest = text[len(sentinel) :]
    return rest == "" or rest[0].isspace() or rest[0] == ":"


def classify_reply(reply: str) -> tuple[str, str | None, bool]:
    """(status, error message, deliverable) for an agent's reply (spec §11.2)."""
    if starts_with_sentinel(reply, TASK_FAILED):
        return "error", "Agent signalled TASK_FAILED", True
    if any(starts_with_sentinel(reply, s) for s in SENTINELS_WITHOUT_DELIVERY):
        return "ok", None, False
    if _TRANSIENT.search(reply.strip()[:500]):
        return "error", "Transient error in agent reply", True
    return "ok", None, bool(reply.strip())


PLAN_NOTE = (
    "This run is planning-only. Analyze, reason, and propose actions, but do not execute "
    "external side effects."
)
READ_ONLY_NOTE = (
    "This run is read-only. Inspect and summarize state, but do not execute external side effects."
)


def build_prompt(
    job: dict[str, Any],
    *,
    trigger_context: str = "",
    retrieval_context: str = "",
    idempotency_key: str | None = None,
) -> str:
    """The prompt of spec §11.3: header, notes, trigger and retrieval context, payload.
    Pending inbox messages are not injected (messages are not part of ocsched yet)."""
    lines = [f"[scheduler:{job['id']} {job['name']}]"]
    read_only = bool(job.get("execution_read_only"))
    if job.get("execution_intent") == "plan" or read_only:
        lines += ["", "[SYSTEM NOTE -- execution boundary]"]
        lines.append(READ_ONLY_NOTE if read_only else PLAN_NOTE)
        if read_only:
            lines.append(
                "Do not write files, send messages, post, mutate any state, or shell out to "
                "anything with side effects."
            )
            lines.append("Describe any changes that are needed as recommendations.")
        lines.append("[END SYSTEM NOTE]")
    if job.get("payload_thinking"):
        lines += [
            "",
            "[SYSTEM NOTE -- model policy]",
            f"Prefer reasoning depth: {job['payload_thinking']}.",
            "[END SYSTEM NOTE]",
        ]
    if job.get("job_class") == "pre_compaction_flush":
        lines += [
            "",
            "[SYSTEM: Pre-compaction flush required]",
            "Write a structured summary of active decisions, constraints, task owners and "
            "open questions.",
            "Use labeled sections; reply exactly NO_FLUSH when there is nothing to flush.",
            "[END SYSTEM]",
        ]
    if job.get("payload_scope") == "global":
        lines += [
            "",
            "[SYSTEM NOTE -- scope=global]",
            "Enumerate all sessions with an unfiltered sessions_list instead of subagents list.",
            "[END SYSTEM NOTE]",
        ]
    if trigger_context:
        lines += ["", trigger_context]
    if retrieval_context:
        lines.append(retrieval_context)
    if job.get("delivery_guarantee") == "at-least-once" and idempotency_key:
        lines += [
            "",
            f"[IDEMPOTENCY KEY: {idempotency_key}]",
            "Before any side effect, check whether this key was already handled.",
            "If it was, do nothing and reply exactly IDEMPOTENT_SKIP.",
            "Otherwise, record the key together with the side effect.",
        ]
    lines += ["", job["payload_message"]]
    return "\n".join(lines)


def trigger_context(parent_job: dict | None, parent_run: dict | None) -> str:
    """Spec §15.4, for chain and retry runs: what the parent (or failed) run did. Agent
    parents pass their reply on (the anchor loses it: quirk Q5)."""
    if parent_run is None:
        return ""
    name = parent_job["name"] if parent_job else parent_run["job_id"]
    lines = [
        "--- Trigger Context ---",
        f"Triggered by: {name}",
        f"Parent run status: {parent_run['status']}",
    ]
    if parent_run.get("shell_exit_code") is not None or parent_run.get("shell_stdout"):
        lines.append("Parent shell result:")
        if parent_run.get("shell_timed_out"):
            lines.append("Timed out: true")
        if parent_run.get("shell_exit_code") is not None:
            lines.append(f"Exit code: {parent_run['shell_exit_code']}")
        if parent_run.get("error_message"):
            lines.append(f"Error: {parent_run['error_message']}")
        for stream in ("stdout", "stderr"):
            text = parent_run.get(f"shell_{stream}") or ""
            if text:
                cut = text if len(text) <= 3000 else text[:3000] + "\n...[truncated]"
                lines += [f"{stream}:", cut]
    elif parent_run.get("summary"):
        lines += ["Parent run output:", parent_run["summary"][:5000]]
    elif parent_run.get("error_message"):
        lines += ["Parent run error:", parent_run["error_message"][:2000]]
    lines.append("---")
    return "\n".join(lines)
