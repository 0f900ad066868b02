"""The audit trail: `events tail` and `events show <id>`, one line per event."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .argv import MAX_WHOLE_NUMBER, command, group, whole_number
from .context import Context
from .output import CommandError, local_time, print_json

if TYPE_CHECKING:
    import argparse


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
    import msgspec

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
    import msgspec

    text = msgspec.json.encode(value).decode()
    return text if len(text) <= SUMMARY_VALUE_WIDTH else text[: SUMMARY_VALUE_WIDTH - 1] + "…"


def tail(ctx: Context, count: int) -> list[dict[str, Any]]:
    recorder = ctx.log.recorder
    head = recorder.max_notification_id() or 0
    start = max(head - count, 0)
    notifications = recorder.select_notifications(
        start=start, limit=count, inclusive_of_start=False
    )
    return [event_record(n.id, ctx.log.mapper.to_domain_event(n)) for n in notifications]


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
        examples=["ocsched events tail -n 50", "ocsched events show 75db1016"],
    )
    tail_parser = command(
        events,
        "tail",
        cli_tail,
        help="the newest events of the whole log",
        usage="[-n N] [--follow]",
        examples=["ocsched events tail", "ocsched events tail -n 100 --follow"],
    )
    tail_parser.add_argument(
        "-n", dest="count", metavar="N", default="20", help="how many (default 20)"
    )
    tail_parser.add_argument(
        "-f", "--follow", action="store_true", help="then print new events as they come"
    )
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
    follow = args.follow
    count_text = args.count
    count = whole_number(count_text, lowest=0)
    if count is None:
        raise CommandError(
            f"-n must be a whole number (at most {MAX_WHOLE_NUMBER}), got: {count_text}"
        )
    records = tail(ctx, count)
    if follow and ctx.json:  # a stream: one compact JSON object per line
        for record in records:
            print(_compact(record), flush=True)
    else:
        _print_records(ctx, records)
    if follow:
        _follow(ctx, records[-1]["position"] if records else 0)


def _follow(ctx: Context, position: int) -> None:
    recorder = ctx.log.recorder
    try:
        while True:
            notifications = recorder.select_notifications(
                start=position, limit=500, inclusive_of_start=False
            )
            for n in notifications:
                record = event_record(n.id, ctx.log.mapper.to_domain_event(n))
                line = _compact(record) if ctx.json else describe(record)
                print(line, flush=True)
                position = n.id
            if not notifications:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass


def _compact(record: dict[str, Any]) -> str:
    import msgspec

    return msgspec.json.encode(record).decode()


def cli_show(ctx: Context, args: argparse.Namespace) -> None:
    _print_records(ctx, history(ctx, ctx.resolve_id(args.id, "any")))


def _print_records(ctx: Context, records: list[dict[str, Any]]) -> None:
    if ctx.json:
        print_json(records)
    else:
        for record in records:
            print(describe(record), flush=True)
