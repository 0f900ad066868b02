"""`ocsched dispatch <sub>` (spec §31): sub-agent sessions as event-sourced labels.

Each subcommand is parse (flags → a typed request) → service (`dispatch_service`) →
presentation. Every subcommand prints 2-space JSON on stdout, except `stuck` when it finds
stuck sessions (text, exit status 1). Errors go through the CLI's one error path as
`[<brand>] <message>`: exit status 2 for argument errors, else 1. An unknown or missing
subcommand prints the usage on stdout, exit status 2.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocsched.adapters.openclaw_files import dispatch_config
from ocsched.domain.dispatch_rules.brand import brand, brand_line
from ocsched.domain.dispatch_rules.done_guards import done_output
from ocsched.domain.errors import ValidationError
from ocsched.domain.safe_names import check_path_segment

from . import dispatch_service as service
from . import dispatch_status as state
from .argv import MAX_WHOLE_NUMBER, Argv
from .context import Context
from .dispatch_labels import json_text, json_whole_number
from .dispatch_service import argument_error
from .output import CommandError, as_utf8, print_json

PROMPT_FLAGS = ("--message", "--message-file", "--message-env", "--message-stdin")
DEFAULT_TIMEOUT_S = 300
DEFAULT_IDLE_THRESHOLD_S = 300
DEFAULT_STUCK_THRESHOLD_MIN = 15
DEFAULT_LIST_LIMIT = 20
USAGE = """\
Usage: ocsched dispatch <subcommand> [flags]

  enqueue --label L (--message T | --message-file F|- | --message-env V | --message-stdin)
          [--agent main] [--mode fresh|reuse] [--session-key K] [--model M] [--thinking T]
          [--timeout S] [--origin O] [--deliver-to T] [--deliver-channel C]
          [--delivery-mode announce|announce-always|none] [--no-monitor] [--verify-cmd C]
  status --label L | result --label L | heartbeat --label L | list [--status S] [--limit N]
  send|steer --label L (prompt source) | done --label L --checklist JSON [--summary S]
          [--sha SHA] [--force-done --reason R] [--skip-activity-check] | watcher-handoff --label L
  stuck [--threshold-min N] | sync [--dry-run] | import-labels <labels.json>"""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


# Parsing (spec §31.1: `--name value` or `--name=value`; a flag followed by nothing or by
# another flag is true; other tokens are ignored)


def _text(argv: Argv, name: str) -> str | None:
    """A flag's value when it has one (a bare flag counts as absent)."""
    value = argv.loose_option(name)
    return value if isinstance(value, str) else None


def _given(argv: Argv, name: str) -> bool:
    return argv.loose_option(name) is not None


def _label(argv: Argv) -> str:
    label = argv.loose_option("--label")
    if not label or label is True:
        raise argument_error("--label is required")
    return label


