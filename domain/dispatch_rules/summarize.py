"""Spec §31.9, cleanup and summarizing: markdown and noise lines removed, structured text
to a heading and highlights, prose to its leading sentences, the deal-scanner report.
"""

from __future__ import annotations

import re

from .noise import is_generic, looks_like_payload
from .values import stripped_text

MAX_SENTENCES = 5
MAX_CHARS = 700
MAX_ITEMS = 3
# Beyond this a text is a dump: only its beginning is read (JSON is still parsed whole).
MAX_ANALYZED_CHARS = 20_000

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STACK_LINE = re.compile(r"^\s*at\s+\S+")
_SEPARATOR_LINE = re.compile(r"^[`~=_-]{3,}$")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?$")
_ITEM = re.compile(r"^(?:[-*•]\s+|\d+[.)]\s+|#\d+\b)")
ITEM_MARKER = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
URL = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]}]*(\s+)")


def truncate(text: str | None, limit: int = MAX_CHARS) -> str | None:
    text = stripped_text(text)
    if not text:
        return None
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def as_sentence(text: str | None) -> str | None:
    text = stripped_text(text)
    if not text:
        return None
    return text if text[-1] in ".!?" else text + "."


def clean_markdown(text: str) -> str:
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1", text)
    text = re.sub(r"`([^`\n]+)`", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"__([^_]+)__", r"\1", text)
    text = re.sub(r"^#{1,6}\s+", "", text, flags=re.MULTILINE)
    return re.sub(r"^>\s?", "", text, flags=re.MULTILINE)


def prepare_lines(text: str) -> list[str]:
    lines = []
    for line in clean_markdown(text).split("\n"):
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
    cleaned = " ".join(URL.sub("", clean_markdown(text)).split())
    return truncate(cleaned, limit)


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
    lines = prepare_lines(text)
    title = next((line for line in lines if re.search(r"deal scanner", line, re.I)), None)
    baseline = next((line for line in lines if re.match(r"^Baseline:", line, re.I)), None)
    no_deals = next((line for line in lines if re.search(r"no deals", line, re.I)), None)
    deals = [_deal_item(line) for line in lines if re.match(r"^#\d+", line)]
    items = [item for item in deals if item][:MAX_ITEMS]
    parts = []
    if title:
        parts.append(as_sentence(re.sub(r"^[^\w#]+", "", title)))
    if baseline:
        parts.append(as_sentence(baseline))
    if no_deals and not items:
        parts.append(as_sentence(no_deals))
    if items:
        parts.append(f"Top deals: {'; '.join(items)}.")
    return truncate(" ".join(part for part in parts if part))


def _summarize_structured(lines: list[str]) -> str | None:
    items = [line for line in lines if _ITEM.match(line)]
    others = [line for line in lines if not _ITEM.match(line)]
    if not items:
        compact = truncate(" ".join(lines[:4]), 260)
        return as_sentence(compact)
    heading = others[0] if others else None
    context = " ".join(others[1:3])
    shortened = [_shorten(ITEM_MARKER.sub("", line), 110) for line in items[:MAX_ITEMS]]
    highlights = [highlight.rstrip(".;") for highlight in shortened if highlight]
    parts = [as_sentence(heading), as_sentence(truncate(context, 180))]
    if highlights:
        parts.append(f"Highlights: {'; '.join(highlights)}.")
    return truncate(" ".join(part for part in parts if part))


def summarize_prose(lines: list[str]) -> str | None:
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
    return " ".join(kept) if kept else truncate(text)


def summarize(raw: str) -> str | None:
    """Noise, structure, prose (§31.9), for text that is not (or no longer) JSON."""
    if looks_like_payload(raw):
        return None
    if _looks_like_deal_report(raw):
        return _summarize_deal_report(raw)
    lines = prepare_lines(raw)
    if not lines:
        return None
    items = sum(1 for line in lines if _ITEM.match(line))
    if len(lines) >= 4 or any("|" in line for line in lines) or items >= 2:
        summary = _summarize_structured(lines)
        if summary and not is_generic(summary):
            return summary
    return summarize_prose(lines)
