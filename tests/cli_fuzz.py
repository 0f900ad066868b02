"""The CLI fuzzer: hostile argv for every command in the CLI's table, and the property each
answer must keep. One definition, used by `tests/test_cli_fuzz.py` (a small budget) and
`scripts/chaos/fuzz_cli.py` (100,000 cases).

A case is a command from `COMMANDS` (or dispatch's `SUBCOMMANDS`) with arguments drawn from
the flags that command knows, each value either plausible or hostile: random text (lone
surrogates and surrogate-escaped bytes, as invalid UTF-8 in argv arrives), huge and odd
numbers, JSON of random shapes, job specs with hostile field values, paths that do not
exist, directories, files of random bytes. Values that name stored things refer to a store
seeded with jobs, runs, an approval, labels and an alias (`Ref`), and files are written
when the case runs (`FileArg`).

The property (`problems`): never a traceback, never "Internal error", exit status 0, 1 or
2; a failure is one line (stderr) or, under `--json`, a JSON object on stdout; a rejected
command (non-zero exit) records no event.
"""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from .conftest import Result, Scheduler, shell_job

# --- what a case is ---------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A stored thing of the seeded store, chosen when the case runs: `kind` is one of
    `Seeds`' lists, `index` picks one."""

    kind: str
    index: int = 0


@dataclass(frozen=True)
class FileArg:
    """A path given on the command line: `missing`, `dir`, or a file holding `content`."""

    kind: str
    content: bytes = b""


Token = str | Ref | FileArg


@dataclass(frozen=True)
class Case:
    args: tuple[Token, ...]
    stdin: str | None = None
    config: bytes | None = None
    """The dispatch CLI's `config.json` for this case (none when None)."""

    @property
    def json(self) -> bool:
        return "--json" in self.args

    @property
    def command(self) -> str:
        first = self.args[0] if self.args else ""
        return first if isinstance(first, str) else ""


# --- the commands and the flags each knows ------------------------------------------------

# value kinds: job, run, label, alias, approval_job, any_id (ids); text, int, float, number
# (any numeric flag), json, spec, patch, checklist, path, ledger, duration, datetime, kind,
# status, schema, env (an environment variable name)


@dataclass(frozen=True)
class Shape:
    """A command's argv: fixed words, positional value kinds (the optional ones after
    `optional`), options with a value, and flags."""

    words: tuple[str, ...]
    positionals: tuple[str, ...] = ()
    optional: int = 0
    options: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


