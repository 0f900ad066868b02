"""Hostile specs and hostile files (issue 9, items 5-7): a regex condition cannot stall the
daemon, ids that become paths cannot leave their root, and the store's modes are enforced
on every open."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest

from ocsched.adapters import openclaw_files
from ocsched.domain.errors import ValidationError
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
