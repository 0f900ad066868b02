"""`ocsched` (also installed as `openclaw-scheduler`): argv to one handler, through argparse.

How a command joins the CLI (the contract every command module follows):

* `COMMANDS` below is the one table: command name -> (module under `ocsched.commands`,
  one-line help). Adding a command is a row here and a `register` in its module.
* The module defines `register(commands: argparse._SubParsersAction) -> None`. It adds its
  parser(s) to `commands`, the root parser's subparsers action: a description, an epilog
  with examples (`argv.command` / `argv.group` build both; the parser class `argv.Parser`
  keeps their lines, RawDescriptionHelpFormatter), and `set_defaults(handler=fn)` on every
  runnable parser, where `fn(ctx: Context, args: argparse.Namespace) -> None`. A module may
  register several table rows (`deliveries`: `alias` and `deliveries`).
* Modules are imported lazily: a command imports only its own module (`ocsched jobs add`
  builds the `jobs` parser; every other command is a name and a line of help). A
  subcommand added with `argv.lazy_command` (its arguments in a function) is built only
  when the line runs it: `jobs add` builds `add` alone. `--help` of the whole CLI, `help`
  and `completion` build every parser.
* `--json` and `--actor` are taken off the line wherever they are, before parsing
  (`ctx.json`, `ctx.actor`); every parser lists them for help and completion.
* Exit status: 0 done; 1 a refused or failed command, including wrong arguments to a known
  command (the anchor's `Usage: …` line, spec §5.2); 2 an unknown command or subcommand
  (with "did you mean"), and the dispatch CLI's argument errors (spec §31.1: its parsers
  are made with `error_status=2`, `argv.group(…, error_status=2)`); 130 interrupted.
  Every error is one line on stderr, or `{"ok": false, "error": …}` on stdout under
  `--json`; never a traceback (`OCSCHED_DEBUG=1` shows one).
* A group called without a subcommand (`ocsched jobs`) prints its help, exit 0 (the
  anchor's usage text).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from .argv import (
    ArgumentsError,
    NotBuilt,
    Parser,
    UnknownCommand,
    command_module,
    examples_text,
    nearest,
    unknown_option,
)
from .output import CommandError, UsageError, reader_may_leave

if TYPE_CHECKING:
    import argparse

    from .context import Context

COMMANDS: dict[str, tuple[str, str]] = {
    "jobs": ("jobs", "create, change, run and inspect jobs"),
    "runs": ("runs", "a job's runs, their output, running and stale runs"),
    "approvals": ("approvals", "approval gates waiting for a person"),
    "idem": ("idem", "idempotency keys: the runs' causes, claimed or released"),
    "alias": ("deliveries", "names for delivery targets"),
    "deliveries": ("deliveries", "deliveries of results and notices, with their attempts"),
    "events": ("events", "the audit trail: the newest events, or one id's whole history"),
    "audit": ("audit", "tamper evidence: verify the log's hash chain, anchor its head"),
    "export": ("exporting", "every event with its metadata, as JSON lines"),
    "replay": ("replay", "build a scratch home (log and read models) from an export"),
    "projections": ("projections", "the read models: their lag, rebuilding and verifying them"),
    "status": ("status", "what is stored and what runs next"),
    "cluster": ("cluster", "the daemons sharing one PostgreSQL log: leases, runs, lag"),
    "schema": ("schema", "the job spec's fields, and the record schemas"),
    "capabilities": ("capabilities", "the features this scheduler supports (JSON)"),
    "serve": ("serve", "the JSON API, live events and metrics over HTTP"),
    "daemon": ("daemon", "run the scheduler until SIGTERM or SIGINT"),
    "start": ("daemon", "the same as daemon"),
    "dispatch": ("dispatch", "sub-agent dispatches (also bare: enqueue, status --label, …)"),
    "msg": ("messages", "messages between agents: send, inboxes, threads, acknowledgements"),
    "messages": ("messages", "send a message with named flags (sub-agents' checkpoints)"),
    "queue": ("messages", "an agent's unread messages; clear, prune"),
    "inbox-consumer": ("inbox_consumer", "send an agent's pending messages to a chat"),
    "agents": ("agents", "the agents registry: list, get, register"),
    "tasks": ("tasks", "task groups of sub-agents: heartbeats, status, the dead-man switch"),
    "team": ("tasks", "team tasks and mailbox events, completion gates, team acks"),
    "completion": ("completion", "print a shell completion script (bash, zsh or fish)"),
    "import": ("importing", "bring jobs and their history over from openclaw-scheduler"),
    "migrate": ("migrate", "import OpenClaw's cron jobs (jobs.json) as jobs"),
    "service": ("service", "run the daemon as a systemd user service or a launchd agent"),
    "backup": ("backup", "an online copy of the store, compressed, with retention"),
    "restore": ("backup", "a backup into an empty home, its read models rebuilt and checked"),
}

DISPATCH_SHORTCUTS = (
    "enqueue",
    "stuck",
    "result",
    "sync",
    "done",
    "send",
    "steer",
    "heartbeat",
    "list",
)

DESCRIPTION = """\
A durable, event-sourced scheduler for OpenClaw agents and shell workflows.
Every change is an event (who, from where, why); `events show <id>` tells a job's story."""