PROMPT = {"--message": "text", "--message-file": "path", "--message-env": "env"}
SHAPES: tuple[Shape, ...] = (
    Shape(
        ("jobs", "add"),
        ("spec",),
        options={"--at": "datetime", "--in": "duration", "--profile": "text"},
        flags=("--dry-run", "--watchdog"),
    ),
    Shape(("jobs", "validate"), ("spec",)),
    Shape(
        ("jobs", "update"), ("job", "patch"), options={"--profile": "text"}, flags=("--dry-run",)
    ),
    Shape(("jobs", "get"), ("job",)),
    Shape(("jobs", "list"), options={"--type": "kind", "--as-of": "datetime"}),
    Shape(("jobs", "enable"), ("job",)),
    Shape(("jobs", "disable"), ("job",)),
    Shape(("jobs", "delete"), ("job",)),
    Shape(("jobs", "tree")),
    Shape(("jobs", "run"), ("job",)),
    Shape(("jobs", "cancel"), ("job",), flags=("--no-cascade",)),
    Shape(("jobs", "approve"), ("approval_job",)),
    Shape(("jobs", "reject"), ("approval_job", "text"), optional=1),
    Shape(("approvals", "list")),
    Shape(("approvals", "pending")),
    Shape(("runs", "list"), ("job", "int"), optional=1),
    Shape(("runs", "get"), ("run",)),
    Shape(("runs", "output"), ("run", "stream"), optional=1),
    Shape(("runs", "running")),
    Shape(("runs", "stale"), ("int",), optional=1),
    Shape(("runs", "stuck"), options={"--threshold-min": "int", "--limit": "int"}),
    Shape(("cluster", "status")),
    Shape(("events", "tail"), options={"-n": "int"}),
    Shape(("events", "show"), ("any_id",)),
    Shape(("export",), options={"--since": "datetime", "--type": "text", "--aggregate": "text"}),
    Shape(("runs", "explain"), ("run",)),
    Shape(("projections", "verify")),
    Shape(("audit", "verify"), options={"--from": "int", "--head": "text"}),
    Shape(("audit", "anchor")),
    Shape(("audit", "new-key")),
    Shape(("audit",), ("text",), optional=1),
    Shape(("alias", "add"), ("text", "text", "text", "text"), optional=1),
    Shape(("alias", "list")),
    Shape(("alias", "remove"), ("alias",)),
    Shape(("deliveries", "list"), options={"--run": "run", "--status": "status"}),
    Shape(("msg", "send"), ("text", "text", "text", "text"), optional=2),
    *(Shape(("msg", sub), ("text", "int"), optional=1) for sub in ("inbox", "outbox")),
    Shape(("msg", "team-inbox"), ("text", "int", "text", "text"), optional=3),
    *(Shape(("msg", sub), ("any_id",)) for sub in ("thread", "read")),
    Shape(("msg", "ack"), ("any_id", "text", "text"), optional=2),
    Shape(("msg", "receipts"), ("any_id", "int"), optional=1),
    *(Shape(("msg", sub), ("text",)) for sub in ("readall", "unread")),
    Shape(
        ("messages", "send"),
        options=dict.fromkeys(
            ("--from", "--to", "--kind", "--channel", "--delivery-to", "--body"), "text"
        ),
    ),
    Shape(("queue", "list"), ("text", "int"), optional=2),
    Shape(("queue", "clear"), ("text",), optional=1),
    Shape(("queue", "prune")),
    *(Shape((name,), ("text",), optional=1) for name in ("msg", "messages", "queue")),
    Shape(("agents", "list")),
    Shape(("agents", "get"), ("text",)),
    Shape(("agents", "register"), ("text", "text"), optional=1),
    Shape(("tasks", "list")),
    Shape(("tasks", "status"), ("any_id",)),
    Shape(("tasks", "create"), ("patch",), optional=1),
    Shape(("tasks", "history"), ("int",), optional=1),
    Shape(("tasks", "heartbeat"), ("text", "text", "text", "text"), optional=4),
    Shape(("tasks", "register-session"), ("text", "text", "text"), optional=3),
    Shape(("team", "map"), ("int",), optional=1),
    Shape(("team", "tasks"), ("text", "int"), optional=2),
    Shape(("team", "events"), ("text", "int", "text"), optional=3),
    Shape(("team", "gate"), ("text", "text", "patch", "int"), optional=4),
    Shape(("team", "check-gates"), ("int",), optional=1),
    Shape(("team", "ack"), ("any_id", "text", "text"), optional=3),
    *(Shape((name,), ("text",), optional=1) for name in ("agents", "tasks", "team")),
    Shape(("projections", "status")),
    Shape(("projections", "rebuild"), ("projection",), optional=1),
    Shape(("status",), options={"--as-of": "datetime"}),
    Shape(("schema",), ("schema",), optional=1),
    Shape(("capabilities",)),
    # `--print` always: a fuzzed install must never write a unit or ask a service manager.
    Shape(
        ("service", "install", "--print"),
        options={"--kind": "text", "--deliver-to": "text", "--channel": "text"},
        flags=("--with-secrets", "--with-helpers", "--no-start"),
    ),
    *(Shape(("service", sub), options={"--kind": "text"}) for sub in ("status", "uninstall")),
    Shape(("backup",), options={"--keep": "int"}, flags=("--gzip",)),  # into the home's
    Shape(("restore",), ("path",)),
    Shape(("import", "openclaw-scheduler"), ("path",), optional=1),  # read-only
    Shape(("migrate",), ("path",), optional=1),
    Shape(("idem", "status"), ("job",)),
    *(Shape(("idem", sub), ("text",)) for sub in ("check", "release")),
    Shape(("idem", "prune")),
    Shape(("idem",), ("text",), optional=1),
    Shape(("completion",), ("shell",), optional=1),
    Shape(("version",)),
    Shape(("help",), ("text", "text"), optional=2),
    Shape(
        ("dispatch", "enqueue"),
        options={
            "--label": "label",
            **PROMPT,
            "--mode": "mode",
            **dict.fromkeys(("--timeout", "--monitor-timeout", "--idle-threshold"), "int"),
            **dict.fromkeys(
                ("--agent", "--session-key", "--model", "--thinking", "--origin", "--deliver-to")
                + ("--deliver-channel", "--delivery-mode", "--monitor", "--payload-kind")
                + ("--verify-cmd",),
                "text",
            ),
        },
        flags=("--no-monitor", "--message-stdin"),
    ),
    Shape(("dispatch", "status"), options={"--label": "label"}),
    Shape(("status",), options={"--label": "label"}),  # routed to `dispatch status`
    Shape(("dispatch", "result"), options={"--label": "label"}),
    *(
        Shape(
            ("dispatch", verb),
            options={"--label": "label", "--session-key": "text", **PROMPT},
            flags=("--message-stdin",),
        )
        for verb in ("send", "steer")
    ),
    Shape(("dispatch", "heartbeat"), options={"--label": "label", "--session-key": "text"}),
    Shape(("dispatch", "list"), options={"--status": "status", "--limit": "int"}),
    Shape(
        ("dispatch", "done"),
        options={
            "--label": "label",
            "--checklist": "checklist",
            **dict.fromkeys(("--summary", "--sha", "--reason"), "text"),
        },
        flags=("--force-done", "--skip-activity-check"),
    ),
    Shape(("dispatch", "stuck"), options={"--threshold-min": "float"}),
    Shape(("dispatch", "sync"), flags=("--dry-run",)),
    Shape(("dispatch", "import-labels"), ("ledger",)),
    Shape(("dispatch", "watcher-handoff"), options={"--label": "label"}),
    # the bare dispatch shortcuts (spec §5.1)
    Shape(("list",), options={"--status": "status", "--limit": "int"}),
    Shape(("stuck",), options={"--threshold-min": "float"}),
    Shape(("result",), options={"--label": "label"}),
    # no subcommand, or an unknown one
    Shape(("dispatch",), ("text",), optional=1),
    Shape(("jobs",), ("text",), optional=1),
    Shape(("runs",), ("text",), optional=1),
    Shape(("events",), ("text",), optional=1),
    Shape(("projections",), ("text",), optional=1),
    Shape(("alias",), ("text",), optional=1),
    Shape(("deliveries",), ("text",), optional=1),
    Shape(("approvals",), ("text",), optional=1),
    Shape((), ("text", "text"), optional=2),  # an unknown command (or help, version)
)

