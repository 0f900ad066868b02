"""The error contract of every command (issue 9, item 8): whatever the input, a failure is
one line on stderr, or {"ok": false, "error": …} on stdout under --json; never "Internal
error" or a traceback; a refusal records nothing. A read-only store still answers reads; a
damaged store is named, with what to try.

Each class of input here was found breaking the contract (most of them by the fuzzer,
tests/test_cli_fuzz.py); one example of each is kept as a test.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import OCSCHED, Result, Scheduler, shell_job


def plain_error(result: Result, status: int = 1) -> str:
    assert result.returncode == status, result
    assert result.stdout == "", result
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, repr(result.stderr)
    message = result.stderr[:-1]
    assert "Internal error" not in message and "Traceback" not in message, message
    return message


def json_error(result: Result, status: int = 1) -> str:
    assert result.returncode == status, result
    assert result.stderr == "", result
    reply = json.loads(result.stdout)
    assert set(reply) == {"ok", "error"} and reply["ok"] is False, reply
    message = reply["error"]
    assert "\n" not in message and "Internal error" not in message, message
    return message


def refused(scheduler: Scheduler, *args: str, status: int = 1) -> str:
    """Plain and --json both refuse with the same one line, and record nothing."""
    before = scheduler.event_count()
    plain = plain_error(scheduler.run(*args), status)
    as_json = json_error(scheduler.run("--json", *args), status)
    assert scheduler.event_count() == before
    assert plain == as_json
    return plain


@pytest.fixture
def job_id(scheduler: Scheduler) -> str:
    return scheduler.add(shell_job())["id"]


# --- invalid UTF-8 in argv (surrogate escapes) ------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "get", "\udcff"],
        ["events", "show", "ab\udcffcd"],
        ["alias", "add", "ops\udc80", "telegram", "1"],
        ["jobs", "reject", "<job>", "because\udcfe"],
        ["--actor", "\udcff", "jobs", "disable", "<job>"],
        ["jobs", "get", "\ud800"],  # a lone surrogate that is no escaped byte
    ],
    ids=["jobs-get", "events-show", "alias-add", "reject-reason", "actor", "lone-surrogate"],
)
def test_an_argument_of_invalid_utf8_is_refused_naming_it(scheduler, job_id, args):
    args = [job_id if arg == "<job>" else arg for arg in args]
    assert refused(scheduler, *args).startswith("Invalid UTF-8 in an argument: ")


def test_invalid_utf8_in_a_dispatch_argument_is_an_argument_error(scheduler):
    message = refused(scheduler, "dispatch", "status", "--label", "f\udcf0\udc9b", status=2)
    assert message == "Invalid UTF-8 in an argument: f\\xf0\\x9b"
    assert refused(scheduler, "result", "--label", "\udcb7", status=2).endswith(": \\xb7")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dispatch", "list", "--as-of"], "--as-of needs a value: a time (ISO 8601, UTC) or a"),
        (["list", "--as-of", "--type="], "Unknown option: --type"),
    ],
)
def test_a_bare_as_of_on_a_dispatch_command_is_an_argument_error(scheduler, args, message):
    assert message in refused(scheduler, *args, status=2)


def test_an_options_value_of_two_dashes_is_that_text(scheduler, job_id):
    """`--keep=--`: Python before 3.12 handed the command an empty list."""
    assert refused(scheduler, "backup", "--keep=--") == (
        "--keep must be a whole number of 1 or more, got: --"
    )


def test_an_actor_of_invalid_utf8_in_the_environment_is_recorded_escaped(scheduler, job_id):
    scheduler.ok("jobs", "disable", job_id, env={"OCSCHED_ACTOR": "ops\udcff"})
    assert scheduler.ok("--json", "events", "show", job_id).json[-1]["actor"] == "ops\\xff"


def test_a_control_character_in_an_echoed_argument_is_shown_escaped(scheduler):
    message = refused(scheduler, "jobs", "get", "a\x07b\x1b[31m")
    assert message == "Job not found: a\\x07b\\x1b[31m"


def test_a_nul_in_an_argument_is_refused_before_anything_reads_it(scheduler):
    """No command line can carry one; a caller in this process can (a path with a NUL
    was "embedded null byte" from the OS layer)."""
    for args in (("jobs", "get", "a\x00b"), ("backup", "--keep", "3", "\x00")):
        assert refused(scheduler, *args) == (
            "A NUL character in an argument (no command line can carry one)"
        )


# --- huge and odd numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("limit", [str(10**30), "9223372036854775808", "1" * 5000, "²", "٣"])
def test_runs_list_refuses_a_limit_that_is_not_a_small_whole_number(scheduler, job_id, limit):
    message = refused(scheduler, "runs", "list", job_id, limit)
    assert message.startswith("Expected a positive whole number (at most 1000000000), got: ")


@pytest.mark.parametrize("count", [str(10**30), "²", "-1", "1e3"])
def test_events_tail_refuses_a_count_that_is_not_a_small_whole_number(scheduler, job_id, count):
    message = refused(scheduler, "events", "tail", "-n", count)
    assert message == f"-n must be a whole number (at most 1000000000), got: {count}"


def test_runs_stale_refuses_a_huge_threshold_with_a_run_running(scheduler, job_id):
    _record_a_running_run(scheduler, job_id)
    assert scheduler.ok("--json", "runs", "stale", "30").json
    message = refused(scheduler, "runs", "stale", str(10**30))
    assert message.startswith("Expected a positive whole number (at most 1000000000)")


@pytest.mark.parametrize("grace", ["nan", "inf", "-1", "1e400"])
def test_daemon_refuses_a_grace_that_is_not_a_number_of_seconds(scheduler, grace):
    message = refused(scheduler, "daemon", "--grace", grace)
    assert message == f"--grace must be a number of seconds, got: {grace}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--limit", str(10**30)], "--limit must be a positive integer up to 1000000000"),
        (
            ["enqueue", "--label", "a", "--message", "x", "--timeout", str(10**30)],
            "--timeout must be a positive integer up to 1000000000",
        ),
        (["stuck", "--threshold-min", "nan"], "--threshold-min must be a number"),
        (["stuck", "--threshold-min", "1e400"], "--threshold-min must be a number"),
        (
            ["stuck", "--threshold-min", "1.7976931348623157e+308"],
            "--threshold-min must be a number up to 1000000000",
        ),
    ],
    ids=["limit", "timeout", "threshold-nan", "threshold-inf", "threshold-huge"],
)
def test_dispatch_refuses_numbers_past_what_it_can_store(scheduler, args, message):
    assert refused(scheduler, *args, status=2) == f"[dispatch] {message}"


@pytest.mark.parametrize(
    "literal", ["1e400", "-1e400", "NaN", "Infinity", str(10**30), "-0.5", "true"]
)
def test_a_huge_or_odd_number_in_a_job_field_is_refused_naming_the_field(
    scheduler, job_id, literal
):
    message = refused(scheduler, "jobs", "update", job_id, f'{{"max_retries": {literal}}}')
    assert message.startswith("max_retries ")


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("99999999999d", 'Invalid --in duration: "99999999999d" is too long'),
        (str(10**24) + "s", f'Invalid --in duration: "{10**24}s" is too long'),
        ("3000000d", '"3000000d" ends after the year 9999'),
    ],
)
def test_a_one_shot_too_far_away_is_refused(scheduler, duration, message):
    spec = json.dumps(shell_job())
    assert (
        refused(scheduler, "jobs", "add", spec, "--in", duration) == f"--at/--in error: {message}"
    )


def test_negative_zero_is_zero(scheduler, job_id):
    job = scheduler.ok("--json", "jobs", "update", job_id, '{"max_retries": -0.0}').json["job"]
    assert job["max_retries"] == 0 and json.dumps(job["max_retries"]) == "0"


# --- binary files and stdin, JSON that is not an object ------------------------------------------


def test_a_binary_message_file_is_refused_as_not_utf8(scheduler, tmp_path):
    binary = tmp_path / "task.bin"
    binary.write_bytes(b"\xff\xfe\x00\x80 not text")
    message = refused(scheduler, "enqueue", "--label", "a", "--message-file", str(binary), status=2)
    assert message == "[dispatch] --message-file: could not read file: not UTF-8 text"


def test_binary_stdin_is_refused_as_not_utf8(scheduler):
    completed = subprocess.run(
        [*OCSCHED, "--json", "send", "--label", "a", "--message-stdin"],
        env={**scheduler.env, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"},
        input=b"\xff\xfe binary",
        capture_output=True,
        timeout=60,
    )
    result = Result(completed.returncode, completed.stdout.decode(), completed.stderr.decode())
    message = json_error(result, status=2)
    assert message.startswith("[dispatch] --message-stdin: ")
    assert "not UTF-8 text" in message or "not valid UTF-8 text" in message


@pytest.mark.parametrize(
    "ledger",
    [b"\xff\xfe", b"[1, 2]", b'"labels"', b"[" * 100_000, b""],
    ids=["binary", "array", "string", "deep", "empty"],
)
def test_a_ledger_that_is_not_a_json_object_is_refused(scheduler, tmp_path, ledger):
    path = tmp_path / "labels.json"
    path.write_bytes(ledger)
    message = refused(scheduler, "dispatch", "import-labels", str(path))
    assert message.startswith(f"[dispatch] {path} is ")


def test_a_ledger_cannot_record_what_the_read_models_cannot_hold(scheduler, tmp_path):
    """A number past 64 bits was recorded and then failed every catch-up: each later
    command said "Internal error (OverflowError)". Numbers are whole and bounded, text is
    text, and a label no store can hold is skipped."""
    path = tmp_path / "labels.json"
    path.write_text(
        '{"big": {"sessionKey": "k1", "status": "done", "timeoutSeconds": 1e30,'
        ' "idleThresholdSeconds": 100000000000000000000000000000, "summary": ["a", 1]},'
        ' "odd\\udcff": {"sessionKey": "k2"}, "nan": {"sessionKey": "k3", "timeoutSeconds": NaN,'
        ' "deliverTo": 12345, "error": "bad \\ud800 text"}}'
    )
    reply = scheduler.ok("--json", "dispatch", "import-labels", str(path)).json
    assert (reply["imported"], reply["skipped"], reply["labels"]) == (2, 1, ["big", "nan"])
    labels = {e["label"]: e for e in scheduler.ok("--json", "dispatch", "list").json["labels"]}
    assert labels["big"]["timeoutSeconds"] is None and labels["big"]["summary"] == '["a", 1]'
    assert labels["nan"]["deliverTo"] == "12345" and labels["nan"]["error"] == "bad \ufffd text"
    assert scheduler.ok("jobs", "list").stdout == "No jobs\n"  # the read models still catch up


def test_a_hand_edited_dispatch_config_cannot_break_the_commands(scheduler, tmp_path):
    from .cli_fuzz import isolate, unreachable_gateway_url

    isolate(scheduler, tmp_path, unreachable_gateway_url())
    config = Path(scheduler.env["DISPATCH_CONFIG_DIR"]) / "config.json"
    config.write_text(
        '{"name": 7, "startupGraceMs": null, "watchdogTimeoutMin": "soon",'
        ' "deliverTo": {"chat": 1}, "deliveryChannel": 1e400}'
    )
    assert scheduler.ok("--json", "stuck").json["stuck_count"] == 0
    enqueue = scheduler.run(
        "--json", "enqueue", "--label", "a", "--message", "x", "--timeout", "9", "--deliver-to", "1"
    )
    assert json_error(enqueue).startswith("[7] ")  # the unreachable gateway's error
    checklist = json.dumps({"work_complete": True, "tests_pass": True, "summary": "done"})
    done = scheduler.run("--json", "done", "--label", "new", "--checklist", checklist)
    assert done.returncode in (0, 1) and "Internal error" not in done.stdout, done


def test_stuck_under_json_prints_its_finding_as_json(scheduler, tmp_path):
    from .cli_fuzz import isolate, seed_store, unreachable_gateway_url

    isolate(scheduler, tmp_path, unreachable_gateway_url())
    seed_store(scheduler)
    before = scheduler.event_count()
    plain = scheduler.run("stuck")
    assert plain.returncode == 1 and plain.stdout.startswith("⚠️ dispatch: 2 stuck sessions:")
    as_json = scheduler.run("--json", "stuck")
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert as_json.json["stuck_count"] == 2 and as_json.json["ok"] is True
    assert scheduler.event_count() == before


# --- a read-only store --------------------------------------------------------------------------

# Tests run as root, for whom chmod changes nothing: the command runs as a process without
# the capabilities that let root ignore permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH),
# so it sees the modes as the store's owner would.
AS_OWNER = (
    ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    + ["--inh-caps=-dac_override,-dac_read_search"]
    if os.geteuid() == 0
    else []
)
needs_setpriv = pytest.mark.skipif(
    bool(AS_OWNER) and shutil.which("setpriv") is None, reason="root, and no setpriv"
)


def as_owner(scheduler: Scheduler, *args: str) -> Result:
    completed = subprocess.run(
        [*AS_OWNER, *OCSCHED, *args],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def without_warnings(result: Result) -> Result:
    """The result without secure_store's lines about modes it tightened (or could not)."""
    lines = [
        line for line in result.stderr.splitlines(keepends=True) if "permissions of" not in line
    ]
    return Result(result.returncode, result.stdout, "".join(lines))


