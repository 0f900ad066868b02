"""`ocsched replay <export> --into DIR`: an export's events into a new log in a scratch
home, and read models built from them; `ocsched projections verify`: the read models
rebuilt from the log into a scratch store and compared row by row with the live ones."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .argv import command
from .context import Context
from .output import CommandError, print_done, progress

if TYPE_CHECKING:
    import argparse

BATCH = 5000
"""Events inserted per transaction."""


class _Line(msgspec.Struct):
    aggregate_id: str
    version: int
    topic: str
    state: msgspec.Raw


def replay(ctx: Context, path: str, into: str) -> dict[str, Any]:
    """Load the export at `path` (`-`: stdin) into a new log at `into` and build its read
    models; returns what was done. `into` must hold no log yet."""
    scratch = scratch_home(ctx, into)
    try:
        log = scratch.log
        if log.max_position():
            raise CommandError(
                f"{scratch.settings.database} already holds events; replay into a new folder"
            )
        events = _insert(log, _lines(path))
        with progress(ctx.json, events, "read models") as advance:
            from ocsched.projections.runner import all_projections, rebuild_together

            rebuild_together(log, scratch.store, all_projections(), progress=advance)
    finally:
        scratch.close()
    return {
        "events": events,
        "home": str(Path(into).resolve()),
        "database": scratch.settings.database,
    }


def scratch_home(ctx: Context, folder: str) -> Context:
    """A context on the SQLite store of the home `folder` (its log and read models in
    `ocsched.db`), with this invocation's other settings (the cipher key among them)."""
    home = Path(folder).resolve()
    settings = dataclasses.replace(
        ctx.settings,
        home=home,
        database=str(home / "ocsched.db"),
        read_model_db=None,
        artifacts=None,
    )
    return Context(json=ctx.json, actor=ctx.actor, now=ctx.now, settings=settings)


def _lines(path: str) -> Iterator[tuple[int, _Line]]:
    decode = msgspec.json.Decoder(_Line).decode
    with _stdin() if path == "-" else _open(path) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield number, decode(line)
            except msgspec.DecodeError as error:
                raise CommandError(f"{path}:{number}: not an exported event ({error})") from None


def _stdin() -> Any:
    """stdin's bytes, left open (text without bytes beneath, as a test gives, encoded)."""
    import contextlib
    import io

    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:
        binary = io.BytesIO(sys.stdin.read().encode())
    return contextlib.nullcontext(binary)


def _open(path: str) -> Any:
    try:
        return open(path, "rb")
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}") from None


def _insert(log: Any, lines: Iterator[tuple[int, _Line]]) -> int:
    """The lines' events appended to `log` in their order, a batch per transaction, their
    states enciphered and compressed as the log's own events would be."""
    from eventsourcing.persistence import IntegrityError, StoredEvent

    mapper = log.mapper
    cipher, compressor = mapper.cipher, mapper.compressor
    count = 0
    batch: list[StoredEvent] = []

    def flush(number: int) -> None:
        try:
            log.recorder.insert_events(batch)
        except IntegrityError:
            raise CommandError(
                f"line {number} or one before it repeats an aggregate's version: the export"
                " is not one log's events in order"
            ) from None
        batch.clear()

    number = 0
    for number, line in _checked(lines):
        state = bytes(line.state)
        if compressor:
            state = compressor.compress(state)
        if cipher:
            state = cipher.encrypt(state)
        batch.append(StoredEvent(line.aggregate_id, line.version, line.topic, state))
        count += 1
        if len(batch) >= BATCH:
            flush(number)
    if batch:
        flush(number)
    return count


def _checked(lines: Iterator[tuple[int, _Line]]) -> Iterator[tuple[int, _Line]]:
    """Each line's topic must name an event class this version knows."""
    from eventsourcing.utils import resolve_topic

    known: set[str] = set()
    for number, line in lines:
        if line.topic not in known:
            try:
                resolve_topic(line.topic)
            except Exception:  # noqa: BLE001 - any failure to import it
                raise CommandError(f"line {number}: unknown event topic {line.topic}") from None
            known.add(line.topic)
        yield number, line


# projections verify


