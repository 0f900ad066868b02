"""`ocsched dispatch <sub>` (spec §31): sub-agent sessions as event-sourced labels.

Each subcommand is parse (flags → a typed request) → service (`dispatch_service`,
`dispatch_status`) → presentation (`dispatch_output`: text, or under `--json` the anchor's
JSON shapes). The flags are declared on argparse parsers, for `--help`, `help --json` and
completion, and read the dispatch CLI's way (spec §31.1, `LooseParser`). Errors go through
the CLI's one error path as `[<brand>] <message>`: exit status 2 for argument errors (an
unknown flag too, with the nearest one), else 1. `stuck` that finds stuck sessions exits 1.
`ocsched dispatch` alone prints its help on stdout, exit status 2 (§31.1).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import dispatch_output as show
from .argv import MAX_WHOLE_NUMBER, Argv, Parser, command, group, unknown_option
from .context import Context
from .output import CommandError, as_utf8

if TYPE_CHECKING:  # the services import the domain: loaded only when a subcommand runs
    from .dispatch_service import DoneRequest, EnqueueRequest, SessionTarget

DEFAULT_TIMEOUT_S = 300
DEFAULT_IDLE_THRESHOLD_S = 300
DEFAULT_STUCK_THRESHOLD_MIN = 15
DEFAULT_LIST_LIMIT = 20
PROMPT_DESTS = ("message", "message_file", "message_env", "message_stdin")
GLOBAL_DESTS = frozenset({"help", "json", "actor"})


class LooseParser(Parser):
    """A dispatch subcommand's parser. Its options are declared for help and completion
    but read as the anchor reads them (spec §31.1): `--name value` or `--name=value`; a
    flag followed by nothing or by another `--` token is true; the last occurrence wins;
    other words are kept in `words` (a command that takes none ignores them). Parsing never
    fails: an unknown `--flag` is left in `option_error` for the handler to refuse with
    the brand and exit status 2; `-h`/`--help` (not as a flag's value) prints the help."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace = namespace if namespace is not None else argparse.Namespace()
        for dest, value in self._defaults.items():  # the handler
            setattr(namespace, dest, value)
        argv = Argv(list(args or ()), "")
        known: list[str] = []
        bare: list[str] = []
        for action in self._actions:
            if action.dest in GLOBAL_DESTS or not action.option_strings:
                continue
            known += action.option_strings
            value = argv.loose_option(action.option_strings[0])
            if value is True and action.option_strings[0] in NEEDS_A_VALUE:
                bare.append(action.option_strings[0])
            setattr(namespace, action.dest, value)
        if "-h" in argv.args or "--help" in argv.args:
            self.print_help()
            self.exit()
        unknown = [word for word in argv.args if word.startswith("--") and len(word) > 2]
        namespace.words = [word for word in argv.args if not word.startswith("--")]
        namespace.option_error = None
        if unknown:
            namespace.option_error = unknown_option(unknown[0], known)
        elif bare:
            namespace.option_error = f"{bare[0]} needs a value: {NEEDS_A_VALUE[bare[0]]}"
        return namespace, []


NEEDS_A_VALUE = {"--as-of": "a time (ISO 8601, UTC) or a duration ago (2h)"}
"""ocsched's own options on the dispatch commands: alone, they are refused, not true."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def argument_error(message: str) -> CommandError:
    """Spec §31.1: argument errors exit with status 2."""
    return CommandError(message, exit_code=2)


# Parsing: the namespace's values are text, True (a flag alone) or None (absent).


def _text(args: argparse.Namespace, dest: str) -> str | None:
    """A flag's value when it has one (a bare flag counts as absent)."""
    value = getattr(args, dest)
    return value if isinstance(value, str) else None


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest) is not None


def _label(args: argparse.Namespace) -> str:
    label = args.label
    if not label or label is True:
        raise argument_error("--label is required")
    return str(label)


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


