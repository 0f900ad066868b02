"""Spec §31.8: the completion payload, version 2, and what a checklist and SHA state
(the synthesized reply and the `Checks:` line).
"""

from __future__ import annotations

import json
from typing import Any

from .git_sha import short_sha
from .humanize import humanize
from .values import iso_from_ms, stripped_text


def _clone_checklist(checklist: Any) -> dict[str, Any] | None:
    if not isinstance(checklist, dict):
        return None
    return json.loads(json.dumps(checklist))


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
    raw_summary = stripped_text(summary)
    fields = _clone_checklist(checklist)
    sha_text = stripped_text(sha)
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