def _positive_int(name: str, value: str | bool | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise argument_error(f"{name} must be a positive integer")
    if number > MAX_WHOLE_NUMBER:  # more would overflow the store's 64-bit integers
        raise argument_error(f"{name} must be a positive integer up to {MAX_WHOLE_NUMBER}")
    return number


def _prompt(argv: Argv) -> str:
    """Spec §31.4 step 2: exactly one prompt source, else piped stdin; used literally."""
    given = {name: argv.loose_option(name) for name in PROMPT_FLAGS}
    chosen = [(name, value) for name, value in given.items() if value is not None]
    if len(chosen) > 1:
        names = ", ".join(name for name, _ in chosen)
        raise argument_error(f"choose only one of {names} for the prompt source")
    text: str | None = None
    if chosen:
        name, value = chosen[0]
        if name == "--message":
            if value is True:
                raise argument_error("--message requires a value")
            text = value
        elif name == "--message-env":
            if value is True:
                raise argument_error("--message-env requires a value")
            if value not in os.environ:  # the variable the user named: read on request
                raise argument_error(f"--message-env: environment variable {value} is not set")
            text = os.environ[value]
        elif name == "--message-file" and value != "-":
            if value is True:
                raise argument_error("--message-file requires a value")
            try:
                text = Path(value).read_text(encoding="utf-8")
            except OSError as error:
                reason = error.strerror
                raise argument_error(f"--message-file: could not read file: {reason}") from None
            except UnicodeDecodeError:
                raise argument_error(
                    "--message-file: could not read file: not UTF-8 text"
                ) from None
            except ValueError:  # a NUL in the path
                raise argument_error("--message-file: could not read file: bad path") from None
        else:
            if sys.stdin.isatty():
                dash = " -" if name == "--message-file" else ""
                raise argument_error(f"{name}{dash} requires piped stdin")
            text = _read_stdin(name)
    elif not sys.stdin.isatty():
        text = _read_stdin("stdin")
    if text and as_utf8(text) is not text:  # invalid UTF-8 read as surrogate escapes
        source = chosen[0][0] if chosen else "stdin"
        raise argument_error(f"{source}: the prompt is not valid UTF-8 text")
    if not text:
        raise argument_error(
            "--message, --message-file, --message-env, --message-stdin, or piped stdin is required"
        )
    return text


def _read_stdin(name: str) -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError:
        raise argument_error(f"{name}: could not read stdin: not UTF-8 text") from None


def _session_target(argv: Argv) -> service.SessionTarget:
    target = service.SessionTarget(_text(argv, "--label"), _text(argv, "--session-key"))
    if not target.label and not target.session_key:
        raise argument_error("--label or --session-key is required")
    return target


def parse_enqueue(argv: Argv, config: dict[str, Any]) -> service.EnqueueRequest:
    """Spec §31.4 steps 1–3 and 7, in the order their errors are reported."""
    label = _label(argv)
    prompt = _prompt(argv)
    timeout = argv.loose_option("--timeout")
    if timeout is None:
        _stderr(f"WARNING: --timeout not specified, defaulting to {DEFAULT_TIMEOUT_S}s.")
    timeout_s = _positive_int("--timeout", timeout, DEFAULT_TIMEOUT_S)
    monitor_default = int(config.get("watchdogTimeoutMin") or service.DEFAULT_MONITOR_TIMEOUT_MIN)
    monitor_timeout = _positive_int(
        "--monitor-timeout", argv.loose_option("--monitor-timeout"), monitor_default
    )
    idle_threshold = _positive_int(
        "--idle-threshold", argv.loose_option("--idle-threshold"), DEFAULT_IDLE_THRESHOLD_S
    )
    agent = _agent(argv)
    session_key = argv.loose_option("--session-key")
    monitor = argv.loose_option("--monitor")
    payload_kind = argv.loose_option("--payload-kind")
    return service.EnqueueRequest(
        label=label,
        prompt=prompt,
        agent=agent,
        timeout_s=timeout_s,
        monitor_timeout_min=monitor_timeout,
        idle_threshold_s=idle_threshold,
        origin=_text(argv, "--origin"),
        deliver_to=_text(argv, "--deliver-to"),
        deliver_channel=_text(argv, "--deliver-channel"),
        delivery_mode=str(argv.loose_option("--delivery-mode") or "announce"),
        monitoring=not _given(argv, "--no-monitor") and str(monitor or "").lower() != "false",
        payload_kind=None if payload_kind is True else payload_kind,
        reuse=bool(session_key) or argv.loose_option("--mode") == "reuse",
        session_key=session_key if isinstance(session_key, str) else None,
        model=_text(argv, "--model"),
        thinking=_text(argv, "--thinking"),
        verify_cmd=_text(argv, "--verify-cmd"),
    )


def _agent(argv: Argv) -> str:
    """`--agent` (main): it names a folder in the OpenClaw home, so a safe name only."""
    agent = str(argv.loose_option("--agent") or "main")
    try:
        return check_path_segment("--agent", agent)
    except ValidationError as error:
        raise argument_error(str(error)) from None


def parse_done(argv: Argv) -> service.DoneRequest:
    """Spec §31.7's flags."""
    return service.DoneRequest(
        label=_label(argv),
        summary=_text(argv, "--summary"),
        checklist=_text(argv, "--checklist"),
        sha=_text(argv, "--sha"),
        force=_given(argv, "--force-done"),
        reason=_text(argv, "--reason"),
        skip_activity_check=_given(argv, "--skip-activity-check"),
    )


def parse_threshold_min(argv: Argv) -> float:
    value = argv.loose_option("--threshold-min")
    if value is None:
        return DEFAULT_STUCK_THRESHOLD_MIN
    try:
        threshold = float(str(value))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):  # NaN or infinite: no session would ever be stuck
        raise argument_error("--threshold-min must be a number")
    if abs(threshold) > MAX_WHOLE_NUMBER:  # in milliseconds, past any date
        raise argument_error(f"--threshold-min must be a number up to {MAX_WHOLE_NUMBER}")
    return threshold


