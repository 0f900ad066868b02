"""Spec §31.9, what counts as nothing: generic or trivial text, internal transport
status, and the `done` command's own output.
"""

from __future__ import annotations

import re

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


def looks_like_payload(text: str) -> bool:
    if is_noise(text):
        return True
    return text[:1] in "{[" and bool(_PAYLOAD_KEYS.search(text))
