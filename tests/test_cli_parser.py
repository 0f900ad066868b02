"""The command line's shape: help for every command, usage errors, the --json envelope,
id prefixes, completion scripts, and tables that fit the terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios

import pytest

from ocsched.commands.cli import build_parser, command_paths

from .conftest import OCSCHED, shell_job

LEGACY_PATHS = {("dispatch",)}  # still on its own argv reading (commands/cli.py LEGACY)
PATHS = sorted(path for path in command_paths(build_parser()) if path not in LEGACY_PATHS)
GROUPS = sorted({path[:1] for path in PATHS if len(path) > 1})


def ids(path: tuple[str, ...]) -> str:
    return " ".join(path)


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS + GROUPS, ids=ids)
def test_every_command_and_subcommand_has_help_with_examples(scheduler, path):
    result = scheduler.run(*path, "--help")
    assert result.returncode == 0, result
    assert result.stdout.startswith(f"Usage: ocsched {' '.join(path)}"), result.stdout
    examples = result.stdout.partition("\nExamples:\n")[2]
    assert "ocsched " in examples and path[-1] in examples, result.stdout
    assert "--json" in result.stdout  # the global options are listed everywhere
    assert scheduler.ok("help", *path).stdout == result.stdout
    assert not scheduler.db_path.exists()  # help opens no store


def test_the_cli_help_lists_every_command_without_importing_them(scheduler):
    outputs = {scheduler.ok(*flag).stdout for flag in ([], ["--help"], ["-h"], ["help"])}
    assert len(outputs) == 1
    for stdout in outputs:
        assert stdout.startswith("Usage: ocsched <command>")
        for command in ("jobs", "runs", "dispatch", "completion", "version"):
            assert re.search(rf"^    {command} +\S", stdout, re.M), (command, stdout)


def test_a_group_without_its_subcommand_prints_its_help(scheduler):
    result = scheduler.ok("jobs")
    assert result.stdout == scheduler.ok("jobs", "--help").stdout
    assert scheduler.ok("--json", "jobs").json == scheduler.ok("--json", "help", "jobs").json
    assert scheduler.ok("--json").json["command"] == "ocsched"


def test_only_the_subcommand_being_run_is_built_and_its_group_lists_them_all():
    from ocsched.commands.argv import Placeholder

    whole = build_parser()
    line = ["jobs", "add", "{}"]
    lazy = build_parser("ocsched", "jobs", line)
    jobs = lazy._subparsers._group_actions[0].choices["jobs"]
    subcommands = jobs._subparsers._group_actions[0].choices
    assert not isinstance(subcommands["add"], Placeholder)
    assert isinstance(subcommands["list"], Placeholder)
    assert isinstance(lazy._subparsers._group_actions[0].choices["runs"], Placeholder)
    whole_jobs = whole._subparsers._group_actions[0].choices["jobs"]
    assert jobs.format_help() == whole_jobs.format_help()
    assert list(subcommands) == list(whole_jobs._subparsers._group_actions[0].choices)


def test_an_option_s_value_taken_for_a_command_word_still_runs_the_command(scheduler):
    # `--actor` is taken off the line once; a second one is the parsers' own option, and
    # its value is not the subcommand the line runs (that one was left unbuilt at first).
    job = scheduler.add(shell_job())
    assert scheduler.ok("--json", "jobs", "--actor", "bob", "list").json[0]["id"] == job["id"]
    listed = scheduler.ok("--json", "--actor", "a", "--actor", "b", "jobs", "list").json
    assert listed[0]["id"] == job["id"]


def test_help_json_describes_the_tree(scheduler):
    tree = scheduler.ok("--json", "help").json
    add = tree["subcommands"]["jobs"]["subcommands"]["add"]
    assert add["command"] == "ocsched jobs add"
    assert add["usage"].startswith("Usage: ocsched jobs add <json> [--dry-run]")
    assert any("--dry-run" in argument["name"] for argument in add["arguments"])
    assert add["examples"][0].startswith("ocsched jobs add '{")
    alone = scheduler.ok("--json", "help", "jobs", "add").json
    assert alone == {k: v for k, v in add.items() if k != "help"}


def test_version_in_every_spelling(scheduler):
    for spelling in ("version", "--version", "-V", "-v"):
        assert scheduler.ok(spelling).stdout == "ocsched 0.1.0\n"
    assert scheduler.ok("--json", "version").json == {"name": "ocsched", "version": "0.1.0"}
    assert scheduler.ok("-V", "--json").json["version"] == "0.1.0"


# --- usage errors ------------------------------------------------------------------------------


def misspelled(word: str) -> str:
    """The word without its last letter (with it doubled when the word is short)."""
    return word[:-1] if len(word) > 3 else word + word[-1]


@pytest.mark.parametrize("path", PATHS + [p for p in LEGACY_PATHS], ids=ids)
def test_a_typo_in_any_command_or_subcommand_exits_2_naming_the_nearest(scheduler, path):
    typo = (*path[:-1], misspelled(path[-1]))
    result = scheduler.run(*typo)
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result
    assert f"did you mean '{path[-1]}'?" in result.stderr, result.stderr
    as_json = scheduler.run("--json", *typo)
    assert as_json.returncode == 2 and as_json.json["ok"] is False
    assert f"did you mean '{path[-1]}'?" in as_json.json["error"]


def test_the_issue_s_typo(scheduler):
    result = scheduler.run("jobs", "lst")
    assert (result.returncode, result.stderr) == (
        2,
        "Unknown command: jobs lst; did you mean 'list'? Run 'ocsched jobs --help' for usage.\n",
    )


def test_an_unknown_option_names_the_nearest_and_the_usage(scheduler):
    result = scheduler.run("jobs", "add", "{}", "--dry-rn")
    assert result.returncode == 1
    assert result.stderr == (
        "Unknown option: --dry-rn; did you mean '--dry-run'? Usage: jobs add <json> [--dry-run]"
        " [--watchdog] [--at <datetime>] [--in <duration>] [--profile <id>]\n"
    )
    missing = scheduler.run("jobs", "add", "{}", "--at")
    assert missing.stderr.startswith("--at needs a value. Usage: jobs add <json>")


def test_global_options_work_anywhere_on_the_line(scheduler):
    job = scheduler.add(shell_job())
    for args in (
        ("--json", "jobs", "get", job["id"]),
        ("jobs", "--json", "get", job["id"]),
        ("jobs", "get", job["id"], "--json", "--actor", "someone"),
        ("--actor=someone", "jobs", "get", "--json", job["id"]),
    ):
        assert scheduler.ok(*args).json["id"] == job["id"], args
    scheduler.ok("jobs", "disable", job["id"], "--actor", "ops-bot")
    events = scheduler.ok("--json", "events", "show", job["id"]).json
    assert events[-1]["actor"] == "ops-bot"


# --- the --json envelope ---------------------------------------------------------------------


def test_reads_print_what_they_read_and_actions_print_ok(scheduler):
    created = scheduler.ok("--json", "jobs", "add", json.dumps(shell_job()), "--actor", "a").json
    assert created["ok"] is True
    job_id = created["job"]["id"]
    reads = {
        ("jobs", "get", job_id): dict,
        ("jobs", "list"): list,
        ("jobs", "tree"): list,
        ("runs", "list", job_id): list,
        ("runs", "running"): list,
        ("approvals", "list"): list,
        ("alias", "list"): list,
        ("deliveries", "list"): list,
        ("events", "show", job_id): list,
        ("events", "tail"): list,
        ("projections", "status"): list,
        ("status",): dict,
        ("schema", "jobs"): dict,
        ("version",): dict,
        ("help",): dict,
    }
    for args, kind in reads.items():
        value = scheduler.ok("--json", *args).json
        assert isinstance(value, kind), args
        assert not (isinstance(value, dict) and "ok" in value), args
    actions = [
        ("jobs", "validate", json.dumps(shell_job())),
        ("jobs", "add", json.dumps(shell_job()), "--dry-run"),
        ("jobs", "update", job_id, '{"name": "renamed"}'),
        ("jobs", "disable", job_id),
        ("jobs", "enable", job_id),
        ("jobs", "run", job_id),
        ("alias", "add", "ops", "telegram", "-100123"),
        ("alias", "remove", "ops"),
        ("projections", "rebuild", "jobs"),
        ("jobs", "cancel", job_id),
        ("jobs", "delete", job_id),
    ]
    for args in actions:
        assert scheduler.ok("--json", *args).json["ok"] is True, args
    failed = scheduler.run("--json", "jobs", "get", job_id)
    assert (failed.returncode, failed.json) == (
        1,
        {"ok": False, "error": f"Job not found: {job_id}"},
    )


# --- id prefixes -------------------------------------------------------------------------------


def test_a_unique_prefix_is_taken_wherever_a_job_id_is(scheduler):
    job = scheduler.add(shell_job())
    shown = scheduler.ok("jobs", "list").stdout.splitlines()[2].split()[0]
    assert shown == job["id"][:8] + ".."
    for text in (job["id"][:8], shown, job["id"][:4], job["id"]):
        assert scheduler.ok("jobs", "get", text).json["id"] == job["id"], text
    assert (
        scheduler.ok("--json", "jobs", "update", shown, '{"name": "x"}').json["job"]["name"] == "x"
    )
    assert scheduler.ok("--json", "jobs", "disable", job["id"][:6]).json["job_id"] == job["id"]
    assert scheduler.ok("--json", "runs", "list", job["id"][:8]).json == []
    assert len(scheduler.ok("--json", "events", "show", job["id"][:8]).json) == 3
    too_short = scheduler.run("jobs", "get", job["id"][:3])
    assert too_short.stderr == f"Job not found: {job['id'][:3]}\n"


def test_an_ambiguous_prefix_names_the_matches_and_changes_nothing(scheduler):
    scheduler.add(shell_job(id="nightly-backup"))
    scheduler.add(shell_job(id="nightly-report"))
    scheduler.add(shell_job(id="nightly"))
    before = scheduler.event_count()
    result = scheduler.run("jobs", "delete", "nigh")
    assert result.returncode == 1
    assert result.stderr == (
        "Ambiguous id prefix nigh: matches nightly, nightly-backup, nightly-report;"
        " give more characters\n"
    )
    assert scheduler.event_count() == before
    # an exact id wins over the ids it is a prefix of
    assert scheduler.ok("jobs", "get", "nightly").json["id"] == "nightly"
    assert scheduler.ok("jobs", "get", "nightly-r").json["id"] == "nightly-report"


# --- completion ------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_every_command(scheduler, shell, tmp_path):
    script = scheduler.ok("completion", shell).stdout
    for word in ("jobs", "runs", "projections", "rebuild", "dry-run", "no-cascade"):
        assert word in script, word
    marker = {"bash": "complete -o", "zsh": "#compdef ocsched", "fish": "complete -c ocsched"}
    assert marker[shell] in script
    program = shutil.which(shell)
    if program is not None:  # the shell parses it
        path = tmp_path / f"ocsched.{shell}"
        path.write_text(script)
        checked = subprocess.run([program, "-n", str(path)], capture_output=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
    assert scheduler.ok("--json", "completion", shell).json["script"].strip() == script.strip()
    assert scheduler.run("completion", "tcsh").returncode == 1


# --- tables and times ------------------------------------------------------------------------


def test_runs_list_fits_80_columns_with_the_time_of_day(monkeypatch):
    from ocsched.commands.runs import _runs_table

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TZ", "UTC")
    record = {
        "id": "0c9f2e41-5b7a-4d1e-9f00-123456789abc",
        "status": "cancelled",
        "started_at": "2026-12-05 07:50:47",
        "finished_at": "2026-12-05 07:52:03",
        "duration_ms": 76_000,
        "trigger": "replay",
    }
    overnight = record | {"finished_at": "2026-12-06 00:00:01", "duration_ms": 29_954_000}
    lines = _runs_table([record, overnight]).splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "STARTED",
        "(UTC)",
        "FINISHED",
        "DURATION",
        "TRIGGER",
    ]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[2].split() == [
        "0c9f2e41..",
        "cancelled",
        "2026-12-05",
        "07:50:47",
        "07:52:03",
        "1m16s",
        "replay",
    ]
    assert lines[3].split()[2:7] == ["2026-12-05", "07:50:47", "12-06", "00:00:01", "8h19m"]


def test_jobs_list_shows_the_next_run_in_the_local_zone_labelled(scheduler):
    scheduler.add(shell_job(schedule_cron="0 3 * * *"))
    utc = scheduler.ok("jobs", "list").stdout.splitlines()
    assert "NEXT RUN (UTC)" in utc[0] and " 03:00 " in utc[2]
    paris = scheduler.ok("jobs", "list", env={"TZ": "Europe/Paris"}).stdout.splitlines()
    assert "NEXT RUN (CET/CEST)" in paris[0] and " 04:00 " in paris[2]
    scheduler.add(shell_job(name="once"), "--at", "2031-01-01T12:00:00Z")
    scheduler.add(shell_job(name="summer"), "--at", "2031-07-01T12:00:00Z")
    listed = scheduler.ok("jobs", "list", env={"TZ": "Europe/Paris", "COLUMNS": "100"}).stdout
    assert "at:2031-01-01 13:00  yes  2031-01-01 13:00" in listed, listed
    assert "at:2031-07-01 14:00  yes  2031-07-01 14:00" in listed, listed  # in CEST
    status = scheduler.ok("status", env={"TZ": "Europe/Paris"}).stdout
    assert re.search(r"^Next: +backup at \d{4}-\d\d-\d\d 04:00:00 CET$", status, re.M), status
    event = scheduler.ok("--json", "events", "tail", "-n", "1").json[0]
    line = scheduler.ok("events", "tail", "-n", "1", env={"TZ": "Asia/Tokyo"}).stdout
    hour = (int(event["time"][11:13]) + 9) % 24
    assert re.match(rf"\d{{4}}-\d\d-\d\d {hour:02d}:\d\d:\d\d JST  tester  ", line), line


# --- progress ------------------------------------------------------------------------------


def test_rebuild_shows_progress_on_a_terminal_only(scheduler):
    scheduler.add(shell_job())
    piped = scheduler.process("projections", "rebuild", "jobs")
    assert piped.stderr == "" and piped.stdout == "Rebuilt jobs from 1 events\n"
    assert "rebuild jobs" in _on_a_terminal(scheduler, "projections", "rebuild", "jobs")
    assert "rebuild" not in _on_a_terminal(scheduler, "--json", "projections", "rebuild", "jobs")


def _on_a_terminal(scheduler, *args: str) -> str:
    """What `ocsched args` writes when stdout and stderr are a terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    child = subprocess.Popen(
        [*OCSCHED, *args], env=scheduler.env, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the child
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        assert child.wait(timeout=30) == 0
    return b"".join(chunks).decode("utf-8", "replace")


# --- start-up ----------------------------------------------------------------------------------


def test_a_command_imports_only_its_own_module(scheduler):
    scheduler.add(shell_job())
    result = subprocess.run(
        [OCSCHED[0], "-X", "importtime", *OCSCHED[1:], "jobs", "list"],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines()}
    commands = {name for name in imported if name.startswith("ocsched.commands.")}
    assert "ocsched.commands.jobs" in commands  # (-X importtime lists it with its time)
    for name in ("runs", "events", "dispatch", "daemon", "completion", "projections"):
        assert f"ocsched.commands.{name}" not in commands, name
    # By top-level package: -X importtime may not list a package's own line (croniter's
    # is missing; its module `croniter.croniter` is there).
    unwanted = {"shtab", "tqdm", "difflib", "eventsourcing", "croniter"}
    assert not {name.split(".")[0] for name in imported} & unwanted
    assert "ocsched.commands.as_of" in commands  # (`jobs list --as-of`)


def test_building_a_command_s_parsers_imports_no_locale_nor_shutil():
    probe = (
        "import sys\n"
        "from ocsched.commands.cli import build_parser\n"
        "line = ['jobs', 'add', '{}']\n"
        "build_parser('ocsched', 'jobs', line).parse_known_args(line)\n"
        "print(sorted({'locale', 'shutil'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [OCSCHED[0], "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["[]"]
