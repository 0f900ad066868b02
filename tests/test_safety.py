"""Hostile specs and hostile files (issue 9, items 5-7): a regex condition cannot stall the
daemon, ids that become paths cannot leave their root, and the store's modes are enforced
on every open."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from ocsched.adapters import openclaw_files
from ocsched.adapters.executors import RunOrder, ShellExecutor
from ocsched.adapters.settings import PRIVATE_FILE, prepare_private_file, tighten, write_artifact
from ocsched.domain.errors import ValidationError
from ocsched.domain.job_spec import JobSpec
from ocsched.domain.policies import REGEX_TIMEOUT_S, TriggerTimeout, trigger_matches
from ocsched.domain.safe_names import check_path_segment

from .conftest import shell_job

# Catastrophic backtracking: `re` needs longer than the age of the universe for this.
CATASTROPHIC = "regex:(a+)+$"
LONG_MISS = "a" * 5000 + "b"


# Regex trigger conditions (item 5)


def test_a_catastrophic_regex_condition_gives_up_within_a_bound():
    """In a child process, so that an unbounded engine fails the test instead of hanging it."""
    code = (
        "from ocsched.domain.policies import TriggerTimeout, trigger_matches\n"
        "try:\n"
        f"    trigger_matches({CATASTROPHIC!r}, {LONG_MISS!r})\n"
        "except TriggerTimeout as timeout:\n"
        "    print(timeout)\n"
    )
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the regex condition was still running after 10 s") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "trigger_condition regex timed out after 100 ms"
    assert time.monotonic() - started < 10


@pytest.mark.timing
def test_a_timed_out_regex_raises_and_an_ordinary_one_still_matches():
    started = time.monotonic()
    try:
        trigger_matches(CATASTROPHIC, LONG_MISS)
    except TriggerTimeout as timeout:
        assert timeout.after_s == REGEX_TIMEOUT_S
    else:
        raise AssertionError("expected a timeout")
    assert time.monotonic() - started < 2
    assert trigger_matches(r"regex:^OK\b", "OK done")
    assert not trigger_matches(r"regex:^OK\b", "not OK")
    assert trigger_matches("regex:(?i)deploy", "DEPLOY ok")
    assert trigger_matches("contains:ok", "ok") and trigger_matches(None, "")


# Ids that become paths (item 6)

UNSAFE_AGENT = (
    'agent_id must be a safe name: letters, digits, "-", "_" or "." (not first), '
    'at most 128 characters; got "../x"'
)


def test_an_agent_id_that_would_leave_the_openclaw_home_is_refused_by_add_and_update(scheduler):
    refused = scheduler.run("jobs", "add", json.dumps(shell_job(agent_id="../x")))
    assert (refused.returncode, refused.stderr.strip()) == (1, UNSAFE_AGENT)
    assert scheduler.event_count() == 0
    job = scheduler.add(shell_job(agent_id="ops-agent_2.b"))
    update = scheduler.run("jobs", "update", job["id"], json.dumps({"agent_id": "../x"}))
    assert (update.returncode, update.stderr.strip()) == (1, UNSAFE_AGENT)
    as_json = scheduler.run("--json", "jobs", "update", job["id"], '{"agent_id": "../x"}')
    assert as_json.json == {"ok": False, "error": UNSAFE_AGENT}


@pytest.mark.parametrize(
    "agent_id", ["..", ".hidden", "a/b", "a\\b", "agent:x", "sp ace", "é", "x" * 129]
)
def test_unsafe_names_are_refused_and_openclaw_agent_ids_are_not(agent_id):
    with pytest.raises(ValidationError):
        check_path_segment("agent_id", agent_id)
    for name in ("main", "Ops", "ops-agent", "ops_agent.v2", "a" * 128, "0"):
        assert check_path_segment("agent_id", name) == name


def test_dispatch_enqueue_refuses_an_unsafe_agent_before_calling_the_gateway(scheduler, gateway):
    result = scheduler.run(
        "dispatch", "enqueue", "--label", "a", "--message", "x", "--timeout", "60",
        "--deliver-to", "1", "--agent", "../../escaped",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        '[dispatch] --agent must be a safe name: letters, digits, "-", "_" or "." (not first), '
        'at most 128 characters; got "../../escaped"'
    )
    assert gateway.calls_of("agent") == []


def test_every_openclaw_path_stays_under_the_openclaw_home(tmp_path):
    home = tmp_path / "openclaw"
    (home / "credentials").mkdir(parents=True)
    (home / "credentials" / "auth-profiles.json").write_text("{}")
    assert openclaw_files.sessions_store(home, "ops") == (
        home / "agents" / "ops" / "sessions" / "sessions.json"
    )
    for call in (
        lambda: openclaw_files.sessions_store(home, "../../escaped"),
        lambda: openclaw_files.sync_credentials(home, "../../escaped"),
        lambda: openclaw_files.set_session_auth_profile(home, "../../escaped", "k", "p"),
    ):
        with pytest.raises(openclaw_files.OutsideRoot, match="outside"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openclaw"]
    # a link inside the home that points out of it is refused too
    (home / "agents").mkdir()
    (home / "agents" / "linked").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(openclaw_files.OutsideRoot):
        openclaw_files.sync_credentials(home, "linked")
    assert not (tmp_path / "agent").exists()


def test_the_executor_logs_an_unsafe_stored_agent_and_writes_nothing(tmp_path, caplog):
    """A job recorded before the check (its agent_id already in the log) cannot escape."""
    from ocsched.adapters.executors import _apply_auth_profile

    home = tmp_path / "openclaw"
    (home / "credentials").mkdir(parents=True)
    (home / "credentials" / "auth-profiles.json").write_text("{}")
    job = {"id": "j1", "agent_id": "../../escaped", "auth_profile": "work"}
    with caplog.at_level(logging.WARNING, logger="ocsched"):
        _apply_auth_profile(home, job, "agent:x:main")
    assert "auth profile for job j1 not applied" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["openclaw"]


# Modes on every open (item 7)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def loosen_store(scheduler) -> list[str]:
    """Make an existing store world-readable, as an older version or a careless copy left
    it; the lines a command must print while it tightens it again."""
    home, database = scheduler.home, scheduler.db_path
    os.chmod(home, 0o755)
    lines = [f"tightened permissions of {home} from 0755 to 0700"]
    for file in (database, *(Path(f"{database}{s}") for s in ("-wal", "-shm"))):
        if file.exists():
            os.chmod(file, 0o644)
            lines.append(f"tightened permissions of {file} from 0644 to 0600")
    return lines


def assert_private(scheduler) -> None:
    assert mode(scheduler.home) == 0o700
    for file in scheduler.home.glob("ocsched.db*"):
        assert mode(file) == 0o600, file


def test_an_existing_open_store_is_tightened_by_a_read_and_by_a_write(scheduler):
    scheduler.add(shell_job())
    expected = loosen_store(scheduler)
    read = scheduler.process("jobs", "list", "--json")
    assert read.returncode == 0, read.stderr
    assert read.stderr.splitlines() == expected
    assert_private(scheduler)
    assert scheduler.process("jobs", "list").stderr == ""  # once tightened, silent

    expected = loosen_store(scheduler)
    write = scheduler.process("jobs", "add", json.dumps(shell_job(name="second")))
    assert write.returncode == 0, write.stderr
    assert write.stderr.splitlines() == expected
    assert_private(scheduler)


def test_a_read_only_file_is_tightened_without_becoming_writable(tmp_path, caplog):
    file = tmp_path / "ocsched.db"
    file.write_text("")
    os.chmod(file, 0o444)
    with caplog.at_level(logging.WARNING, logger="ocsched"):
        assert tighten(file, PRIVATE_FILE)
    assert mode(file) == 0o400
    assert caplog.messages == [f"tightened permissions of {file} from 0444 to 0400"]


def test_a_new_store_is_private_under_umask_0(tmp_path):
    home = tmp_path / "a" / "b" / "scheduler"
    saved = os.umask(0)
    try:
        prepare_private_file(str(home / "ocsched.db"))
    finally:
        os.umask(saved)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", home)] == [0o700] * 3
    assert mode(home / "ocsched.db") == 0o600


def test_offloaded_output_is_private_under_umask_0(tmp_path):
    """A real shell run whose output is over the offload threshold, through the executor."""
    artifacts = tmp_path / "store" / "artifacts"
    executor = ShellExecutor(
        shell_path="/bin/bash", artifacts_dir=artifacts, limit=1, stopping=asyncio.Event()
    )
    command = "head -c 300 /dev/zero | tr '\\0' x"
    spec = JobSpec(name="big", payload_message=command, run_timeout_ms=10_000)
    job = msgspec.structs.asdict(spec) | {"output_offload_threshold_bytes": 128}
    saved = os.umask(0)
    try:
        outcome = asyncio.run(executor.execute(RunOrder("run-1", job), lambda started: None))
    finally:
        os.umask(saved)
    assert outcome is not None and outcome.status == "ok"
    stdout = artifacts / "runs" / "run-1" / "stdout.txt"
    assert stdout.read_text() == "x" * 300
    assert outcome.fields["shell_stdout_path"] == str(stdout)
    folders = [tmp_path / "store", artifacts, artifacts / "runs", artifacts / "runs" / "run-1"]
    assert [mode(p) for p in folders] == [0o700] * 4
    assert mode(stdout) == 0o600


def test_artifacts_left_open_by_an_older_version_are_tightened_on_open(scheduler):
    scheduler.add(shell_job())
    run_folder = scheduler.home / "artifacts" / "runs" / "r1"
    run_folder.mkdir(parents=True)
    (run_folder / "stdout.txt").write_text("x")
    for path, loose in ((scheduler.home / "artifacts", 0o777), (run_folder.parent, 0o777),
                        (run_folder, 0o777), (run_folder / "stdout.txt", 0o666)):  # fmt: skip
        os.chmod(path, loose)
    result = scheduler.process("jobs", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert f"tightened permissions of {run_folder / 'stdout.txt'} from 0666 to 0600" in (
        result.stderr.splitlines()
    )
    assert [mode(p) for p in (scheduler.home / "artifacts", run_folder.parent, run_folder)] == [
        0o700
    ] * 3
    assert mode(run_folder / "stdout.txt") == 0o600


def test_an_artifact_path_outside_runs_is_refused(tmp_path):
    with pytest.raises(OSError, match="refusing"):
        write_artifact(str(tmp_path / "artifacts" / "runs" / ".." / "x" / "stdout.txt"), "x")
    with pytest.raises(OSError, match="refusing"):
        write_artifact(str(tmp_path / "artifacts" / "runs" / ".hidden" / "stdout.txt"), "x")
    assert not (tmp_path / "artifacts" / "x").exists()