def make_read_only(scheduler: Scheduler, *, companions: bool) -> None:
    """The database 0444 in a 0555 folder; `companions`: its -wal and -shm files left as a
    running process leaves them (else they are gone, as after a clean close)."""
    database = scheduler.db_path
    if not companions:
        connection = sqlite3.connect(database)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    else:  # a process that had the store open was killed: its -wal and -shm files remain
        killed = (
            "import os, sqlite3, sys; connection = sqlite3.connect(sys.argv[1]);"
            " connection.execute('SELECT count(*) FROM stored_events').fetchall(); os._exit(0)"
        )
        subprocess.run([sys.executable, "-c", killed, str(database)], check=True)
        assert Path(f"{database}-wal").exists() and Path(f"{database}-shm").exists()
    for path in scheduler.home.iterdir():
        path.chmod(0o444)
    scheduler.home.chmod(0o555)


@pytest.fixture
def read_only_store(scheduler: Scheduler):
    yield scheduler
    scheduler.home.chmod(0o755)


@needs_setpriv
@pytest.mark.parametrize("companions", [False, True], ids=["closed", "wal-files-left"])
def test_a_read_only_store_answers_reads(read_only_store, job_id, companions):
    scheduler = read_only_store
    _record_a_running_run(scheduler, job_id)
    scheduler.ok("jobs", "list")  # the read models are fresh
    before = scheduler.event_count()
    make_read_only(scheduler, companions=companions)
    jobs = without_warnings(as_owner(scheduler, "--json", "jobs", "list"))
    assert jobs.returncode == 0 and jobs.stderr == "", jobs
    assert [job["id"] for job in jobs.json] == [job_id]
    assert (
        without_warnings(as_owner(scheduler, "--json", "jobs", "get", job_id)).json["id"] == job_id
    )
    runs = without_warnings(as_owner(scheduler, "--json", "runs", "list", job_id))
    assert runs.returncode == 0 and len(runs.json) == 1, runs
    status = without_warnings(as_owner(scheduler, "--json", "status"))
    assert status.returncode == 0 and status.json["jobs_total"] == 1, status
    tail = without_warnings(as_owner(scheduler, "--json", "events", "tail"))
    assert tail.returncode == 0 and len(tail.json) == before, tail
    assert without_warnings(as_owner(scheduler, "events", "tail")).returncode == 0
    assert scheduler.event_count() == before


