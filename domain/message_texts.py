"""What messages look like where they arrive: the inbox consumer's chat text (spec §13.3)
and the pending-messages block of an agent's prompt (spec §11.3, step 6)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .dispatch_rules.values import time_ms

DELIVERY_SENTINELS = ("HEARTBEAT_OK", "NO_FLUSH", "IDEMPOTENT_SKIP")
DEFAULT_BRAND = "Scheduler"
SUPPRESSED_NOTE = "Suppressed (empty after sentinel strip)"
CONSUMER_ACTOR = "inbox-consumer"

PROMPT_MESSAGE_LIMIT = 5
PROMPT_BODY_CHARS = 500
PLAIN_KINDS = frozenset({"text", "result", "status", "system", "spawn"})
"""Kinds whose body is injected as it is; others get a `[<kind>] (owner: …) ` prefix."""

_STREAM_LABEL = (
    re.compile(r"^stdout:\s*", re.IGNORECASE),
    re.compile(r"^stderr:\s*", re.IGNORECASE),
)
_LOG_LINE = re.compile(
    r"^\[[0-9]{4}-[0-9]{2}-[0-9]{2}\s+[0-9]{2}:[0-9]{2}:[0-9]{2}\]\s+(INFO|DEBUG|WARN)\s"
)


def inbox_brand(flag: str | None, environment: str | None, config: dict[str, Any]) -> str:
    """`--brand`, else `INBOX_BRAND`, else the dispatch config's `brand` or `name`, else
    `Scheduler`."""
    return flag or environment or config.get("brand") or config.get("name") or DEFAULT_BRAND


def clean_body(body: str | None) -> str:
    """The body without a trailing sentinel, a leading `stdout:`/`stderr:` label, blank
    lines or `[YYYY-MM-DD HH:MM:SS] INFO|DEBUG|WARN …` log lines."""
    text = (body or "").strip()
    for sentinel in DELIVERY_SENTINELS:
        if text.endswith(sentinel):
            text = text[: -len(sentinel)].strip()
    for label in _STREAM_LABEL:
        text = label.sub("", text, count=1)
    kept = [line for line in text.split("\n") if line.strip() and not _LOG_LINE.match(line.strip())]
    return "\n".join(kept).strip()


def age(created_at: str | None, now: datetime) -> str:
    """`<n>s ago`, `<n>m ago`, `<n>h ago` or `<n>d ago`; `unknown` for no time."""
    ms = time_ms(created_at) if created_at else None
    if ms is None:
        return "unknown"
    seconds = max(0, (int(now.timestamp() * 1000) - ms) // 1000)
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def consumer_text(message: dict[str, Any], brand: str, now: datetime) -> str | None:
    """`<brand> | <subject or Notification> | <age>`, a blank line, the cleaned body; None
    when nothing is left to send (the consumer acknowledges it unsent)."""
    body = clean_body(message.get("body"))
    if not body:
        return None
    subject = message.get("subject") or "Notification"
    return f"{brand} | {subject} | {age(message.get('created_at'), now)}\n\n{body}"


def prompt_block(messages: Iterable[dict[str, Any]]) -> str:
    """Spec §11.3 step 6: `--- Pending Messages ---`, then per message its `From:` line, its
    body (500 characters, then a truncation line) and `---`; empty for no messages."""
    lines: list[str] = []
    for message in messages:
        kind, body = message["kind"], message["body"] or ""
        if len(body) > PROMPT_BODY_CHARS:
            body = body[:PROMPT_BODY_CHARS] + "\n[... message truncated]"
        if kind and kind not in PLAIN_KINDS:
            owner = f" (owner: {message['owner']})" if message.get("owner") else ""
            body = f"[{kind}]{owner} {body}"
        subject = message.get("subject") or "(no subject)"
        lines += [f"From: {message['from_agent']} | {kind} | {subject}", body, "---"]
    if not lines:
        return ""
    return "\n".join(["--- Pending Messages ---", *lines])