# Options most calls of a command give (each added to 3 cases in 4).
USUAL_OPTIONS = ("--label", "--message")

# Commands the fuzzer leaves out, and why.
EXCLUDED = {
    ("daemon", None): "runs until signalled",
    ("start", None): "runs until signalled",
    ("serve", None): "runs until signalled, listening on a port",
    ("inbox-consumer", None): "sends through the gateway (--watch runs until signalled)",
    ("replay", None): "writes a new home wherever --into points",
}
# Tokens that would make a command block (`events tail --follow`) or start the daemon.
BLOCKING_TOKENS = {"--follow", "-f", "daemon", "start", "serve", "--serve"}


def covered_commands() -> set[tuple[str, str | None]]:
    """(command, subcommand) pairs the shapes exercise, for the test that every command in
    the CLI's table is fuzzed or excluded with a reason."""
    covered: set[tuple[str, str | None]] = set()
    for shape in SHAPES:
        if not shape.words:
            continue
        command = shape.words[0]
        sub = shape.words[1] if len(shape.words) > 1 else None
        covered.add((command, sub))
    return covered


# --- hostile values -----------------------------------------------------------------------

NUMBER_TEXTS = (
    "0",
    "-0",
    "-0.0",
    "0.0",
    "1",
    "-1",
    "1.5",
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "nan",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "0x10",
    "1_000",
    "٣",  # an Arabic-Indic digit: str.isdigit() and int() accept it
    "²",  # a superscript: str.isdigit() accepts it, int() does not
    "１２",  # fullwidth digits
    " 7 ",
    "+3",
    "",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    str(10**30),
    "-" + str(10**30),
    "1" * 5000,
)
JSON_NUMBER_LITERALS = (
    "1e400",
    "-1e400",
    "-0",
    "-0.0",
    "NaN",
    "Infinity",
    "-Infinity",
    "1E+308",
    "5e-324",
    str(10**30),
    str(-(10**30)),
    "9223372036854775808",
    "1" * 5000,
    "0.5",
)
ODD_TEXTS = (
    "",
    " ",
    "-",
    "--",
    "--json",
    "\n",
    "a\nb",
    "\r",
    "\t",
    "\x00",
    "\x1b[31m",
    "\u2028",
    "\ufeff",
    "\udcff",
    "\ud800",
    "\udc80abc",
    "../../escaped",
    "/",
    ".",
    "..",
    "%s%n",
    "'; DROP TABLE jobs; --",
    "null",
    "undefined",
    "true",
    "{}",
    "[]",
    "x" * 1_000_000,  # an id of 1 MB
)