@needs_setpriv
def test_a_read_only_store_refuses_writes_in_one_line_naming_the_file(read_only_store, job_id):
    scheduler = read_only_store
    scheduler.ok("jobs", "list")
    before = scheduler.event_count()
    make_read_only(scheduler, companions=False)
    plain = plain_error(without_warnings(as_owner(scheduler, "jobs", "disable", job_id)))
    assert plain == (
        f"{scheduler.db_path} is read-only for this user (the file or its folder is not"
        " writable): nothing was recorded; make both writable, or run the command as the"
        " store's owner"
    )
    as_json = json_error(
        without_warnings(as_owner(scheduler, "--json", "jobs", "add", json.dumps(shell_job())))
    )
    assert str(scheduler.db_path) in as_json and "read-only" in as_json, as_json
    assert scheduler.event_count() == before


@needs_setpriv
def test_the_daemon_refuses_a_read_only_store_in_one_line(read_only_store, job_id):
    scheduler = read_only_store
    scheduler.ok("jobs", "list")
    make_read_only(scheduler, companions=False)
    message = plain_error(without_warnings(as_owner(scheduler, "daemon")))
    assert message.startswith(f"{scheduler.db_path} is read-only for this user"), message
    assert "the daemon cannot record runs" in message


@needs_setpriv
def test_a_read_only_store_behind_its_log_says_so_in_one_line(read_only_store, job_id):
    scheduler = read_only_store
    _record_a_running_run(scheduler, job_id, catch_up=False)  # the read models lag
    make_read_only(scheduler, companions=False)
    message = json_error(without_warnings(as_owner(scheduler, "--json", "jobs", "list")))
    assert str(scheduler.db_path) in message and "read-only" in message, message
    assert "behind" in message


