"""Context retrieval (spec §20): prior runs' summaries injected into an agent's prompt.

Ranking itself is SQLite FTS5's BM25 over the candidates' summaries, indexed in memory at
prompt time (projections/views.py `prior_runs`); this module holds the query and the
block's layout. The anchor injects run metadata instead of what prior runs said (quirk
Q4); ocsched injects the summaries.
"""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        "the a an is are was were be been being have has had do does did will would shall "
        "should may might must can could to of in for on with at by from as into through "
        "during before after above below between and but or nor not so yet both either "
        "neither each every all any few more most other some such no only own same than too "
        "very just it its this that these those i me my we our you your he him his she her "
        "they them their what which who whom"
    ).split()
)
HYBRID_CANDIDATES = 50


def query_terms(text: str) -> list[str]:
    """Lower-case words of two or more letters or digits, stopwords dropped."""
    words = (re.sub(r"[^a-z0-9]", "", token) for token in text.lower().split())
    return [w for w in dict.fromkeys(words) if len(w) > 1 and w not in STOPWORDS]


def match_expression(text: str) -> str | None:
    """An FTS5 MATCH expression: any of the query's terms, each quoted (no FTS syntax
    from the user's text can get through)."""
    terms = query_terms(text)
    return " OR ".join(f'"{term}"' for term in terms) if terms else None


def context_block(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["--- Prior Run Context ---"]
    lines += [f"[{row['started_at']}] {' '.join((row['summary'] or '').split())}" for row in rows]
    lines.append("--- End Prior Run Context ---")
    return "\n".join(lines)
