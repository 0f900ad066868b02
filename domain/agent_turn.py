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
READ_ONLY_FORBIDS = (
    "Treat every write, send, post, mutation, or shelling out for side effects as forbidden."
)
RECOMMEND = (
    "If a concrete change is needed, describe it as a recommendation instead of performing it."
)
FLUSH_NOTE = (
    "[SYSTEM: Pre-compaction flush required]",
    "Write a structured summary of: active decisions, constraints, task owners, open questions.",
    "Format as labeled sections. If nothing needs flushing, respond with exactly: NO_FLUSH",
    "[END SYSTEM]",
)
GLOBAL_SCOPE_NOTE = (
    "[SYSTEM NOTE -- scope=global]",
    "This job has cross-session sub-agent visibility enabled.",
    "When you need to list or inspect sub-agents, do NOT use `subagents list`",
    "(which only shows sub-agents spawned by the current session).",
    "Instead, call `sessions_list` with no session filter to enumerate ALL active",
    "sessions across every requester, then filter by session key prefix or agent id.",
    "This lets you observe sub-agents spawned from the main Telegram session or any",
    "other session -- not just this isolated scheduler session.",
    "[END SYSTEM NOTE]",
)
IDEMPOTENCY_NOTE = (
    "This is an at-least-once job. Before performing side effects, verify this key",
    "has not already been processed. If you've already handled this exact execution,",
    "respond with: IDEMPOTENT_SKIP",
)
TRIGGER_TEXT_LIMIT = 3000


def build_prompt(
    job: dict[str, Any],
    *,
    inbox: str = "",
    trigger_context: str = "",
    retrieval_context: str = "",
    idempotency_key: str | None = None,
) -> str:
    """The prompt of spec §11.3: header, notes, pending messages (`inbox`, the post
    office's block), trigger and retrieval context, payload."""
    lines = [f"[scheduler:{job['id']} {job['name']}]"]
    lines += execution_note(job)
    if job.get("payload_thinking"):
        lines += [
            "",
            "[SYSTEM NOTE -- model policy]",
            f"Prefer reasoning depth: {job['payload_thinking']}.",
            "[END SYSTEM NOTE]",
        ]
    if job.get("job_class") == "pre_compaction_flush":
        lines += ["", *FLUSH_NOTE]
    if job.get("payload_scope") == "global":
        lines += ["", *GLOBAL_SCOPE_NOTE]
    if inbox:
        lines += ["", inbox]
    if trigger_context:
        lines += ["", trigger_context]
    if retrieval_context:
        lines.append(retrieval_context)
    if job.get("delivery_guarantee") == "at-least-once" and idempotency_key:
        lines += ["", f"[IDEMPOTENCY KEY: {idempotency_key}]", *IDEMPOTENCY_NOTE]
    lines += ["", job["payload_message"]]
    return "\n".join(lines)


def execution_note(job: dict[str, Any]) -> list[str]:
    """Spec §11.3 step 2, with an empty line before it: the planning-only or read-only
    boundary (planning wins when both are set); read-only forbids every side effect."""
    read_only = bool(job.get("execution_read_only"))
    planning = job.get("execution_intent") == "plan"
    if not planning and not read_only:
        return []
    lines = ["", "[SYSTEM NOTE -- execution boundary]", PLAN_NOTE if planning else READ_ONLY_NOTE]
    if read_only:
        lines.append(READ_ONLY_FORBIDS)
    return [*lines, RECOMMEND, "[END SYSTEM NOTE]"]


