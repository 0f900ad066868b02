"""One way to print: JSON (2-space indent), aligned tables, and one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


class CommandError(Exception):
    """A failure to report as one line, with exit status `exit_code` (1 unless a command's
    contract says otherwise, e.g. 2 for the dispatch CLI's argument errors, spec §31.1)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CommandError):
    """Wrong arguments; the message is the usage line."""


def as_utf8(text: str) -> str:
    """`text` as text UTF-8 can hold: invalid UTF-8 that Python read as surrogate escapes
    (argv, the environment, piped stdin) shown as `\\xff`, any other lone surrogate as
    `\\ud800`. Valid text comes back as it is (`as_utf8(t) is t`)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def to_json(value: Any) -> str:
    import msgspec

    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def print_json(value: Any) -> None:
    sys.stdout.write(to_json(value) + "\n")


def short_id(value: str | None) -> str:
    """The anchor's shortened id: 8 characters and `..`."""
    return f"{value[:8]}.." if value else "-"


def render_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], width: int = 0) -> str:
    """Columns aligned; the widest columns are cut (with `…`) until a line fits `width`."""
    if not width:
        import shutil

        width = shutil.get_terminal_size((80, 24)).columns
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    gap = 2
    while sum(widths) + gap * (len(widths) - 1) > width:
        widest = max(range(len(widths)), key=widths.__getitem__)
        if widths[widest] <= 6:
            break
        widths[widest] -= 1
    lines = [_line(headers, widths, gap), _line(["-" * w for w in widths], widths, gap)]
    lines += [_line(row, widths, gap) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return str(value).replace("\n", " ")


def _line(values: Sequence[str], widths: Sequence[int], gap: int) -> str:
    parts = [_fit(value, w).ljust(w) for value, w in zip(values, widths, strict=True)]
    return (" " * gap).join(parts).rstrip()


def _fit(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"
