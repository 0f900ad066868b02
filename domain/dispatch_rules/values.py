"""Values read the way the anchor (JavaScript) reads them: rounding, truthiness, JSON
constants, ledger fields, timestamps, shell quoting. Shared by the other rule modules.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any


def js_round(value: float) -> int:
    """`Math.round`: halves go up (Python's `round` goes to the even neighbour)."""
    return math.floor(value + 0.5)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value: `[]` and `{}` are true, `""`, 0, null false."""
    if isinstance(value, (list, dict)):
        return True
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def refuse_json_constant(name: str) -> Any:
    """JSON.parse knows no NaN or Infinity; Python's json would accept them."""
    raise ValueError(f"not JSON: {name}")


def ledger_field(entry: dict[str, Any] | None, *names: str) -> Any:
    """The first of `names` present (not None) in a ledger entry; camelCase ledger keys
    (spec §31.2) and our snake_case read-model columns are both accepted."""
    if not entry:
        return None
    for name in names:
        value = entry.get(name)
        if value is not None:
            return value
    return None


def time_ms(value: Any) -> int | None:
    """A timestamp as epoch milliseconds: a number (seconds when < 1e12, else ms), an
    aware `datetime`, or ISO text (`…Z` or with an offset; no offset = UTC). None when it
    is none of these."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        return int(value * 1000 if value < 1e12 else value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def iso_from_ms(now_ms: int) -> str:
    """`Date#toISOString`: UTC, millisecond precision, `Z`."""
    moment = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ledger_time(value: Any) -> str | None:
    """A time from a ledger (ISO text or epoch milliseconds) as `Date#toISOString` text;
    None when it is not one or lies past the years a date can hold."""
    ms = time_ms(value)
    if ms is None:
        return None
    try:
        return iso_from_ms(ms)
    except (ValueError, OverflowError, OSError):
        return None


def shell_single_quote_escape(text: str) -> str:
    """The body of a single-quoted shell word: `'` becomes `'\\''`."""
    return str(text).replace("'", "'\\''")


def stripped_text(value: Any) -> str | None:
    """A string without its surrounding whitespace; None when that leaves nothing or it is
    not a string."""
    if not isinstance(value, str):
        return None
    return value.strip() or None
