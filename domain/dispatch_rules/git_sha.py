"""Spec §31.7's git-SHA gate: does a task prompt run a real git command, what a SHA
looks like, and its short form.
"""

from __future__ import annotations

import re

from .values import stripped_text

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


SHA_PATTERN = re.compile(r"[0-9a-f]{7,40}", re.IGNORECASE)


def short_sha(sha: str | None) -> str | None:
    text = stripped_text(sha)
    if not text:
        return None
    return text[:7] if SHA_PATTERN.fullmatch(text) else text
