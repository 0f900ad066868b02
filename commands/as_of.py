"""`--as-of TIME` on the commands that read (`jobs get`, `jobs list`, `runs list`,
`status`, `approvals list`, `dispatch list`): the same command, answered from read models
built from the events up to TIME (`projections.as_of`) instead of the live ones.

The scratch read models are kept under the home (`as-of/<moment>.db`, the newest
`KEPT`), so asking again about the same moment only applies what was appended since, and
a new moment starts from the kept store holding the longest prefix of the log before it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocsched.projections import views

from .context import Context
from .output import CommandError, progress

if TYPE_CHECKING:
    import argparse

FOLDER = "as-of"
KEPT = 8
"""Scratch stores kept (the most recently used); older ones are removed."""

Handler = Callable[[Context, "argparse.Namespace"], None]


def add_as_of(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--as-of",
        metavar="TIME",
        help="answer as of TIME (ISO 8601, UTC without an offset; or 2h ago), from the events"
        " up to it",
    )


@dataclass
class PastContext(Context):
    """A context whose read models are a scratch store as of `now`; it records nothing."""

    scratch: str = ""

    def views(self) -> sqlite3.Connection | None:
        if self._views is None:
            self._views = views.open_views(self.scratch, event_table=False)
        return self._views

    def save(self, *aggregates: Any) -> None:
        raise CommandError("--as-of answers about the past: nothing can be recorded")

    def release(self) -> None:
        """Close what this context opened (the log is the live context's)."""
        self._close_views()


def answering_as_of(handler: Handler) -> Handler:
    """`handler` run with a `PastContext` as of the command's `--as-of`."""

    def run(ctx: Context, args: argparse.Namespace) -> None:
        past = past_context(ctx, parse_as_of(args.as_of, ctx.now))
        try:
            handler(past, args)
        finally:
            past.release()

    return run


def parse_as_of(text: str, now: datetime) -> datetime:
    """The moment `--as-of` names: an ISO 8601 time, or a duration before `now` (`2h`). A
    time given to the second (as every time is shown) takes in that whole second."""
    from datetime import timedelta

    from .events import is_duration, parse_moment

    moment = parse_moment(text, "--as-of", now)
    if not is_duration(text) and "." not in text and "," not in text:
        moment = min(moment + timedelta(microseconds=999_999), datetime.max.replace(tzinfo=UTC))
    return moment


def past_context(ctx: Context, moment: datetime) -> PastContext:
    """A context answering from the read models as of `moment`, built (or brought up to
    date) from `ctx`'s log."""
    from ocsched.projections.as_of import build

    path = scratch_path(ctx, moment)
    folder = Path(path).parent
    bases = [str(other) for other in folder.glob("*.db") if str(other) != path]
    with progress(ctx.json, ctx.log.max_position(), "as of") as advance:
        build(ctx.log, path, moment, advance, bases)
    _forget_old(folder)
    return PastContext(
        json=ctx.json,
        actor=ctx.actor,
        correlation_id=ctx.correlation_id,
        now=moment,
        settings=ctx.settings,
        _log=ctx.log,
        _secured=True,
        scratch=path,
    )


def scratch_path(ctx: Context, moment: datetime) -> str:
    """The moment's scratch store under the home; in a private temporary folder when this
    user may not write the home (a read-only store)."""
    import tempfile

    from ocsched.adapters.settings import prepare_private_file

    moment = moment.astimezone(UTC)
    name = f"{moment.year:04d}{moment:%m%dT%H%M%S}.{moment.microsecond:06d}Z.db"
    for folder in (ctx.settings.home, Path(tempfile.gettempdir()) / f"ocsched-{os.getuid()}"):
        path = str(folder / FOLDER / name)
        try:
            prepare_private_file(path)
            os.utime(path)
        except OSError:
            continue
        return path
    raise CommandError(f"--as-of: no folder to build the read models of {moment} in")


def _forget_old(folder: Path) -> None:
    stores = sorted(folder.glob("*.db"), key=lambda p: p.stat().st_mtime, reverse=True)
    for store in stores[KEPT:]:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
