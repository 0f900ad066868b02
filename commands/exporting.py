"""`ocsched export`: every event of the log (or those the `events` filters let through) as
JSON lines on stdout, with its metadata and its whole stored state, for an archive, an
auditor's tools, or `ocsched replay`."""

from __future__ import annotations

import io
import sys
from typing import IO, TYPE_CHECKING

import msgspec

from .argv import command
from .context import Context
from .events import add_filter_arguments, event_filter, stored_events
from .output import progress, reader_may_leave

if TYPE_CHECKING:
    import argparse


class Exported(msgspec.Struct):
    """One line of an export. `state` is the event's stored fields as JSON (deciphered:
    an export is plain text, to be kept as safely as the key), `time` the stored RFC 3339
    timestamp; the other fields repeat what is in it, for reading and filtering."""

    position: int
    time: str
    type: str
    aggregate_id: str
    version: int
    actor: str
    origin: str
    correlation_id: str
    cause: str | None
    topic: str
    state: msgspec.Raw


PROGRESS_EVERY = 1000


def export(
    ctx: Context, args: argparse.Namespace, out: IO[bytes] | io.BufferedIOBase | None = None
) -> int:
    """Write the chosen events to `out` (stdout), one JSON object a line, as they are read;
    returns how many."""
    chosen = event_filter(ctx, args)
    encode = msgspec.json.Encoder().encode
    out = out or sys.stdout.buffer
    written = shown = 0
    with progress(False, ctx.log.max_position(), "export", piped=True) as advance:
        for stored in stored_events(ctx):
            if chosen.matches(stored):
                meta = stored.meta
                line = Exported(
                    position=stored.position,
                    time=_rfc3339(stored.time),
                    type=stored.type,
                    aggregate_id=stored.aggregate_id,
                    version=stored.version,
                    actor=meta.actor,
                    origin=meta.origin,
                    correlation_id=meta.correlation_id,
                    cause=meta.cause,
                    topic=stored.topic,
                    state=msgspec.Raw(stored.state),
                )
                out.write(encode(line) + b"\n")
                written += 1
            if advance is not None and stored.position - shown >= PROGRESS_EVERY:
                advance(shown := stored.position)
    out.flush()
    return written


def _rfc3339(moment: object) -> str:
    return msgspec.json.encode(moment).decode()[1:-1]


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "export",
        cli_export,
        help="every event with its metadata, as JSON lines on stdout",
        usage="[--since TIME] [--until TIME] [--type T] [--actor A] [--origin O]"
        " [--aggregate ID] [--correlation ID] > log.jsonl",
        description="Every event of the log (or those the filters let through, as `events tail`"
        " takes them),\none JSON object a line: position, time, type, aggregate and version,"
        " actor, origin,\ncorrelation and cause, the topic and the event's whole state"
        " (deciphered). Streams;\na progress bar on stderr when it is a terminal."
        " `ocsched replay` builds read models from it.",
        examples=[
            "ocsched export > log.jsonl",
            "ocsched export --since 2026-12-01 --until 2026-12-05T12:00:00Z > week.jsonl",
            "ocsched export --aggregate 75db1016 | jq -c '[.time, .type, .actor]'",
        ],
    )
    add_filter_arguments(parser)


def cli_export(ctx: Context, args: argparse.Namespace) -> None:
    with reader_may_leave():
        export(ctx, args)
