"""Spec §31.9, delivery: the text a finished dispatch delivers, with its technical
details footer, in the delivery resolution order, and the fixed explanations when only
noise is left.
"""

from __future__ import annotations

from typing import Any

from .completion import checks_line, synthesize_completion_reply
from .humanize import humanized
from .noise import is_noise
from .summarize import ITEM_MARKER, prepare_lines, truncate

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


def _technical_detail(raw: str) -> str | None:
    lines = [ITEM_MARKER.sub("", line) for line in prepare_lines(raw)]
    return truncate(" ".join(line for line in lines if line), 260)


def delivery_text(text: str | None, *, checklist: Any = None, sha: str | None = None) -> str | None:
    """`humanize(text)`, plus — when a plain-English lead replaced technical text — the
    footer `\\n\\nTechnical details:\\n- <original, ≤260 chars>` and, with checklist data,
    `\\n- Checks: …`."""
    result = humanized(text)
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
    replaced = humanized(raw_summary)
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
        result = humanized(raw)
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
