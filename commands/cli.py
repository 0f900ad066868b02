"""`ocsched` (also installed as `openclaw-scheduler`): argv to one handler, in one table."""

from __future__ import annotations

import importlib
import os
import sys

from ocsched import __version__

from .argv import Argv
from .output import CommandError, UsageError

# command -> subcommand -> "module:function"; None is the handler for the bare command.
COMMANDS: dict[str, dict[str | None, str]] = {
    "jobs": {
        "add": "jobs:cli_add",
        "validate": "jobs:cli_validate",
        "update": "jobs:cli_update",
        "get": "jobs:cli_get",
        "list": "jobs:cli_list",
        "enable": "jobs:enable_handler",
        "disable": "jobs:disable_handler",
        "delete": "jobs:cli_delete",
        "tree": "jobs:cli_tree",
        "run": "jobs:cli_run",
        "cancel": "jobs:cli_cancel",
        "approve": "approvals:cli_approve",
        "reject": "approvals:cli_reject",
    },
    "approvals": {None: "approvals:cli_approvals"},
    "runs": {
        "list": "runs:cli_list",
        "get": "runs:cli_get",
        "output": "runs:cli_output",
        "running": "runs:cli_running",
        "stale": "runs:cli_stale",
    },
    "events": {"tail": "events:cli_tail", "show": "events:cli_show"},
    "alias": {None: "deliveries:cli_alias"},
    "deliveries": {None: "deliveries:cli_deliveries"},
    "projections": {None: "projections:cli_projections"},
    "status": {None: "status:cli_status"},
    "dispatch": {None: "dispatch:cli_dispatch"},
    "daemon": {None: "daemon:cli_daemon"},
    "start": {None: "daemon:cli_daemon"},
    "schema": {None: "schema:cli_schema"},
}

USAGE = """\
Usage: {prog} <command> [args] [--json] [--actor NAME]

Jobs:
  jobs add '<json>' [--dry-run] [--watchdog] [--at <datetime>] [--in <duration>] [--profile P]
      e.g. {prog} jobs add '{{"name":"backup","schedule_cron":"0 3 * * *",
           "session_target":"shell","payload_message":"./backup.sh","run_timeout_ms":600000,
           "origin":"system","delivery_mode":"none"}}'
  jobs validate '<json>'            check a spec without saving it
  jobs update <id> '<json>' [--dry-run] [--profile P]
  jobs get <id> | jobs list [--type standard|watchdog] | jobs tree
  jobs enable <id> | jobs disable <id> | jobs delete <id>
  jobs run <id>                     run now (also a disabled job), through the daemon
  jobs cancel <id> [--no-cascade]   disable the job and its descendants, stop their runs

Approvals:
  jobs approve <job-id> | jobs reject <job-id> [reason] | approvals list|pending

Runs:
  runs list <job-id> [limit] | runs get <run-id> | runs output <run-id> [stdout|stderr]
  runs running | runs stale [threshold-s]

Daemon:
  daemon [--grace <seconds>]        the scheduler (alias: start); ./scripts/run starts it

Deliveries:
  alias add <name> <channel> <target> [description] | alias list | alias remove <name>
  deliveries list [--run <id>] [--status S]

Audit:
  events tail [-n N] [--follow]     the newest events of the whole log
  events show <id>                  one job's whole history: who changed what, when

Sub-agent dispatch (also bare: enqueue, status --label, result, done, send, steer, ...):
  dispatch enqueue|status|result|done|send|steer|heartbeat|list|stuck|sync|import-labels

Read models:
  projections status                each projection's position and lag
  projections rebuild [NAME]        rebuild from the first event

Other:
  status | schema [jobs|all] | version | help

--json anywhere prints JSON; errors then print {{"ok": false, "error": "..."}}.
--actor NAME (or OCSCHED_ACTOR) names who is acting in the events; default: the OS user.
Data: SCHEDULER_DB (a SQLite path or a postgresql:// URL), else $SCHEDULER_HOME/ocsched.db
(SCHEDULER_HOME defaults to ~/.openclaw/scheduler)."""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if argv is None else "ocsched"
    if prog not in ("ocsched", "openclaw-scheduler"):
        prog = "ocsched"
    global_options = Argv(args, "Usage: --actor <name>")
    json_mode = global_options.flag("--json")
    try:
        actor = global_options.option("--actor")
    except UsageError as error:
        return _fail(str(error), json_mode)
    not_text = _not_text(args)
    args = global_options.args
    if not_text:
        return _fail(not_text, json_mode, 2 if _is_dispatch(args) else 1)
    if not args or args[0] in ("help", "--help", "-h"):
        print(USAGE.format(prog=prog))
        return 0
    if args[0] in ("version", "--version", "-v"):
        print(f"{prog} {__version__}")
        return 0
    return _run(args, json_mode, actor, prog)


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


def _route_dispatch(args: list[str]) -> list[str]:
    """Spec §5.1: the dispatch subcommands also work bare, and `status --label X` is the
    dispatch status."""
    first = args[0]
    wants_label = any(a == "--label" or a.startswith("--label=") for a in args)
    if first in DISPATCH_SHORTCUTS or (first == "status" and wants_label):
        return ["dispatch", *args]
    return args


def _not_text(args: list[str]) -> str | None:
    """Invalid UTF-8 in argv reaches Python as surrogate escapes, which no store, pipe or
    JSON document can hold: such an argument is refused before anything reads it."""
    from .output import as_utf8

    for arg in args:
        shown = as_utf8(arg)
        if shown is not arg:
            if len(shown) > 60:
                shown = shown[:59] + "…"
            return f"Invalid UTF-8 in an argument: {shown}"
    return None


def _is_dispatch(args: list[str]) -> bool:
    """The dispatch CLI's commands, whose argument errors exit with status 2 (spec §31.1)."""
    return bool(args) and _route_dispatch(args)[0] == "dispatch"


def _run(args: list[str], json_mode: bool, actor: str | None, prog: str) -> int:
    args = _route_dispatch(args)
    command, rest = args[0], args[1:]
    table = COMMANDS.get(command)
    if table is None:
        return _fail(f"Unknown command: {command}. Run without arguments for usage.", json_mode)
    if None in table:
        target = table[None]
    elif rest and rest[0] in table:
        target, rest = table[rest[0]], rest[1:]
    else:
        print(USAGE.format(prog=prog))
        return 0
    from ocsched.domain.errors import DomainError

    from .context import Context

    ctx: Context | None = None
    try:
        ctx = Context(json=json_mode)
        if actor:
            ctx.actor = actor
        _handler(target)(ctx, rest)
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


def _handler(target: str):
    module_name, function_name = target.split(":")
    module = importlib.import_module(f"ocsched.commands.{module_name}")
    return getattr(module, function_name)


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
    sys.exit(main())
