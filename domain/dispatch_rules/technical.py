"""Spec §31.9, "Technical rewrite": when completion text reads as code or a commit
subject, and the plain-English lead and follow-up that replace it.
"""

from __future__ import annotations

import re

from .summarize import (
    URL,
    as_sentence,
    clean_markdown,
    prepare_lines,
    summarize_prose,
    truncate,
)

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


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _keyword_hits(text: str) -> int:
    return len({hit.lower() for hit in _TECHNICAL_KEYWORDS.findall(text)})


def looks_technical(raw: str, summarized: str | None = None) -> bool:
    """A commit subject, a leading file path, code-ish tokens, `;`/`|` delimiters or dense
    technical keywords, not outweighed by human cues (§31.9 "Technical rewrite"). URLs are
    not code: they are removed first."""
    raw = URL.sub("", raw)
    cleaned = " ".join(clean_markdown(raw).split())
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
    if summarized and not commit and not file_prefix and summarize_prose([summarized]):
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
    cleaned = _COMMIT_PREFIX.sub("", clean_markdown(text.strip()))
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


def technical_rewrite(raw: str, summarized: str | None) -> str | None:
    """The plain-English lead that replaces technical text (§31.9)."""
    fragments = [
        cleaned
        for line in prepare_lines(raw)
        for piece in _FRAGMENT_SPLIT.split(line)
        if piece.strip() and (cleaned := _clean_fragment(piece))
    ]
    combined = (clean_markdown(raw) + " " + " ".join(fragments)).lower()
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
        action = as_sentence(chosen[0])
    elif chosen:
        action = f"{chosen[0]} and {_lower_first(chosen[1])}."
    elif summarized and _plain_english(summarized):
        action = as_sentence(summarized)
    else:
        action = FALLBACK_LEADS[theme]
    return truncate(f"{action} {FOLLOW_UPS[theme]}")