def _prompt(args: argparse.Namespace) -> str:
    """Spec §31.4 step 2: exactly one prompt source, else piped stdin; used literally."""
    chosen = [(dest, getattr(args, dest)) for dest in PROMPT_DESTS if _given(args, dest)]
    if len(chosen) > 1:
        names = ", ".join(_flag(dest) for dest, _ in chosen)
        raise argument_error(f"choose only one of {names} for the prompt source")
    text: str | None = None
    if chosen:
        dest, value = chosen[0]
        name = _flag(dest)
        if value is True and dest != "message_stdin":
            raise argument_error(f"{name} requires a value")
        if dest == "message":
            text = value
        elif dest == "message_env":
            if value not in os.environ:  # the variable the user named: read on request
                raise argument_error(f"--message-env: environment variable {value} is not set")
            text = os.environ[value]
        elif dest == "message_file" and value != "-":
            text = _read_file(value)
        else:
            if sys.stdin.isatty():
                dash = " -" if dest == "message_file" else ""
                raise argument_error(f"{name}{dash} requires piped stdin")
            text = _read_stdin(name)
    elif not sys.stdin.isatty():
        text = _read_stdin("stdin")
    if text and as_utf8(text) is not text:  # invalid UTF-8 read as surrogate escapes
        source = _flag(chosen[0][0]) if chosen else "stdin"
        raise argument_error(f"{source}: the prompt is not valid UTF-8 text")
    if not text:
        raise argument_error(
            "--message, --message-file, --message-env, --message-stdin, or piped stdin is required"
        )
    return text


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise argument_error(f"--message-file: could not read file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise argument_error("--message-file: could not read file: not UTF-8 text") from None
    except ValueError:  # a NUL in the path
        raise argument_error("--message-file: could not read file: bad path") from None


def _read_stdin(name: str) -> str:
    try:
        return sys.stdin.read()
    except UnicodeDecodeError:
        raise argument_error(f"{name}: could not read stdin: not UTF-8 text") from None


def _session_target(args: argparse.Namespace) -> SessionTarget:
    from .dispatch_service import SessionTarget

    target = SessionTarget(_text(args, "label"), _text(args, "session_key"))
    if not target.label and not target.session_key:
        raise argument_error("--label or --session-key is required")
    return target


def parse_enqueue(args: argparse.Namespace, config: dict[str, Any]) -> EnqueueRequest:
    """Spec §31.4 steps 1–3 and 7, in the order their errors are reported."""
    from . import dispatch_service as service

    label = _label(args)
    prompt = _prompt(args)
    if args.timeout is None:
        _stderr(f"WARNING: --timeout not specified, defaulting to {DEFAULT_TIMEOUT_S}s.")
    timeout_s = _positive_int("--timeout", args.timeout, DEFAULT_TIMEOUT_S)
    monitor_default = int(config.get("watchdogTimeoutMin") or service.DEFAULT_MONITOR_TIMEOUT_MIN)
    monitor_timeout = _positive_int("--monitor-timeout", args.monitor_timeout, monitor_default)
    idle_threshold = _positive_int(
        "--idle-threshold", args.idle_threshold, DEFAULT_IDLE_THRESHOLD_S
    )
    agent = _agent(args)
    session_key = args.session_key
    return service.EnqueueRequest(
        label=label,
        prompt=prompt,
        agent=agent,
        timeout_s=timeout_s,
        monitor_timeout_min=monitor_timeout,
        monitor_interval=_text(args, "monitor_interval"),
        idle_threshold_s=idle_threshold,
        origin=_text(args, "origin"),
        deliver_to=_text(args, "deliver_to"),
        deliver_channel=_text(args, "deliver_channel"),
        delivery_mode=str(args.delivery_mode or "announce"),
        monitoring=not _given(args, "no_monitor") and str(args.monitor or "").lower() != "false",
        payload_kind=None if args.payload_kind is True else args.payload_kind,
        reuse=bool(session_key) or args.mode == "reuse",
        session_key=session_key if isinstance(session_key, str) else None,
        model=_text(args, "model"),
        thinking=_text(args, "thinking"),
        verify_cmd=_text(args, "verify_cmd"),
    )


def _agent(args: argparse.Namespace) -> str:
    """`--agent` (main): it names a folder in the OpenClaw home, so a safe name only."""
    from ocsched.domain.errors import ValidationError
    from ocsched.domain.safe_names import check_path_segment

    agent = str(args.agent or "main")
    try:
        return check_path_segment("--agent", agent)
    except ValidationError as error:
        raise argument_error(str(error)) from None


def parse_done(args: argparse.Namespace) -> DoneRequest:
    """Spec §31.7's flags."""
    from .dispatch_service import DoneRequest

    return DoneRequest(
        label=_label(args),
        summary=_text(args, "summary"),
        checklist=_text(args, "checklist"),
        sha=_text(args, "sha"),
        force=_given(args, "force_done"),
        reason=_text(args, "reason"),
        skip_activity_check=_given(args, "skip_activity_check"),
    )


def parse_threshold_min(args: argparse.Namespace) -> float:
    value = args.threshold_min
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


# Handlers: parse → service → presentation, given the invocation, the parsed flags and the
# dispatch config.

Run = Callable[[Context, argparse.Namespace, dict[str, Any]], None]


def _enqueue(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_service import enqueue

    request = parse_enqueue(args, config)
    show.emit(ctx, enqueue(ctx, config, request, _stderr), show.enqueued)


def _status(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import status

    show.emit(ctx, status(ctx, config, _label(args)), show.label_status)


def _result(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import result

    show.emit(ctx, result(ctx, _label(args), _stderr), show.label_result)


def _sender(kind: str) -> Run:
    def handler(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
        from .dispatch_service import send

        prompt = _prompt(args)
        show.emit(ctx, send(ctx, _session_target(args), prompt, kind), show.sent)

    return handler


def _heartbeat(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import heartbeat

    show.emit(ctx, heartbeat(ctx, _session_target(args)), show.heartbeat)


def _list(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import list_labels

    limit = _positive_int("--limit", args.limit, DEFAULT_LIST_LIMIT)
    show.emit(ctx, list_labels(ctx, _text(args, "status"), limit), show.labels)


def _done(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from ocsched.domain.dispatch_rules.brand import brand, brand_line
    from ocsched.domain.dispatch_rules.done_guards import done_output

    from .dispatch_service import done

    request = parse_done(args)
    name = brand(config)
    decision = done(ctx, config, request, lambda line: _stderr(brand_line(name, line)))
    show.emit(ctx, done_output(request.label, decision), show.done)


def _stuck(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from ocsched.domain.dispatch_rules.brand import brand

    from .dispatch_status import stuck

    found = stuck(ctx, config, parse_threshold_min(args))
    for resolved in found.auto_resolved:
        _stderr(f"auto-resolved: [ok] {resolved['label']}: {resolved['reason']}")
    show.emit(ctx, found, lambda value: show.stuck(value, brand(config)))
    if found.stuck_sessions:
        raise SystemExit(1)  # spec §31.6: stuck sessions found is exit status 1, not an error


def _sync(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import sync

    show.emit(ctx, sync(ctx, config, bool(args.dry_run)), show.synced)


def _import_labels(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_service import import_labels

    if len(args.words) != 1:
        raise argument_error("Usage: ocsched dispatch import-labels <labels.json>")
    show.emit(ctx, import_labels(ctx, args.words[0]), show.imported)


def _watcher_handoff(ctx: Context, args: argparse.Namespace, config: dict[str, Any]) -> None:
    from .dispatch_status import watcher_handoff

    show.emit(ctx, watcher_handoff(ctx, _label(args)), show.handoff)


SUBCOMMANDS: dict[str, Run] = {
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


def _branded(run: Run) -> Callable[[Context, argparse.Namespace], None]:
    """The CLI's handler for `run`: the dispatch config read, an unknown flag refused, and
    every error written as `[<brand>] <message>`."""

    def handler(ctx: Context, args: argparse.Namespace) -> None:
        from ocsched.adapters.openclaw_files import dispatch_config
        from ocsched.domain.dispatch_rules.brand import brand, brand_line

        config = checked_config(dispatch_config(ctx.settings.dispatch_config_dir))
        try:
            if args.option_error:
                raise argument_error(args.option_error)
            run(ctx, args, config)
        except CommandError as error:
            raise CommandError(brand_line(brand(config), str(error)), error.exit_code) from None

    return handler


CONFIG_NUMBERS = ("startupGraceMs", "watchdogTimeoutMin", "deliver_watcher_ttl_hours")
CONFIG_TEXTS = ("name", "watchdogIntervalCron", "deliverTo", "deliveryChannel")


def checked_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config.json` with the keys the commands read in the types they use: a whole number
    (>= 0) or text (a number as its digits). A value of another kind is dropped, so its
    default applies: a hand-edited file cannot make every command fail."""
    from .dispatch_labels import json_text, json_whole_number

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


# The parsers: one row per subcommand (help, usage, description or None, examples, flags);
# a flag is (name, metavar, help), metavar None for one that takes no value.

Flag = tuple[str, str | None, str]
LABEL: Flag = ("--label", "L", "the dispatch's label")
SESSION: tuple[Flag, ...] = (LABEL, ("--session-key", "K", "the session's key, instead of a label"))
PROMPT: tuple[Flag, ...] = (
    ("--message", "T", "the prompt text"),
    ("--message-file", "F", "read the prompt from a file (- for stdin)"),
    ("--message-env", "V", "read the prompt from an environment variable"),
    ("--message-stdin", None, "read the prompt from stdin"),
)
PROMPT_USAGE = "(--message T | --message-file F|- | --message-env V | --message-stdin)"
CHECKLIST = '{"work_complete":true,"tests_passed":true,"pushed":true}'
ENQUEUE_FLAGS: tuple[Flag, ...] = (
    ("--label", "L", "the dispatch's label (required)"),
    *PROMPT,
    ("--agent", "A", "the agent (main)"),
    ("--mode", "fresh|reuse", "a new session (fresh) or the label's last one"),
    ("--session-key", "K", "use this session (implies reuse)"),
    ("--model", "M", "the session's model (provider/model)"),
    ("--thinking", "T", "the session's thinking level (off for none)"),
    ("--timeout", "S", "the run's timeout in seconds (300)"),
    ("--origin", "O", "where the request came from, CHANNEL:TARGET (detected otherwise)"),
    ("--deliver-to", "T", "the chat the result goes to"),
    ("--deliver-channel", "C", "the channel of --deliver-to (telegram)"),
    ("--delivery-mode", "announce|announce-always|none", "how the result is delivered"),
    ("--monitor", "true|false", "follow the session (true)"),
    ("--no-monitor", None, "fire and forget: no delivery target needed"),
    ("--monitor-interval", "CRON", "the anchor's watchdog interval (shown only)"),
    ("--monitor-timeout", "MIN", "resolve the dispatch after this many minutes (60)"),
    ("--idle-threshold", "S", "idle seconds before the session counts as idle (300)"),
    ("--verify-cmd", "C", "a shell command the daemon runs once the dispatch is done"),
    ("--payload-kind", "K", "agentTurn (default), or another kind that needs no target"),
)
PARSERS: dict[str, tuple[str, str, str | None, tuple[str, ...], tuple[Flag, ...]]] = {
    "enqueue": (
        "start a sub-agent session on a task; the daemon delivers its result",
        f"--label L {PROMPT_USAGE} [--deliver-to T] [--timeout S] [options]",
        "Start a sub-agent session through the gateway and record the dispatch (spec §31.4).\n"
        "With a delivery target (--deliver-to, or from --origin) the daemon delivers the result;\n"
        "without one, --no-monitor is required. Piped stdin is the prompt when no source is given.",
        (
            "ocsched enqueue --label fix-login --message-file task.md --deliver-to 987654321"
            " --timeout 1800",
            "echo 'Summarize the logs' | ocsched enqueue --label logs --deliver-to 987654321",
            "ocsched --json dispatch enqueue --label again --mode reuse --message 'Go on'"
            " --deliver-to 987654321",
        ),
        ENQUEUE_FLAGS,
    ),
    "status": (
        "a label's dispatch, resolved if its session ended",
        "--label L",
        None,
        ("ocsched status --label fix-login", "ocsched --json status --label fix-login"),
        (LABEL,),
    ),
    "result": (
        "a label's dispatch and its session's last reply",
        "--label L",
        None,
        ("ocsched result --label fix-login", "ocsched --json result --label fix-login"),
        (LABEL,),
    ),
    "heartbeat": (
        "whether a session was active in the last 10 minutes",
        "--label L | --session-key K",
        None,
        (
            "ocsched heartbeat --label fix-login",
            "ocsched heartbeat --session-key agent:main:subagent:1b2c…",
        ),
        SESSION,
    ),
    "list": (
        "every label's newest dispatch, most recently changed first",
        "[--status S] [--limit N]",
        None,
        ("ocsched list", "ocsched --json dispatch list --status running --limit 50"),
        (
            ("--status", "S", "running, done, error or interrupted"),
            ("--limit", "N", "at most N labels (20)"),
            ("--as-of", "TIME", "as of TIME (ISO 8601), from the events up to it"),
        ),
    ),
    **{
        name: (
            text,
            f"(--label L | --session-key K) {PROMPT_USAGE}",
            None,
            (
                f"ocsched {name} --label fix-login --message 'Run the tests too'",
                f"ocsched {name} --session-key agent:main:subagent:1b2c… --message-file note.md",
            ),
            (*SESSION, *PROMPT),
        )
        for name, text in (
            ("send", "send a message to a label's session"),
            ("steer", "steer a label's session with a message (as send)"),
        )
    },
    "done": (
        "the sub-agent's completion signal, after its guards",
        "--label L --checklist JSON [--summary S] [--sha SHA] [--force-done --reason R]"
        " [--skip-activity-check]",
        "The sub-agent's completion signal (spec §31.7): the checklist, minimum runtime, git SHA"
        " and\nsession activity guards, then the label is done and the daemon delivers its"
        " result.",
        (
            f"ocsched done --label fix-login --summary 'Fixed the login race' \\\n"
            f"      --checklist '{CHECKLIST}' --sha abc1234",
        ),
        (
            LABEL,
            ("--checklist", "JSON", "work_complete, tests_passed, pushed…"),
            ("--summary", "S", "what was done"),
            ("--sha", "SHA", "the pushed commit (required for git work)"),
            ("--force-done", None, "accept a short run (with --reason)"),
            ("--reason", "R", "why a short run is complete"),
            ("--skip-activity-check", None, "do not ask the gateway for the session's activity"),
        ),
    ),
    "stuck": (
        "running dispatches silent for too long (exit status 1 when found)",
        "[--threshold-min N]",
        None,
        ("ocsched stuck", "ocsched stuck --threshold-min 30"),
        (("--threshold-min", "N", "minutes of silence (15)"),),
    ),
    "sync": (
        "resolve running dispatches whose session ended",
        "[--dry-run]",
        None,
        ("ocsched sync --dry-run", "ocsched sync"),
        (("--dry-run", None, "report, change nothing"),),
    ),
    "import-labels": (
        "record an openclaw-scheduler labels.json ledger as dispatches, once",
        "<labels.json>",
        "Record each entry of an openclaw-scheduler labels.json as a dispatch, every field kept.\n"
        "Importing the same file again records nothing. Running dispatches are followed by the\n"
        "daemon from then on (resolved, delivered, retried); the others are history.",
        ("ocsched dispatch import-labels ~/.openclaw/dispatch/labels.json",),
        (),
    ),
    "watcher-handoff": (
        "kept for old watchers: the daemon follows every running dispatch",
        "--label L [--reason R]",
        None,
        ("ocsched dispatch watcher-handoff --label fix-login",),
        (LABEL, ("--reason", "R", "ignored")),
    ),
}


def _usage(ctx: Context, args: argparse.Namespace) -> None:
    """`ocsched dispatch` alone: its help on stdout and exit status 2 (spec §31.1)."""
    print(args.dispatch_parser.format_help(), end="")
    raise SystemExit(2)


def register(commands: argparse._SubParsersAction) -> None:
    subcommands = group(
        commands,
        "dispatch",
        help="sub-agent dispatches (also bare: enqueue, status --label, …)",
        description="Sub-agent sessions started through the OpenClaw gateway and followed by the"
        " daemon (spec §31).\nThe subcommands also work without `dispatch` (`ocsched enqueue …`,"
        " `ocsched status --label L`),\nexcept import-labels and watcher-handoff. Text by default,"
        " the anchor's JSON with --json.",
        examples=[
            "ocsched enqueue --label fix-login --message-file task.md --deliver-to 987654321"
            " --timeout 1800",
            "ocsched status --label fix-login",
            "ocsched --json dispatch list --status running",
        ],
        error_status=2,  # spec §31.1
    )
    parent: Parser = commands.choices["dispatch"]
    parent.set_defaults(handler=_usage, dispatch_parser=parent)
    subcommands._parser_class = LooseParser
    for name, (text, usage, description, examples, flags) in PARSERS.items():
        parser = command(
            subcommands,
            name,
            _branded(SUBCOMMANDS[name]),
            help=text,
            usage=usage,
            description=description,
            examples=examples,
        )
        for flag, metavar, flag_help in flags:
            if metavar is None:
                parser.add_argument(flag, action="store_true", help=flag_help)
            else:
                parser.add_argument(flag, metavar=metavar, help=flag_help)
    ledger = subcommands.choices["import-labels"]
    ledger.add_argument("words", nargs="?", metavar="<labels.json>", help="the ledger")
