"""The audit trail: `events tail` (the newest events, or the newest that match filters,
and `--follow`) and `events show <id>`, one line per event.

Filters read each stored event's head (type, aggregate, time, who, where from, which
invocation) without building the domain event; only the events that match are decoded."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import msgspec

from .argv import MAX_WHOLE_NUMBER, command, group, whole_number
from .context import Context
from .output import CommandError, local_time, print_json, reader_may_leave

if TYPE_CHECKING:
    import argparse

    from eventsourcing.persistence import Notification

PAGE = 2000
"""Stored events read at a time when the log is scanned."""


def event_record(notification_id: int | None, event: Any) -> dict[str, Any]:
    """An event as plain data: position, time, who, where from, what, and its fields."""
    from ocsched.domain.schedule import to_ts

    meta = event.meta
    topic_class = type(event).__qualname__
    return {
        "position": notification_id,
        "time": to_ts(event.timestamp),
        "aggregate_id": event.originator_id,
        "version": event.originator_version,
        "type": topic_class,
        "actor": meta.actor,
        "origin": meta.origin,
        "correlation_id": meta.correlation_id,
        "cause": meta.cause,
        "fields": _fields(event),
    }


def _fields(event: Any) -> dict[str, Any]:
    skip = {"originator_id", "originator_version", "timestamp", "meta", "originator_topic"}
    fields = {k: v for k, v in vars(event).items() if k not in skip}
    if "spec" in fields:
        from ocsched.domain.job_spec import job_fields

        defaults = job_fields()
        fields.update(
            (name, value)
            for name, value in msgspec.structs.asdict(fields.pop("spec")).items()
            if value != defaults[name].default
        )
    return msgspec.to_builtins(fields)


def describe(record: dict[str, Any]) -> str:
    """One line: local time with its zone, actor, origin, aggregate, event type and what
    changed."""
    parts = [
        local_time(record["time"], named=True) or record["time"],
        record["actor"],
        record["origin"],
        record["aggregate_id"][:8],
        record["type"],
    ]
    return "  ".join(parts + [_summary(record["fields"])]).rstrip()


SUMMARY_VALUE_WIDTH = 60
QUIET_FIELDS = ("context_summary", "shell_stdout", "shell_stderr")


def _summary(fields: dict[str, Any]) -> str:
    """The changed or set fields, each value cut to a readable width; nulls left out.
    `--json` prints everything in full."""
    if "changes" in fields:
        return ", ".join(
            f"{name}: {_show(old)} -> {_show(new)}"
            for name, (old, new) in fields["changes"].items()
        )
    flat: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, dict) and name in ("outcome", "job_changes"):
            flat.update((k, v) for k, v in value.items() if k not in QUIET_FIELDS)
        else:
            flat[name] = value
    return ", ".join(f"{name}={_show(value)}" for name, value in flat.items() if value is not None)


def _show(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= SUMMARY_VALUE_WIDTH else text[: SUMMARY_VALUE_WIDTH - 1] + "…"


# Reading the log's stored events


class _Meta(msgspec.Struct):
    actor: str = ""
    origin: str = ""
    correlation_id: str = ""
    cause: str | None = None


class _Head(msgspec.Struct):
    timestamp: datetime
    meta: _Meta = msgspec.field(default_factory=_Meta)


_HEAD = msgspec.json.Decoder(_Head)


@dataclass(frozen=True)
class Stored:
    """One stored event: its position, topic and aggregate, its bytes as stored, its plain
    (deciphered, decompressed) JSON state, and the head decoded from that."""

    position: int
    topic: str
    aggregate_id: str
    version: int
    raw: bytes
    state: bytes
    time: datetime
    meta: _Meta

    @property
    def type(self) -> str:
        return self.topic.rpartition(":")[2]


def stored_events(ctx: Context, after: int = 0) -> Iterator[Stored]:
    """Every stored event after position `after`, in log order, read a page at a time."""
    recorder = ctx.log.recorder
    mapper = ctx.log.mapper
    cipher, compressor = mapper.cipher, mapper.compressor
    position = after
    while True:
        page: Sequence[Notification] = recorder.select_notifications(
            start=position, limit=PAGE, inclusive_of_start=False
        )
        for n in page:
            state = n.state
            if cipher:
                state = cipher.decrypt(state)
            if compressor:
                state = compressor.decompress(state)
            head = _HEAD.decode(state)
            yield Stored(
                n.id,
                n.topic,
                str(n.originator_id),
                n.originator_version,
                n.state,
                state,
                head.timestamp,
                head.meta,
            )
        if len(page) < PAGE:
            return
        position = page[-1].id


def record_of(ctx: Context, stored: Stored) -> dict[str, Any]:
    """`event_record` of a stored event (decoded into its domain event)."""
    from eventsourcing.persistence import StoredEvent

    event = ctx.log.mapper.to_domain_event(
        StoredEvent(stored.aggregate_id, stored.version, stored.topic, stored.raw)
    )
    return event_record(stored.position, event)


# Filters


@dataclass(frozen=True)
class EventFilter:
    """Which events to show: each given criterion must hold (several values of one
    criterion: any of them). Types, actors and origins match exactly or as a shell
    pattern (`Run.*`), a type also by its aggregate (`Run`); aggregate and correlation
    ids by a prefix; `since`/`until` include their moment."""

    types: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    aggregates: tuple[str, ...] = ()
    correlations: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def __bool__(self) -> bool:
        return any((self.types, self.actors, self.origins, self.aggregates, self.correlations)) or (
            self.since,
            self.until,
        ) != (None, None)

    def matches(self, stored: Stored) -> bool:
        meta = stored.meta
        return (
            (not self.types or any(_type_matches(stored.type, t) for t in self.types))
            and (not self.aggregates or stored.aggregate_id.startswith(self.aggregates))
            and (not self.since or stored.time >= self.since)
            and (not self.until or stored.time <= self.until)
            and (not self.actors or any(fnmatchcase(meta.actor, a) for a in self.actors))
            and (not self.origins or any(fnmatchcase(meta.origin, o) for o in self.origins))
            and (not self.correlations or meta.correlation_id.startswith(self.correlations))
        )


def _type_matches(name: str, wanted: str) -> bool:
    return name == wanted or name.startswith(wanted + ".") or fnmatchcase(name, wanted)


REPEATABLE_FILTERS = (
    ("--type", "types", "TYPE", "an event type (Run.Finished), an aggregate's (Run), a pattern"),
    ("--origin", "origins", "ORIGIN", "from where: cli, a job's origin, a daemon, a pattern"),
    ("--aggregate", "aggregates", "ID", "a job, run, dispatch, approval, … id or prefix"),
    ("--correlation", "correlations", "ID", "one invocation's correlation id or prefix"),
)


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """The filter flags, on `events tail` and `export`. `--actor` is the CLI's own flag
    (taken off the line before parsing, `args.actor`): on these commands, which record
    nothing, it chooses the events' actor."""
    each = "; repeat for any of several"
    for action in parser._actions:
        if "--actor" in action.option_strings:
            action.help = "only the events of this actor (reactor, a person; a pattern)"
    for flag, dest, metavar, text in REPEATABLE_FILTERS:
        parser.add_argument(
            flag, dest=dest, action="append", default=[], metavar=metavar, help=text + each
        )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="at or after TIME: ISO 8601 (UTC without an offset) or 2h ago",
    )
    parser.add_argument("--until", metavar="TIME", help="at or before TIME (as --since)")


