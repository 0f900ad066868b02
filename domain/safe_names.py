"""Ids that become path segments: the one rule for them (issue 9).

An agent id names `<openclaw home>/agents/<agent id>/…`, a run id names
`<artifacts>/runs/<run id>/…`. Such an id must be one safe segment: letters, digits, "-",
"_" and "." (not first, so neither "." nor ".." nor a hidden name), at most 128 characters.
OpenClaw's own agent ids (`[a-z0-9][a-z0-9_-]*`, ≤64) and our run ids (UUIDs) all pass;
a separator, a colon (which would also split a session key `agent:<id>:…`), a space or
any other character is refused. Labels are not checked here: they never become a path.

Pure: the adapters check again that every path they build stays under its root.
"""

from __future__ import annotations

import json
import re

from .errors import ValidationError

MAX_SEGMENT_LENGTH = 128

_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", re.ASCII)


def is_safe_segment(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_SEGMENT_LENGTH
        and _SAFE_SEGMENT.fullmatch(value) is not None
    )


def check_path_segment(name: str, value: str) -> str:
    """`value` if it is a safe path segment, else ValidationError naming `name` (a field or
    a flag) with the rule and the value, on one line."""
    if is_safe_segment(value):
        return value
    shown = json.dumps(value[:64] + ("…" if len(value) > 64 else ""), ensure_ascii=False)
    raise ValidationError(
        f'{name} must be a safe name: letters, digits, "-", "_" or "." (not first), '
        f"at most {MAX_SEGMENT_LENGTH} characters; got {shown}"
    )
