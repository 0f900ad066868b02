"""One way to print: JSON (2-space indent), aligned tables, times, progress, one-line errors.

The `--json` envelope rule, for every command: a command that reads prints what it read,
bare (`print_json(record)` or a list); a command that does something (records events,
checks a spec, rebuilds) prints `{"ok": true, ...}` (`print_done`); a failure prints
`{"ok": false, "error": "<one line>"}` (commands/cli.py). Without `--json` the same
commands print text: a line, a table, or (`jobs get`, `runs get`, `schema`: single
records with no human form, spec §5.2) the JSON itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
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


def print_done(json_mode: bool, line: str, **fields: Any) -> None:
    """What a command that did something prints: `{"ok": true, **fields}` under --json,
    else `line`."""
    if json_mode:
        print_json({"ok": True, **fields})
    else:
        print(line)


def print_rows(
    json_mode: bool,
    records: list[dict[str, Any]],
    empty: str,
    table: Callable[[list[dict[str, Any]]], str],
) -> None:
    """What a listing prints: the records under --json, else `empty` or `table(records)`."""
    if json_mode:
        print_json(records)
    elif not records:
        print(empty)
    else:
        print(table(records))


def local_time(ts: str | None, seconds: bool = True, named: bool = False) -> str | None:
    """TS text (UTC, as stored) as the local time of day, `2026-12-05 08:50:47`; the zone
    is in the column's header (`timed`), or with `named` after the time: its own name
    (`CEST` in summer, `CET` in winter)."""
    if not ts:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    shown = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return moment.astimezone().strftime(shown + (" %Z" if named else ""))


def zone() -> str:
    """The local zone's name for a column of times: `UTC`, `JST`, or both of its names
    where it keeps summer time (`CET/CEST`): each time is shown in the offset of its day."""
    import time

    standard, summer = time.tzname
    if time.daylight and summer and summer != standard:
        return f"{standard}/{summer}"
    return standard or "local"


def timed(header: str) -> str:
    """A column header with the zone its times are in: `STARTED (UTC)`."""
    return f"{header} ({zone()})"


@contextmanager
def progress(
    json_mode: bool, total: int, what: str, *, piped: bool = False
) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on the terminal (tqdm, imported only then) for long work: yields
    `advance(done)` to report how much of `total` is done, or None under --json or when
    stdout or stderr is not a terminal (pipes, logs and tests stay clean). `piped`: the
    command's output is meant for a file or a pipe (`export > log.jsonl`); stderr alone
    decides."""
    terminal = sys.stderr.isatty() and (piped or sys.stdout.isatty())
    if json_mode or total <= 0 or not terminal:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=what, unit="event", unit_scale=True, leave=False) as bar:

        def advance(done: int) -> None:
            bar.update(min(done, total) - bar.n)

        yield advance


def short_id(value: str | None) -> str:
    """The anchor's shortened id: 8 characters and `..`."""
    return f"{value[:8]}.." if value else "-"


def render_table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    width: int = 0,
    keep: Collection[int] = (),
) -> str:
    """Columns aligned; the widest columns are cut (with `…`) until a line fits `width`
    (the terminal's); the columns in `keep` (times, ids) are never cut."""
    if not width:
        import shutil

        width = shutil.get_terminal_size((80, 24)).columns
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    gap = 2
    cuttable = [i for i in range(len(widths)) if i not in keep]
    while cuttable and sum(widths) + gap * (len(widths) - 1) > width:
        widest = max(cuttable, key=widths.__getitem__)
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


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Output piped to a reader that stops early (`| head`) ends the command quietly, as
    `yes | head` does, not with a broken-pipe error."""
    try:
        yield
    except BrokenPipeError:
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit's flush)