def event_filter(ctx: Context, args: argparse.Namespace) -> EventFilter:
    since = parse_moment(args.since, "--since", ctx.now) if args.since else None
    until = parse_moment(args.until, "--until", ctx.now) if args.until else None
    return EventFilter(
        types=tuple(args.types),
        actors=(args.actor,) if args.actor else (),
        origins=tuple(args.origins),
        aggregates=tuple(args.aggregates),
        correlations=tuple(args.correlations),
        since=since,
        until=until,
    )


def parse_moment(text: str, flag: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when it has no offset), or with `now` a duration before it
    (`30m`, `2h`, `1d`); in UTC."""
    from ocsched.domain.errors import DomainError
    from ocsched.domain.schedule import parse_datetime, parse_duration

    try:
        if now is not None and is_duration(text):
            try:
                return (now - parse_duration(text)).astimezone(UTC)
            except DomainError:
                pass
        return parse_datetime(text).astimezone(UTC)
    except OverflowError:
        raise CommandError(f"{flag} is out of range: {text}") from None
    except DomainError:
        ago = " or a duration ago (30m, 2h, 1d)" if now is not None else ""
        raise CommandError(
            f"{flag} needs an ISO 8601 time (2026-12-05T09:30:00Z){ago}, got: {text}"
        ) from None


def is_duration(text: str) -> bool:
    """Whether `text` is meant as a duration: ISO 8601 times never end in s, m, h or d."""
    return text.strip()[-1:].lower() in ("s", "m", "h", "d")


# The commands


def tail(ctx: Context, count: int) -> list[dict[str, Any]]:
    recorder = ctx.log.recorder
    head = recorder.max_notification_id() or 0
    start = max(head - count, 0)
    notifications = recorder.select_notifications(
        start=start, limit=count, inclusive_of_start=False
    )
    return [event_record(n.id, ctx.log.mapper.to_domain_event(n)) for n in notifications]


def matching(ctx: Context, chosen: EventFilter, count: int | None) -> tuple[list[dict], int]:
    """The newest `count` events (all with None) that `chosen` lets through, in log order,
    and the position of the last event read."""
    kept: deque[Stored] = deque(maxlen=count)
    position = 0
    for stored in stored_events(ctx):
        position = stored.position
        if chosen.matches(stored):
            kept.append(stored)
    return [record_of(ctx, stored) for stored in kept], position


def history(ctx: Context, aggregate_id: str) -> list[dict[str, Any]]:
    events = list(ctx.log.events.get(aggregate_id))
    if not events:
        raise CommandError(f"No events for: {aggregate_id}")
    return [event_record(None, event) for event in events]


def register(commands: argparse._SubParsersAction) -> None:
    events = group(
        commands,
        "events",
        help="the audit trail: the newest events, or one id's whole history",
        examples=[
            "ocsched events tail -n 50",
            "ocsched events tail --type Run.Finished --since 2h",
            "ocsched events show 75db1016",
        ],
    )
    tail_parser = command(
        events,
        "tail",
        cli_tail,
        help="the newest events of the whole log, or the newest that match filters",
        usage="[-n N|all] [--follow] [--type T] [--actor A] [--origin O] [--aggregate ID]"
        " [--correlation ID] [--since TIME] [--until TIME]",
        examples=[
            "ocsched events tail",
            "ocsched events tail -n 100 --follow",
            "ocsched events tail -n all --aggregate 75db1016 --type 'Run.*'",
            "ocsched events tail --actor alice --since 2026-12-05T08:00:00Z --until 1h",
            "ocsched --json events tail --follow --actor reactor --type Run.Finished",
        ],
    )
    tail_parser.add_argument(
        "-n", dest="count", metavar="N", default="20", help="how many, or all (default 20)"
    )
    tail_parser.add_argument(
        "-f", "--follow", action="store_true", help="then print new events as they come"
    )
    add_filter_arguments(tail_parser)
    show = command(
        events,
        "show",
        cli_show,
        help="one id's whole history: who changed what, when, why",
        usage="<id>",
        examples=["ocsched events show 75db1016", "ocsched --json events show 0c9f2e41"],
    )
    show.add_argument("id", metavar="<id>", help="a job, run, dispatch, delivery or approval id")


def cli_tail(ctx: Context, args: argparse.Namespace) -> None:
    count_text = args.count
    count = None if count_text == "all" else whole_number(count_text, lowest=0)
    if count is None and count_text != "all":
        raise CommandError(
            f"-n must be a whole number (at most {MAX_WHOLE_NUMBER}), got: {count_text}"
        )
    with reader_may_leave():
        _tail(ctx, args, count)


def _tail(ctx: Context, args: argparse.Namespace, count: int | None) -> None:
    follow = args.follow
    chosen = event_filter(ctx, args)
    if chosen or count is None:
        records, position = matching(ctx, chosen, count)
    else:
        records = tail(ctx, count)
        position = records[-1]["position"] if records else ctx.log.max_position()
    if follow and ctx.json:  # a stream: one compact JSON object per line
        for record in records:
            print(_compact(record), flush=True)
    else:
        _print_records(ctx, records)
    if follow:
        _follow(ctx, position, chosen)


def _follow(ctx: Context, position: int, chosen: EventFilter) -> None:
    try:
        while True:
            read = position
            for stored in stored_events(ctx, position):
                position = stored.position
                if chosen.matches(stored):
                    record = record_of(ctx, stored)
                    print(_compact(record) if ctx.json else describe(record), flush=True)
            if position == read:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _compact(record: dict[str, Any]) -> str:
    return msgspec.json.encode(record).decode()


def cli_show(ctx: Context, args: argparse.Namespace) -> None:
    _print_records(ctx, history(ctx, ctx.resolve_id(args.id, "any")))


def _print_records(ctx: Context, records: list[dict[str, Any]]) -> None:
    if ctx.json:
        print_json(records)
    else:
        for record in records:
            print(describe(record), flush=True)