EPILOG = (
    (
        examples_text(
            [
                'ocsched jobs add \'{"name":"backup","schedule_cron":"0 3 * * *",'
                '"session_target":"shell",',
                '      "payload_message":"./backup.sh","run_timeout_ms":600000,'
                '"origin":"system","delivery_mode":"none"}\'',
                "ocsched jobs list",
                "ocsched runs list 75db1016",
                "ocsched --json status",
                "ocsched help jobs add",
            ]
        )
        or ""
    )
    + """

Ids: a unique prefix of at least 4 characters (as `jobs list` shows them) works wherever
an id is taken.
Output: --json prints JSON. A command that reads prints what it read (an object or a
list); a command that does something prints {"ok": true, ...}; a failure prints
{"ok": false, "error": "..."}. Exit status: 0 done, 1 refused or failed, 2 unknown command.
Data: SCHEDULER_DB (a SQLite path or a postgresql:// URL), else $SCHEDULER_HOME/ocsched.db
(SCHEDULER_HOME defaults to ~/.openclaw/scheduler)."""
)


def build_parser(
    prog: str = "ocsched", wanted: str | None = None, words: Sequence[str] | None = None
) -> Parser:
    """The root parser. With `wanted`, only that command's module is imported and its
    parsers built; the other commands are names with their help. Without, every parser.
    `words` (the line's words that are not options): under `wanted`, only the
    subcommand they name is built in full (`argv.lazy_command`); the others stand in with
    their names and help lines."""
    root = Parser(
        prog=prog,
        usage="%(prog)s <command> [args] [--json] [--actor NAME]",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    root.add_argument("-V", "-v", "--version", action="store_true", help="print the version")
    commands = root.add_subparsers(title="commands", metavar="<command>", prog=prog)
    if wanted is not None and words is not None:
        commands.words = words
    registered: set[str] = set()

    def load(module_name: str) -> None:
        if module_name not in registered:
            registered.add(module_name)
            module = command_module(module_name)
            register = getattr(module, "register", None)
            if register is not None:
                register(commands)

    if wanted in COMMANDS:
        load(COMMANDS[wanted][0])
    for name, (module_name, help_text) in COMMANDS.items():
        if wanted is None:
            load(module_name)
        if name not in commands.choices:  # not wanted
            commands.placeholder(name, help_text)
    for choice in commands._choices_actions:  # the table's line, however a module put it
        choice.help = COMMANDS[choice.dest][1]
    _register_builtins(commands)
    return root


def _register_builtins(commands: argparse._SubParsersAction) -> None:
    from .argv import command

    version = command(
        commands,
        "version",
        None,
        help="print the version",
        examples=["ocsched version", "ocsched --json version"],
    )
    version.set_defaults(builtin=_print_version)
    helper = command(
        commands,
        "help",
        None,
        help="help for the CLI or one command",
        usage="[COMMAND [SUBCOMMAND]]",
        examples=["ocsched help", "ocsched help jobs add", "ocsched --json help"],
    )
    helper.add_argument("words", nargs="*", metavar="COMMAND", help="a command, subcommand")
    helper.set_defaults(builtin=_print_help)


def _print_version(args: argparse.Namespace) -> None:
    from ocsched import __version__

    if args.json:
        from .output import print_json

        print_json({"name": args.prog, "version": __version__})
    else:
        print(f"{args.prog} {__version__}")


def _print_help(args: argparse.Namespace) -> None:
    # The CLI's own help lists the table's lines: no command module need be imported; a
    # command's help builds that command's parsers (`--json`: the whole tree, described).
    if args.json:
        parser = build_parser(args.prog)
    else:
        first = args.words[0] if args.words else ""
        parser = build_parser(args.prog, first if first in COMMANDS else "", args.words)
    for word in args.words:
        found = _subparsers(parser)
        if found is None or word not in found.choices:
            raise UnknownCommand(parser, word, list(found.choices) if found else [])
        parser = found.choices[word]
    if args.json:
        from .output import print_json

        print_json(describe(parser))
    else:
        print(parser.format_help(), end="")


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def command_paths(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """Every runnable command's words under `parser` (`("jobs", "add")`, `("status",)`),
    aliases included."""
    subparsers = _subparsers(parser)
    if subparsers is None:
        return [()]
    return [
        (name, *rest) for name, sub in subparsers.choices.items() for rest in command_paths(sub)
    ]


def describe(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """A parser as data, for `help --json`: its usage, description, arguments, examples
    and subcommands (each described the same way)."""
    import argparse

    arguments = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        arguments.append(
            {
                "name": action.option_strings or [action.dest],
                "help": action.help,
                "takes_value": action.nargs != 0,
                "required": action.required,
            }
        )
    subparsers = _subparsers(parser)
    helps = {a.dest: a.help for a in subparsers._choices_actions} if subparsers else {}
    return {
        "command": parser.prog,
        "usage": " ".join(parser.format_usage().split()),
        "description": parser.description,
        "arguments": arguments,
        "examples": [
            line.strip() for line in (parser.epilog or "").splitlines()[1:] if line.strip()
        ],
        "subcommands": {
            name: {"help": helps.get(name), **describe(sub)}
            for name, sub in (subparsers.choices.items() if subparsers else ())
            if name in helps
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if argv is None else "ocsched"
    if prog not in ("ocsched", "openclaw-scheduler"):
        prog = "ocsched"
    json_mode = "--json" in args
    args = [arg for arg in args if arg != "--json"]
    try:
        actor, rest = _take_actor(args)
    except UsageError as error:
        return _fail(str(error), json_mode)
    not_text = _not_text(args)
    if not_text:
        return _fail(not_text, json_mode, 2 if _is_dispatch(rest) else 1)
    args = rest
    if hasattr(time, "tzset"):
        time.tzset()  # times are shown in $TZ, read afresh (also in process, by the tests)
    args = _route_dispatch(args)
    return _parse_and_run(args, json_mode, actor, prog)


def _parse_and_run(args: list[str], json_mode: bool, actor: str | None, prog: str) -> int:
    words = [arg for arg in args if not arg.startswith("-")]
    first = words[0] if words else ""
    parser = build_parser(prog, first if first in COMMANDS else "", words)
    try:
        try:
            namespace, extras = parser.parse_known_args(args)
        except NotBuilt as stand_in:  # an option's value was taken for the command's name
            parser = build_parser(prog, stand_in.path.partition(" ")[0])
            namespace, extras = parser.parse_known_args(args)
        if extras:
            _unrecognized(getattr(namespace, "_parser", parser), extras)
    except SystemExit as done:  # --help printed
        return done.code if isinstance(done.code, int) else 0
    except UnknownCommand as error:
        return _fail(_unknown_command(error), json_mode, 2)
    except ArgumentsError as error:
        return _fail(_arguments_error(error), json_mode, error.parser.error_status)
    namespace.json, namespace.actor, namespace.prog = json_mode, actor, prog
    builtin = getattr(namespace, "builtin", None)
    if builtin is not None:
        try:
            builtin(namespace)
        except UnknownCommand as error:
            return _fail(_unknown_command(error), json_mode, 2)
        return 0
    if namespace.version:
        _print_version(namespace)
        return 0
    handler = getattr(namespace, "handler", None)
    if handler is None:  # no command, or a group without its subcommand: its help
        namespace.words = getattr(namespace, "_parser", parser).path.split()
        _print_help(namespace)
        return 0
    # (True: a dispatch command's bare `--as-of`, which its handler refuses)
    if isinstance(getattr(namespace, "as_of", None), str):
        from .as_of import answering_as_of

        handler = answering_as_of(handler)
    return _execute(json_mode, actor, lambda ctx: handler(ctx, namespace))


def _take_actor(args: list[str]) -> tuple[str | None, list[str]]:
    """`--actor NAME` or `--actor=NAME`, anywhere on the line (the first one)."""
    for index, arg in enumerate(args):
        if arg == "--actor":
            if index + 1 >= len(args):
                raise UsageError("--actor needs a value. Usage: --actor <name>")
            return args[index + 1], args[:index] + args[index + 2 :]
        if arg.startswith("--actor="):
            return arg[len("--actor=") :], args[:index] + args[index + 1 :]
    return None, args


def _unrecognized(parser: Parser, extras: list[str]) -> None:
    option = next((arg for arg in extras if arg.startswith("-") and len(arg) > 1), None)
    if option is None:
        raise ArgumentsError(parser, "")
    known = [o for action in parser._actions for o in action.option_strings]
    raise ArgumentsError(parser, unknown_option(option, known))


def _unknown_command(error: UnknownCommand) -> str:
    path = error.parser.path
    shortcuts = [] if path else list(DISPATCH_SHORTCUTS)  # `ocsched enqeue` -> 'enqueue'
    found = nearest(error.word, error.choices + shortcuts)
    guess = f"; did you mean {found}?" if found else "."
    if not path:
        return f"Unknown command: {error.word}{guess} Run without arguments for usage."
    root = error.parser.prog.partition(" ")[0]
    return f"Unknown command: {path} {error.word}{guess} Run '{root} {path} --help' for usage."


def _arguments_error(error: ArgumentsError) -> str:
    """One line: what is wrong (when argparse says more than "required"), then the
    command's usage, as the anchor's `Usage: …` errors read."""
    message = str(error)
    usage = error.parser.usage_line()
    if not message or message.startswith("the following arguments are required"):
        return usage
    if message.startswith("argument ") and message.endswith("expected one argument"):
        name = message[len("argument ") :].partition(":")[0].split("/")[-1]
        return f"{name} needs a value. {usage}"
    message = message[:1].upper() + message[1:]
    return f"{message} {usage}" if message.endswith(("?", ".")) else f"{message}. {usage}"


def _route_dispatch(args: list[str]) -> list[str]:
    """Spec §5.1: the dispatch subcommands also work bare, and `status --label X` is the
    dispatch status."""
    if not args:
        return args
    first = args[0]
    wants_label = any(a == "--label" or a.startswith("--label=") for a in args)
    if first in DISPATCH_SHORTCUTS or (first == "status" and wants_label):
        return ["dispatch", *args]
    return args


def _not_text(args: list[str]) -> str | None:
    """Invalid UTF-8 in argv reaches Python as surrogate escapes, which no store, pipe or
    JSON document can hold: such an argument is refused before anything reads it. So is a
    NUL, which no command line can carry (only a caller in this process can pass one)."""
    from .output import as_utf8

    for arg in args:
        if "\x00" in arg:
            return "A NUL character in an argument (no command line can carry one)"
        shown = as_utf8(arg)
        if shown is not arg:
            if len(shown) > 60:
                shown = shown[:59] + "…"
            return f"Invalid UTF-8 in an argument: {shown}"
    return None


def _is_dispatch(args: list[str]) -> bool:
    """The dispatch CLI's commands, whose argument errors exit with status 2 (spec §31.1)."""
    return bool(args) and _route_dispatch(args)[0] == "dispatch"


def _execute(json_mode: bool, actor: str | None, action: Callable[[Context], None]) -> int:
    """Run one command with its `Context`: every error becomes one line and a status."""
    from ocsched.domain.errors import DomainError

    from .context import Context

    ctx: Context | None = None
    try:
        ctx = Context(json=json_mode)
        if actor:
            ctx.actor = actor
        with reader_may_leave():
            action(ctx)
        return 0
    except CommandError as error:
        return _fail(str(error), json_mode, error.exit_code)
    except DomainError as error:
        return _fail(str(error), json_mode)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # noqa: BLE001 - the promise is one line, never a traceback
        if ctx is not None and ctx.settings.debug:
            raise
        store = ctx.settings.read_model_path if ctx is not None else None
        database = ctx.settings.database if ctx is not None else None
        return _fail(_describe_unexpected(error, store, database), json_mode)
    finally:
        if ctx is not None:
            ctx.close()


def _describe_unexpected(
    error: Exception, store: str | None = None, database: str | None = None
) -> str:
    """One line for an error no command expected; `store` is the SQLite file the command
    used (the log's too, without PostgreSQL), named when SQLite says it is read-only or
    damaged, with what to try; `database` is SCHEDULER_DB. A transient storage error (a
    lock, a full disk, a lost connection) that reached here outside the retried steps
    (`Context._retrying`) is named the same way, with what to do."""
    from eventsourcing.persistence import OperationalError, PersistenceError

    from ocsched.adapters import storage_errors

    fault = storage_errors.storage_fault(error)
    if fault is not None:
        where = storage_errors.location(
            database or "", store or "the store's SQLite file (SCHEDULER_DB)", fault
        )
        return storage_errors.describe(fault, where, "the command did not finish")
    cause = _sqlite_error(error)
    if cause is not None:
        name = getattr(cause, "sqlite_errorname", "") or ""
        where = store or "the store's SQLite file"
        if name.startswith("SQLITE_READONLY"):
            return (
                f"{where} is read-only ({cause}); make the file and its folder writable, or run"
                " the command as the store's owner"
            )
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return (
                f"{where} is damaged ({cause}): restore it from a backup, or move it aside"
                " (with its -wal and -shm files) to start an empty store"
            )
    if isinstance(error, OperationalError):
        return f"Storage unavailable (check SCHEDULER_DB): {error}"
    if isinstance(error, OSError) and error.filename:
        return f"Cannot use {error.filename}: {error.strerror}"
    if isinstance(error, PersistenceError):
        return f"Storage error: {error}"
    if cause is not None:  # SQLite itself, on the read models (a folder, an I/O error)
        return f"Storage unavailable (check SCHEDULER_DB): {store or 'the store'}: {cause}"
    return f"Internal error ({type(error).__name__}): {error} (set OCSCHED_DEBUG=1 for details)"


def _sqlite_error(error: BaseException) -> Exception | None:
    """The sqlite3 error behind `error` (itself, or what the event store wrapped)."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, sqlite3.Error):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _fail(message: str, json_mode: bool, exit_code: int = 1) -> int:
    # One line, and printable whatever user text the message echoes: whitespace (line
    # breaks too) as one space, other control characters (NUL, ESC) and lone surrogates as
    # backslash escapes.
    message = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    if not message.isprintable():
        import unicodedata

        message = "".join(ascii(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in message)
    if json_mode:
        from .output import print_json

        print_json({"ok": False, "error": message})
    else:
        print(message, file=sys.stderr)
    return exit_code


def run() -> None:
    _stand_in_for_closed_streams()
    leave(main())


def _stand_in_for_closed_streams() -> None:
    """A process started with stdout or stderr closed (`>&-`) has None for it: what would
    go there goes nowhere, as `print` does with None, so a command still acts and exits
    with its status, with no traceback."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the process's life


def leave(code: int) -> NoReturn:
    """Exit with `code`, skipping the interpreter's finalization (~10 ms of a `jobs add`:
    every module torn down and every object freed, which the OS takes back at once anyway)
    when nothing needs it: the standard streams are flushed and the exit functions run
    (`atexit`: logging's last flush, finalizers, …) as the interpreter would do. A thread
    still running, or a stream that cannot be flushed (a closed pipe, which Python reports
    with status 120), takes the ordinary way."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    if not _flushed():
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # (they are forgotten once run: the ordinary way runs none twice)
    if not _flushed():
        sys.exit(code)
    os._exit(code)


def _flushed() -> bool:
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True