# --- a damaged store ---------------------------------------------------------------------------


def _damaged_by(scheduler: Scheduler, damage: str) -> None:
    scheduler.home.mkdir(parents=True, exist_ok=True)
    database = scheduler.db_path
    if damage == "random-bytes":
        database.write_bytes(os.urandom(64 * 1024))
        return
    for index in range(30):
        scheduler.add(shell_job(name=f"job {index}", payload_message="x" * 2000))
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with open(database, "r+b") as stream:
        stream.truncate(database.stat().st_size // 3)


@pytest.mark.parametrize("damage", ["random-bytes", "truncated"])
@pytest.mark.parametrize(
    "args",
    [["jobs", "list"], ["status"], ["events", "tail"], ["jobs", "add", "<spec>"]],
    ids=["jobs-list", "status", "events-tail", "jobs-add"],
)
def test_a_damaged_store_is_named_with_what_to_try(scheduler, damage, args):
    _damaged_by(scheduler, damage)
    args = [json.dumps(shell_job(name="new")) if arg == "<spec>" else arg for arg in args]
    plain = plain_error(without_warnings(scheduler.run(*args)))
    as_json = json_error(without_warnings(scheduler.run("--json", *args)))
    assert plain == as_json
    assert str(scheduler.db_path) in plain, plain
    assert "backup" in plain and "move it aside" in plain, plain


# --- helpers -------------------------------------------------------------------------------------


def _record_a_running_run(scheduler: Scheduler, job_id: str, *, catch_up: bool = True) -> str:
    """A run of the job, started two hours ago and still running (what only the daemon
    records), saved straight to the log; read models caught up unless `catch_up` is false."""
    from datetime import UTC, datetime, timedelta

    from ocsched.adapters.settings import Settings
    from ocsched.commands.context import Context

    from .cli_fuzz import started_run

    ctx = Context(settings=Settings.from_environment(scheduler.env), actor="test")
    try:
        run = started_run(ctx, job_id, datetime.now(UTC) - timedelta(hours=2))
        if catch_up:
            ctx.save(run)
        else:
            ctx.log.save(run)
    finally:
        ctx.close()
    return run.id


assert sys.version_info >= (3, 11)  # sqlite3 errors carry sqlite_errorname
