"""Hostile specs and hostile files (issue 9, items 5-7): a regex condition cannot stall the
daemon, ids that become paths cannot leave their root, and the store's modes are enforced
on every open."""

from __future__ import annotations

import subprocess
import sys
import time

from ocsched.domain.policies import REGEX_TIMEOUT_S, TriggerTimeout, trigger_matches

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