# Text with lone surrogates, and what invalid UTF-8 in argv becomes (surrogate escapes).
any_text = st.text(st.characters(blacklist_categories=()), max_size=40)
escaped_bytes = st.binary(max_size=24).map(lambda b: b.decode("utf-8", "surrogateescape"))
hostile_text = st.one_of(any_text, escaped_bytes, st.sampled_from(ODD_TEXTS))
number_text = st.one_of(
    st.sampled_from(NUMBER_TEXTS),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(repr),
    st.integers(min_value=0, max_value=200).map(str),
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    any_text,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def _json_text(value: Any) -> str:
    # allow_nan: Python's reader takes NaN and Infinity, so a user can send them.
    return json.dumps(value, allow_nan=True)


@st.composite
def json_object_text(draw, base: dict[str, Any], keys: list[str]) -> str:
    """An object: `base` with some fields replaced by hostile values, written as JSON text
    (a value may be a number literal Python's `json.dumps` never writes, like 1e400)."""
    fields = dict(base)
    for name in draw(st.lists(st.sampled_from(keys), max_size=3)):
        fields[name] = draw(
            st.one_of(json_value, st.sampled_from(JSON_NUMBER_LITERALS).map(_Literal))
        )
    if draw(st.booleans()):
        fields.update(draw(st.dictionaries(any_text, json_leaf, max_size=2)))
    parts = [f"{json.dumps(name)}: {_value_text(value)}" for name, value in fields.items()]
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class _Literal:
    text: str


def _value_text(value: Any) -> str:
    return value.text if isinstance(value, _Literal) else _json_text(value)


def _job_keys() -> list[str]:
    from ocsched.domain.job_spec import job_fields

    return sorted(job_fields())


def json_texts(base: dict[str, Any]) -> st.SearchStrategy[str]:
    keys = _job_keys()
    return st.one_of(
        json_object_text(base, keys),
        json_value.map(_json_text),  # JSON of any shape, most of them not an object
        st.sampled_from(("{", "[1,", "", "nul", "[" * 3000, '{"a": ' * 2000)),
        hostile_text,
    )


SEEDED_SPEC = shell_job(name="fuzzed")
checklist_text = st.one_of(
    json_object_text({"work_complete": True}, ["work_complete", "tests_pass", "summary"]),
    json_value.map(_json_text),
    hostile_text,
)
ledger_content = st.one_of(
    st.dictionaries(
        any_text,
        st.one_of(
            st.fixed_dictionaries(
                {"sessionKey": any_text, "status": st.sampled_from(["running", "done", "x"])},
                optional={
                    "spawnedAt": st.one_of(any_text, st.just("2026-01-01T00:00:00.000Z")),
                    "timeoutSeconds": json_leaf,
                    "summary": json_value,
                    "deliverTo": json_leaf,
                },
            ),
            json_value,
        ),
        max_size=3,
    ).map(lambda ledger: _json_text(ledger).encode("utf-8", "surrogatepass")),
    json_value.map(lambda value: _json_text(value).encode()),
    st.binary(max_size=64),
)
CONFIG_KEYS = [
    "name",
    "startupGraceMs",
    "watchdogIntervalCron",
    "watchdogTimeoutMin",
    "deliver_watcher_ttl_hours",
    "deliverTo",
    "deliveryChannel",
    "agents",
]
config_content = st.one_of(
    json_object_text({}, CONFIG_KEYS).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_value.map(lambda value: _json_text(value).encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
)
path_arg = st.one_of(
    st.just(FileArg("missing")),
    st.just(FileArg("dir")),
    st.binary(max_size=256).map(lambda content: FileArg("file", content)),
    any_text.map(lambda text: FileArg("file", text.encode("utf-8", "surrogatepass"))),
    st.just("-"),
    st.just("/dev/null"),
    hostile_text,
)


def value(kind: str) -> st.SearchStrategy[Token]:
    """A value of `kind`: plausible most of the time, hostile otherwise."""
    refs = {
        "job": ("job",),
        "approval_job": ("approval_job", "job"),
        "run": ("run",),
        "label": ("label",),
        "alias": ("alias",),
        "any_id": ("job", "run", "label_id", "alias_id", "approval_id", "dispatch_id"),
    }
    plausible: st.SearchStrategy[Token]
    if kind in refs:
        plausible = st.builds(Ref, st.sampled_from(refs[kind]), st.integers(0, 3))
    elif kind in ("int", "float", "number"):
        plausible = number_text
    elif kind == "spec":
        plausible = json_texts(SEEDED_SPEC)
    elif kind == "patch":
        plausible = json_texts({"name": "renamed"})
    elif kind == "checklist":
        plausible = checklist_text
    elif kind == "path":
        plausible = path_arg
    elif kind == "ledger":
        plausible = st.one_of(ledger_content.map(lambda c: FileArg("file", c)), path_arg)
    elif kind == "duration":
        plausible = st.one_of(
            st.sampled_from(("1s", "5m", "2h", "1d", "0s", "-1s", "1e400s", "99999999999d")),
            st.tuples(number_text, st.sampled_from("smhdSMHD")).map("".join),
        )
    elif kind == "datetime":
        plausible = st.sampled_from(
            (
                "2030-01-01T00:00:00Z",
                "2030-01-01 00:00",
                "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00Z",
                "2030-02-30T00:00:00Z",
                "2030-01-01T00:00:00+99:00",
                "tomorrow",
            )
        )
    else:
        plausible = st.sampled_from(
            {
                "kind": ("standard", "watchdog"),
                "stream": ("stdout", "stderr", "STDERR"),
                "status": ("pending", "delivered", "failed", "running", "done", "error"),
                "schema": ("jobs", "runs", "all", "approvals", "dispatch"),
                "shell": ("bash", "zsh", "fish", "ksh"),
                "projection": ("jobs", "runs", "labels", "nope"),
                "mode": ("fresh", "reuse"),
                "env": ("HOME", "NOT_SET_ANYWHERE", "OCSCHED_ACTOR"),
                "text": ("hello", "fix the bug", "main"),
            }.get(kind, ("x",))
        )
    return st.one_of(plausible, plausible, hostile_text, number_text)


@st.composite
def cli_cases(draw) -> Case:
    """A command from the table with its flags, hostile values, extra tokens and `--json`."""
    shape = draw(st.sampled_from(SHAPES))
    tokens: list[Token] = list(shape.words)
    required = len(shape.positionals) - shape.optional
    count = draw(st.integers(0, len(shape.positionals))) if draw(st.booleans()) else required
    count = max(0, min(count, len(shape.positionals)))
    body: list[list[Token]] = [[draw(value(kind))] for kind in shape.positionals[:count]]
    names = sorted(shape.options)
    chosen = draw(st.lists(st.sampled_from(names), max_size=5, unique=True)) if names else []
    for usual in USUAL_OPTIONS:  # what most calls give, so cases get past the first check
        if usual in shape.options and usual not in chosen and draw(st.integers(0, 3)):
            chosen.append(usual)
    for name in chosen:
        given = draw(value(shape.options[name]))
        if draw(st.integers(0, 9)) == 0:
            body.append([name])  # the flag without its value
        elif draw(st.integers(0, 9)) == 0 and isinstance(given, str):
            body.append([f"{name}={given}"])
        else:
            body.append([name, given])
    flags = draw(st.lists(st.sampled_from(shape.flags), unique=True)) if shape.flags else []
    body += [[flag] for flag in flags]
    if draw(st.integers(0, 4)) == 0:  # extra tokens: unknown flags, stray words
        body.append([draw(st.one_of(hostile_text, st.just("--bogus"), number_text))])
    body = draw(st.permutations(body)) if draw(st.booleans()) else body
    tokens += [token for group in body for token in group]
    if draw(st.booleans()):
        tokens.insert(draw(st.integers(0, len(tokens))), "--json")
    if draw(st.integers(0, 9)) == 0:
        tokens.insert(draw(st.integers(0, len(tokens))), "--actor")
        if draw(st.booleans()):
            tokens.insert(tokens.index("--actor") + 1, draw(hostile_text))
    stdin = draw(st.one_of(st.none(), st.none(), hostile_text, st.just("a task from stdin")))
    config = draw(st.one_of(st.none(), st.none(), st.none(), config_content))
    return Case(tuple(token for token in tokens if token not in BLOCKING_TOKENS), stdin, config)


# --- the seeded store and running a case ----------------------------------------------------


@dataclass
class Seeds:
    """Ids of what `seed_store` recorded, by kind (`Ref.kind`)."""

    ids: dict[str, list[str]]

    def pick(self, ref: Ref) -> str:
        values = self.ids.get(ref.kind) or ["missing-" + ref.kind]
        return values[ref.index % len(values)]


def unreachable_gateway_url() -> str:
    """ws:// on a 127.0.0.1 port nothing listens on: a gateway call fails at once."""
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def fuzz_scheduler(root: Path, gateway_url: str) -> Scheduler:
    """A scheduler in `root` whose HOME, OpenClaw files and gateway are private: dispatch
    commands reach only an unreachable gateway and write nothing outside `root`."""
    return isolate(Scheduler(root / "home"), root, gateway_url)


def isolate(scheduler: Scheduler, root: Path, gateway_url: str) -> Scheduler:
    """The scheduler's HOME, OpenClaw files and dispatch config under `root`, its gateway
    at `gateway_url`, no hooks."""
    user_home = root / "user"
    (user_home / ".openclaw" / "dispatch").mkdir(parents=True, exist_ok=True)
    scheduler.env.update(
        HOME=str(user_home),
        OPENCLAW_HOME=str(user_home / ".openclaw"),
        DISPATCH_CONFIG_DIR=str(user_home / ".openclaw" / "dispatch"),
        OPENCLAW_GATEWAY_URL=gateway_url,
        OPENCLAW_GATEWAY_TOKEN="fuzz-token",
        FUZZ_TEXT="a task from the environment",
    )
    for name in ("LOKI_PUSH_URL", "DISPATCH_WEBHOOK_URL", "OCSCHED_DEBUG", "SCHEDULER_DB"):
        scheduler.env.pop(name, None)
    return scheduler


def seed_store(scheduler: Scheduler) -> Seeds:
    """Two root jobs, a child that needs approval (with a pending approval), a finished and
    a running run, a running and a done label, an imported label, an alias."""
    from ocsched.adapters.settings import Settings
    from ocsched.commands.context import Context
    from ocsched.domain.label import Label

    root = scheduler.add(shell_job(name="nightly"))["id"]
    other = scheduler.add(shell_job(name="hourly", schedule_cron="0 * * * *"))["id"]
    child_spec = shell_job(name="child", parent_id=root, trigger_on="success", approval_required=1)
    del child_spec["schedule_cron"]
    child = scheduler.add(child_spec)["id"]
    scheduler.ok("alias", "add", "ops", "telegram", "12345", "the ops room")
    ctx = Context(settings=Settings.from_environment(scheduler.env), actor="seed")
    now = datetime.now(UTC)
    try:
        runs = []
        for job_id, finished in ((root, True), (other, False)):
            run = started_run(ctx, job_id, now - timedelta(hours=2))
            if finished:
                outcome = {"summary": "done", "shell_stdout": "out\n", "shell_exit_code": 0}
                run.finish("ok", outcome, {}, ctx.meta(), now - timedelta(hours=1))
            runs.append(run)
        dispatch, approval = held_for_approval(ctx, child, runs[0].id, now)
        labels = []
        # "just-started" was enqueued before the guard stored prompts: `dispatch done` on it
        # warns twice (force-done, no taskPrompt) before it checks the SHA
        for name, age, prompt in (
            ("fix-bug", timedelta(hours=3), "Fix the bug"),
            ("old-task", timedelta(days=2), "Fix the bug"),
            ("just-started", timedelta(seconds=1), None),
        ):
            label = Label(
                id=str(uuid.uuid4()),
                label=name,
                session_key=f"agent:main:subagent:{uuid.uuid4()}",
                settings={
                    "agent": "main",
                    "mode": "fresh",
                    "deliver_to": "12345",
                    "deliver_channel": "telegram",
                    "delivery_mode": "announce",
                    "timeout_seconds": 60,
                    "idle_threshold_seconds": 60,
                    "task_prompt": prompt,
                },
                meta=ctx.meta(),
                timestamp=now - age,
            )
            label.spawned(run_id=str(uuid.uuid4()), meta=ctx.meta(), timestamp=now - age)
            labels.append(label)
        ctx.save(*runs, dispatch, approval, *labels)
    finally:
        ctx.close()
    return Seeds(
        {
            "job": [root, other, child],
            "approval_job": [child],
            "run": [run.id for run in runs],
            "label": ["fix-bug", "old-task", "just-started"],
            "label_id": [label.id for label in labels],
            "alias": ["ops"],
            "alias_id": [],
            "approval_id": [approval.id],
            "dispatch_id": [dispatch.id],
        }
    )


def approval_pending_again(scheduler: Scheduler, seeds: Seeds) -> None:
    """A decision was recorded: the seeded approval job gets a new pending approval, so
    that later decisions reach the pending path too (what only that path reads failed once
    in CI), not just its refusal."""
    from ocsched.adapters.settings import Settings
    from ocsched.commands.context import Context

    ctx = Context(settings=Settings.from_environment(scheduler.env), actor="seed")
    try:
        (job,), (run, *_) = seeds.ids["approval_job"], seeds.ids["run"]
        ctx.save(*held_for_approval(ctx, job, run, datetime.now(UTC)))
    finally:
        ctx.close()


def held_for_approval(ctx: Any, job_id: str, source_run_id: str, now: datetime) -> tuple:
    """A chain dispatch of the job held for a new pending approval (the dispatch, the
    approval), not saved yet; `ctx` is a `Context`."""
    from ocsched.domain.approval import Approval
    from ocsched.domain.dispatch import Dispatch
    from ocsched.domain.schedule import to_ts

    dispatch = Dispatch(
        id=str(uuid.uuid4()),
        job_id=job_id,
        kind="chain",
        scheduled_for=to_ts(now),
        source_run_id=source_run_id,
        retry_count=0,
        meta=ctx.meta(),
        timestamp=now,
    )
    approval = Approval(
        id=str(uuid.uuid4()),
        job_id=job_id,
        dispatch_id=dispatch.id,
        source_run_id=source_run_id,
        meta=ctx.meta(),
        timestamp=now,
    )
    dispatch.hold(approval.id, ctx.meta(), now)
    return dispatch, approval


def started_run(ctx: Any, job_id: str, started: datetime) -> Any:
    """A manual run of the job that started at `started` (what only the daemon records),
    not saved yet; `ctx` is a `Context`."""
    from ocsched.domain.run import Run

    run = Run(
        id=str(uuid.uuid4()),
        job_id=job_id,
        trigger="manual",
        slot=None,
        dispatch_id=None,
        retry_count=0,
        retry_of=None,
        triggered_by_run=None,
        replay_of=None,
        run_timeout_ms=1000,
        owner="test:1:1",
        job_changes={},
        meta=ctx.meta(),
        timestamp=started,
    )
    run.start(4242, 4242, ctx.meta(), started)
    return run


def materialize(case: Case, seeds: Seeds, files: Path) -> list[str]:
    """The case's argv, with refs replaced by stored ids and files written under `files`."""
    args: list[str] = []
    for index, token in enumerate(case.args):
        if isinstance(token, Ref):
            args.append(seeds.pick(token))
        elif isinstance(token, FileArg):
            path = files / f"arg-{index}"
            if token.kind == "dir":
                path.mkdir(exist_ok=True)
            elif token.kind == "file":
                path.write_bytes(token.content)
            args.append(str(path))
        else:
            args.append(token)
    return args


@dataclass
class Outcome:
    args: list[str]
    result: Result
    events_before: int
    events_after: int


def run_case(scheduler: Scheduler, seeds: Seeds, case: Case, files: Path) -> Outcome:
    files.mkdir(parents=True, exist_ok=True)
    args = materialize(case, seeds, files)
    config = Path(scheduler.env["DISPATCH_CONFIG_DIR"]) / "config.json"
    if case.config is None:
        config.unlink(missing_ok=True)
    else:
        config.write_bytes(case.config)
    before = scheduler.event_count()
    # In the case's folder: a random word taken as a relative path (`backup <word>`)
    # makes it there, not in the folder the tests were started from
    with gateway_gives_up_at_once(), contextlib.chdir(files):
        result = scheduler.run(*args, stdin=case.stdin)
    return Outcome(args, result, before, scheduler.event_count())


@contextlib.contextmanager
def gateway_gives_up_at_once() -> Iterator[None]:
    """The gateway client tries once, with a short timeout (not 3 connects with backoff):
    the unreachable gateway answers a case in milliseconds instead of 0.6 s."""
    from unittest import mock

    from ocsched.adapters.gateway import GatewayClient

    defaults = GatewayClient.__init__.__kwdefaults__
    assert defaults is not None
    quick = {"connect_attempts": 1, "backoff_initial_s": 0.0, "call_timeout_s": 2.0}
    with mock.patch.dict(defaults, quick):
        yield


# --- the property ---------------------------------------------------------------------------

# Lines a command prints beside its answer, not as its error: `dispatch done`'s guards warn
# (spec §31.7, steps 6-7) before a later step rejects the request.
NOTE_PREFIXES = (
    "WARNING:",
    "[dispatch] warn:",
    "auto-detected",
    "auto-resolved",
    "  [ok]",
    "manual/local",
)


def problems(case: Case, outcome: Outcome) -> dict[str, str]:
    """What the answer broke, by kind: traceback, internal_error, exit_status, json, lines,
    log_changed. Empty when the answer keeps the contract."""
    result = outcome.result
    found: dict[str, str] = {}
    both = result.stdout + result.stderr
    if "Traceback (most recent call last)" in both:
        found["traceback"] = result.stderr[-2000:]
    if "Internal error" in both:
        found["internal_error"] = both[-500:]
    if result.returncode not in (0, 1, 2):
        found["exit_status"] = str(result.returncode)
    if result.returncode != 0 and not _is_stuck_finding(case, result):
        if outcome.events_after != outcome.events_before:
            found["log_changed"] = f"{outcome.events_before} -> {outcome.events_after} events"
        usage = _is_dispatch_usage(result)
        if case.json and not usage:
            try:
                reply = json.loads(result.stdout)
            except ValueError:
                found["json"] = f"not JSON: {result.stdout[:300]!r}"
            else:
                if not _is_error_object(reply):
                    found["json"] = f"not an error object: {result.stdout[:300]!r}"
        elif not case.json and not usage and not _one_line(result):
            found["lines"] = f"stderr is not one line: {result.stderr[:300]!r}"
    return found


def _is_stuck_finding(case: Case, result: Result) -> bool:
    """`dispatch stuck` that found stuck sessions (spec §31.6), or `runs stuck` that found
    stale runs (§25.3): exit status 1 without an error, a report on stdout (JSON under
    --json)."""
    if result.returncode != 1 or "stuck" not in case.args:
        return False
    if case.json:
        return '"stuck_count"' in result.stdout or '"stuck": [' in result.stdout
    report = " stuck session" in result.stdout or " stale run(s) older than" in result.stdout
    return report and not _error_lines(result)


def _error_lines(result: Result) -> list[str]:
    """stderr without the notes commands print while they work (warnings, auto-detection)."""
    return [line for line in result.stderr.splitlines() if not line.startswith(NOTE_PREFIXES)]


def _is_error_object(reply: Any) -> bool:
    """{"ok": false, "error": "<one line>"}"""
    if not isinstance(reply, dict) or set(reply) != {"ok", "error"} or reply["ok"] is not False:
        return False
    return isinstance(reply["error"], str) and "\n" not in reply["error"]


def _one_line(result: Result) -> bool:
    return len(_error_lines(result)) == 1 and result.stderr.endswith("\n")


def _is_dispatch_usage(result: Result) -> bool:
    """A bare or unknown `dispatch` subcommand: the usage on stdout, exit status 2."""
    return result.returncode == 2 and result.stdout.startswith("Usage: ocsched dispatch")


class FuzzStore:
    """The seeded store cases run against, made again every `reseed_every` cases (accepted
    commands use the seeds up: a deleted job, a disabled one); a decided approval is
    replaced at once (`approval_pending_again`)."""

    def __init__(self, root: Path, reseed_every: int = 100) -> None:
        self.root = root
        self.reseed_every = reseed_every
        self.gateway_url = unreachable_gateway_url()
        self.cases = 0
        self.generation = 0
        self._fresh()

    def _fresh(self) -> None:
        self.generation += 1
        self.scheduler = fuzz_scheduler(self.root / f"store-{self.generation}", self.gateway_url)
        self.seeds = seed_store(self.scheduler)

    def run(self, case: Case) -> tuple[Outcome, dict[str, str]]:
        """Run the case; its outcome and the problems found (empty when none)."""
        if self.cases and self.cases % self.reseed_every == 0:
            self._fresh()
        self.cases += 1
        files = self.root / f"store-{self.generation}" / f"files-{self.cases}"
        outcome = run_case(self.scheduler, self.seeds, case, files)
        decided = {"approve", "reject"} & set(outcome.args[:4])
        if decided and outcome.events_after > outcome.events_before:
            approval_pending_again(self.scheduler, self.seeds)
        return outcome, problems(case, outcome)

    def check(self, case: Case) -> None:
        """Run the case and fail on any problem."""
        outcome, found = self.run(case)
        assert not found, (outcome.args[:12], outcome.result, found)
