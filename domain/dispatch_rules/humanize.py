"""Spec §31.9: completion-text normalization ("humanizing"), the entry point: JSON
unwrapped, then noise, structure, prose, and a plain-English lead for technical text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..json_text import parse_json
from .noise import looks_like_payload
from .summarize import MAX_ANALYZED_CHARS, summarize
from .technical import looks_technical, technical_rewrite
from .values import stripped_text


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
            return parse_json(candidate)
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


class Humanized(msgspec.Struct, frozen=True):
    """Humanized text, and the technical text a plain-English lead replaced (for the
    delivery footer)."""

    text: str
    technical_source: str | None  # the technical text a lead replaced


def _humanize_plain(raw: str) -> Humanized | None:
    raw = raw[:MAX_ANALYZED_CHARS]
    summarized = summarize(raw)
    if not summarized:
        return None
    if looks_technical(raw, summarized):
        lead = technical_rewrite(raw, summarized)
        if lead:
            return Humanized(lead, raw)
    return Humanized(summarized, None)


def humanized(text: Any) -> Humanized | None:
    """`humanize`, keeping what a technical rewrite replaced."""
    raw = stripped_text(text)
    if not raw:
        return None
    parsed = _embedded_json(raw)
    if parsed is not _NOT_JSON:
        for candidate in _strings_in(parsed):
            result = _humanize_plain(candidate)
            if result:
                return result
        if looks_like_payload(raw):
            return None
    return _humanize_plain(raw)


def humanize(text: str | None) -> str | None:
    """Completion-text normalization (spec §31.9); None means "nothing to say": empty,
    noise, generic, or JSON with nothing meaningful in it."""
    result = humanized(text)
    return result.text if result else None