# Handlers: parse → service → presentation. Each takes the invocation, the arguments
# after the subcommand and the dispatch config.

Handler = Callable[[Context, list[str], dict[str, Any]], None]


def _enqueue(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    request = parse_enqueue(Argv(args, USAGE), config)
    print_json(service.enqueue(ctx, config, request, _stderr))


def _status(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    print_json(state.status(ctx, config, _label(Argv(args, USAGE))))


def _result(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    print_json(state.result(ctx, _label(Argv(args, USAGE)), _stderr))


def _sender(kind: str) -> Handler:
    def handler(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
        argv = Argv(args, USAGE)
        prompt = _prompt(argv)
        print_json(service.send(ctx, _session_target(argv), prompt, kind))

    return handler


def _heartbeat(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    print_json(state.heartbeat(ctx, _session_target(Argv(args, USAGE))))


def _list(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    argv = Argv(args, USAGE)
    limit = _positive_int("--limit", argv.loose_option("--limit"), DEFAULT_LIST_LIMIT)
    print_json(state.list_labels(ctx, _text(argv, "--status"), limit))


def _done(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    request = parse_done(Argv(args, USAGE))
    name = brand(config)
    decision = service.done(ctx, config, request, lambda line: _stderr(brand_line(name, line)))
    print_json(done_output(request.label, decision))


def _stuck(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    found = state.stuck(ctx, config, parse_threshold_min(Argv(args, USAGE)))
    for resolved in found.auto_resolved:
        _stderr(f"auto-resolved: [ok] {resolved['label']}: {resolved['reason']}")
    if not found.stuck_sessions:
        print_json(found)
        return
    if ctx.json:  # the global --json: the same finding as JSON, still exit status 1
        print_json(found)
        raise SystemExit(1)
    noun = "session" if found.stuck_count == 1 else "sessions"
    lines = [f"⚠️ {brand(config)}: {found.stuck_count} stuck {noun}:"]
    lines += [
        f"* {s.label} (running {s.age_min}min, silent {s.silent_min}min)"
        for s in found.stuck_sessions
    ]
    print("\n".join(lines))
    raise SystemExit(1)  # spec §31.6: stuck sessions found is exit status 1, not an error


def _sync(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    dry_run = bool(Argv(args, USAGE).loose_option("--dry-run"))
    print_json(state.sync(ctx, config, dry_run))


def _import_labels(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    paths = [arg for arg in args if not arg.startswith("--")]
    if len(paths) != 1:
        raise argument_error("Usage: ocsched dispatch import-labels <labels.json>")
    print_json(service.import_labels(ctx, paths[0]))


def _watcher_handoff(ctx: Context, args: list[str], config: dict[str, Any]) -> None:
    print_json(state.watcher_handoff(ctx, _label(Argv(args, USAGE))))


SUBCOMMANDS: dict[str, Handler] = {
    "enqueue": _enqueue,
    "status": _status,
    "result": _result,
    "send": _sender("send"),
    "steer": _sender("steer"),
    "heartbeat": _heartbeat,
    "list": _list,
    "done": _done,
    "stuck": _stuck,
    "sync": _sync,
    "import-labels": _import_labels,
    "watcher-handoff": _watcher_handoff,
}


CONFIG_NUMBERS = ("startupGraceMs", "watchdogTimeoutMin", "deliver_watcher_ttl_hours")
CONFIG_TEXTS = ("name", "watchdogIntervalCron", "deliverTo", "deliveryChannel")


def checked_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config.json` with the keys the commands read in the types they use: a whole number
    (>= 0) or text (a number as its digits). A value of another kind is dropped, so its
    default applies: a hand-edited file cannot make every command fail."""
    checked = dict(config)
    for key in CONFIG_NUMBERS:
        if key in checked:
            number = json_whole_number(checked.pop(key))
            if number is not None and number >= 0:
                checked[key] = number
    for key in CONFIG_TEXTS:
        value = checked.pop(key, None)
        if isinstance(value, str) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            checked[key] = json_text(value)
    return checked


def cli_dispatch(ctx: Context, args: list[str]) -> None:
    config = checked_config(dispatch_config(ctx.settings.dispatch_config_dir))
    if not args or args[0] not in SUBCOMMANDS:
        print(USAGE)
        raise SystemExit(2)  # spec §31.1: usage on stdout, exit status 2
    try:
        SUBCOMMANDS[args[0]](ctx, args[1:], config)
    except CommandError as error:
        raise CommandError(brand_line(brand(config), str(error)), error.exit_code) from None