def trigger_context(parent_job: dict | None, parent_run: dict | None) -> str:
    """Spec §15.4, for chain and retry runs: what the parent (or failed) run did. A shell
    parent's result (its exit, signal, streams and offloaded files); an agent parent's
    reply or error (the anchor renders every parent as a shell parent and loses it: Q5)."""
    if parent_run is None:
        return ""
    name = parent_job["name"] if parent_job else parent_run["job_id"]
    lines = [
        "--- Trigger Context ---",
        f"Triggered by: {name}",
        f"Parent run status: {parent_run['status']}",
    ]
    if is_shell_run(parent_run):
        lines.append("Parent shell result:")
        if parent_run.get("shell_timed_out"):
            lines.append("Timed out: true")
        if parent_run.get("shell_exit_code") is not None:
            lines.append(f"Exit code: {parent_run['shell_exit_code']}")
        if parent_run.get("shell_signal"):
            lines.append(f"Signal: {parent_run['shell_signal']}")
        if parent_run.get("error_message"):
            lines.append(f"Error: {parent_run['error_message']}")
        for stream in ("stdout", "stderr"):
            text = parent_run.get(f"shell_{stream}") or ""
            if text.strip():
                lines += [f"{stream}:", _cut(text, TRIGGER_TEXT_LIMIT)]
            path = parent_run.get(f"shell_{stream}_path")
            if path:
                size = parent_run.get(f"shell_{stream}_bytes") or 0
                lines.append(f"{stream} file: {path} ({size} bytes)")
    elif (parent_run.get("summary") or "").strip():
        lines += ["Parent run output:", parent_run["summary"][:5000]]
    elif (parent_run.get("error_message") or "").strip():
        lines += ["Parent run error:", parent_run["error_message"][:2000]]
    lines.append("---")
    return "\n".join(lines)


def messages_in(inbox: str) -> int:
    """How many messages a `--- Pending Messages ---` block holds: each starts with its
    `From:` line, right after the header or the previous message's `---`."""
    lines = inbox.split("\n")
    return sum(
        1
        for before, line in zip(lines, lines[1:], strict=False)
        if line.startswith("From: ") and before in ("--- Pending Messages ---", "---")
    )


def is_shell_run(run: dict[str, Any]) -> bool:
    """A run of a shell command: any shell column holds something (a stored run's
    `shell_timed_out` is 0, never null, so it alone says nothing)."""
    return (
        run.get("shell_exit_code") is not None
        or bool(run.get("shell_signal") or run.get("shell_timed_out"))
        or any(run.get(f"shell_{s}") or run.get(f"shell_{s}_path") for s in ("stdout", "stderr"))
    )


def _cut(text: str, limit: int) -> str:
    """The anchor's cut: past `limit`, the first `limit - 16` characters and a marker."""
    if len(text) <= limit:
        return text
    return text[: limit - 16] + "\n...[truncated]"


def context_summary(
    job: dict[str, Any],
    *,
    triggered_by_run: str | None,
    parent_job: dict | None,
    parent_run: dict | None,
    messages_injected: int = 0,
    retrieval_context: str = "",
) -> dict[str, Any]:
    """Spec §11.4: what an agent run's prompt was made of, stored as its
    `context_summary`; a chain or retry run's parent and, for a shell parent, its exit."""
    summary: dict[str, Any] = {
        "messages_injected": messages_injected,
        "scope": job.get("payload_scope") or "own",
        "job_class": job.get("job_class") or "standard",
        "delivery_guarantee": job.get("delivery_guarantee") or "at-most-once",
        "context_retrieval": job.get("context_retrieval") or "none",
        "execution_intent": job.get("execution_intent") or "execute",
        "execution_read_only": bool(job.get("execution_read_only")),
        "payload_model": job.get("payload_model") or None,
        "payload_thinking": job.get("payload_thinking") or None,
        "auth_profile": job.get("auth_profile") or None,
    }
    if triggered_by_run and parent_run is None:
        summary.update(triggered_by_run=triggered_by_run, parent_run_missing=True)
    elif parent_run is not None:
        summary.update(
            triggered_by_run=parent_run["id"],
            parent_job_id=parent_run["job_id"],
            parent_job_name=parent_job["name"] if parent_job else None,
            parent_run_status=parent_run["status"],
        )
        if is_shell_run(parent_run):
            summary.update(
                parent_shell_exit_code=parent_run.get("shell_exit_code"),
                parent_shell_signal=parent_run.get("shell_signal"),
                parent_shell_timed_out=bool(parent_run.get("shell_timed_out")),
                parent_shell_stdout_path=parent_run.get("shell_stdout_path"),
                parent_shell_stderr_path=parent_run.get("shell_stderr_path"),
            )
    if retrieval_context:
        summary["retrieval_results"] = retrieval_context.count("\n[")
    return summary