def verify(ctx: Context) -> list[str]:
    """The live read models brought up to date, every projection rebuilt from the log up to
    the same position into a scratch store, and each table compared row by row; returns a
    line for each row that differs (empty: they agree)."""
    import tempfile

    from ocsched.projections.as_of import Through
    from ocsched.projections.runner import all_projections, rebuild_together
    from ocsched.projections.store import ReadModelStore

    ctx.catch_up()
    position = min(ctx.store.position(p.name) for p in all_projections())
    with tempfile.TemporaryDirectory(prefix="ocsched-verify-") as folder:
        os.chmod(folder, 0o700)
        path = os.path.join(folder, "rebuilt.db")
        store = ReadModelStore(path)
        try:
            with progress(ctx.json, position, "rebuild") as advance:
                rebuild_together(
                    Through(ctx.log, position), store, all_projections(), progress=advance
                )
        finally:
            store.datastore.close()
        tables = [table for p in all_projections() for table in p.tables]
        return _differences(ctx.settings.read_model_path, path, tables)


def _differences(live_path: str, rebuilt_path: str, tables: list[str]) -> list[str]:
    from ocsched.projections.views import read_only_uri

    live = sqlite3.connect(read_only_uri(live_path), uri=True)
    rebuilt = sqlite3.connect(rebuilt_path)
    try:
        found: list[str] = []
        for table in tables:
            found += _table_differences(table, live, rebuilt)
        return found
    finally:
        live.close()
        rebuilt.close()


def _table_differences(
    table: str, live: sqlite3.Connection, rebuilt: sqlite3.Connection
) -> list[str]:
    columns = [row[1] for row in rebuilt.execute(f"PRAGMA table_info([{table}])")]
    keys = [
        row[1]
        for row in sorted(rebuilt.execute(f"PRAGMA table_info([{table}])"), key=lambda r: r[5])
        if row[5]
    ]
    listed = ", ".join(f"[{c}]" for c in columns)
    try:
        mine = Counter(live.execute(f"SELECT {listed} FROM [{table}]"))
    except sqlite3.OperationalError as error:
        return [f"{table}: {error}"]
    expected = Counter(rebuilt.execute(f"SELECT {listed} FROM [{table}]"))
    extra, missing = mine - expected, expected - mine
    if not extra and not missing:
        return []
    at = [columns.index(k) for k in keys] or list(range(len(columns)))

    def key(row: tuple) -> tuple:
        return tuple(row[i] for i in at)

    rebuilt_rows = {key(row): row for row in missing}
    found = []
    for row in extra:
        name = ", ".join(f"{columns[i]}={row[i]!r}" for i in at)
        other = rebuilt_rows.pop(key(row), None)
        if other is None:
            found.append(f"{table} [{name}]: not in the rebuilt read models")
            continue
        changed = [
            f"{column} {mine_value!r} (rebuilt: {their_value!r})"
            for column, mine_value, their_value in zip(columns, row, other, strict=True)
            if mine_value != their_value
        ]
        found.append(f"{table} [{name}]: " + "; ".join(changed))
    for other in rebuilt_rows.values():
        name = ", ".join(f"{columns[i]}={other[i]!r}" for i in at)
        found.append(f"{table} [{name}]: missing from the live read models")
    return found


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "replay",
        cli_replay,
        help="build a scratch home (its log and read models) from an export",
        usage="<log.jsonl|-> --into DIR",
        description="The events of an `ocsched export` appended, in their order, to a new log in"
        " the home DIR,\nand its read models built: read it with SCHEDULER_HOME=DIR ocsched …",
        examples=[
            "ocsched export > log.jsonl && ocsched replay log.jsonl --into /tmp/replayed",
            "SCHEDULER_HOME=/tmp/replayed ocsched jobs list",
            "ocsched export --until 2026-12-05T09:00:00Z | ocsched replay - --into /tmp/at-nine",
        ],
    )
    parser.add_argument("path", metavar="<log.jsonl|->", help="an export (- for stdin)")
    parser.add_argument("--into", metavar="DIR", required=True, help="the scratch home (new)")


def cli_replay(ctx: Context, args: argparse.Namespace) -> None:
    done = replay(ctx, args.path, args.into)
    line = f"Replayed {done['events']} events into {done['home']}"
    print_done(ctx.json, line, replayed=done["events"], home=done["home"])


def cli_verify(ctx: Context, args: argparse.Namespace) -> None:
    found = verify(ctx)
    if found:
        if not ctx.json:
            for line in found:
                print(line)
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise CommandError(
            f"{len(found)} read-model rows differ from a rebuild from the log: {shown}"
        )
    print_done(ctx.json, "The read models agree with a rebuild from the log", differences=0)
