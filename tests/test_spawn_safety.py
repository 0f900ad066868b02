"""No process outlives a daemon killed with SIGKILL, wherever the kill lands in a spawn:
the watchdog's registration protocol (`adapters/supervisor.py`), recovery's proof that a
run's processes are gone (`adapters/processes.py`), and the kill -9 chaos loop's small
version (`scripts/chaos/kill_loop.py`: a daemon, 10 kills, start-up bursts of 20 jobs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocsched.adapters import processes
from ocsched.adapters.supervisor import Supervisor

from .conftest import load_script

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")

FAKE_DAEMON = r"""
import os, signal, subprocess, sys
from ocsched.adapters.supervisor import Supervisor

supervisor = Supervisor()
if sys.argv[1] == "restart":  # a run goes on; the watchdog dies; the next spawn replaces it
    first = subprocess.Popen(
        supervisor.argv("/bin/sh", sys.argv[2]),
        stdin=supervisor.stdin,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    supervisor.update([(first.pid, True)])  # as the daemon does once the run has begun
    print(first.pid, end=" ")
    supervisor._process.kill()
    supervisor._process.wait()
if sys.argv[1] == "late":  # a shell whose registration comes late, as if descheduled
    argv = ["/bin/sh", "-c", "sleep 0.5; printf '+%d\n' $$ >&0; exec 0</dev/null; " + sys.argv[2]]
else:  # a run's shell as the daemon starts it
    argv = supervisor.argv("/bin/sh", sys.argv[2])
child = subprocess.Popen(
    argv,
    stdin=supervisor.stdin,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
    start_new_session=True,
)
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # before the daemon could record or tell anything
"""


def alive(pid: int) -> bool:
    """Running, not a zombie (where PID 1 does not reap, the dead stay as zombies)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> float:
    started = time.monotonic()
    while alive(pid):
        assert time.monotonic() - started < timeout, f"process {pid} still alive"
        time.sleep(0.02)
    return time.monotonic() - started


def killed_daemon_child(kind: str, command: str) -> list[int]:
    """A daemon that starts a shell and is killed with SIGKILL at once: the shells' pids."""
    daemon = subprocess.Popen(
        [sys.executable, "-c", FAKE_DAEMON, kind, command], stdout=subprocess.PIPE, text=True
    )
    assert daemon.stdout is not None
    with daemon.stdout:  # its watchdog holds the pipe too, while it has work left
        pids = [int(pid) for pid in daemon.stdout.readline().split()]
    assert daemon.wait(timeout=30) == -9
    return pids


def test_a_shell_spawned_just_before_the_daemon_is_killed_dies_with_it():
    (pid,) = killed_daemon_child("run", "sleep 30")
    wait_gone(pid, timeout=5)


def test_a_shell_that_registers_after_the_daemon_died_is_killed_then():
    (pid,) = killed_daemon_child("late", "sleep 30")
    assert alive(pid)  # not registered yet: the watchdog waits for it
    assert wait_gone(pid, timeout=5) > 0.2


def test_a_watchdog_that_died_is_replaced_and_told_the_running_groups():
    running, spawned = killed_daemon_child("restart", "sleep 30")
    wait_gone(running, timeout=5)
    wait_gone(spawned, timeout=5)


def test_a_clean_stop_leaves_the_runs_to_the_daemon():
    supervisor = Supervisor()
    child = subprocess.Popen(
        supervisor.argv("/bin/bash", "sleep 30"), stdin=supervisor.stdin, start_new_session=True
    )
    try:
        time.sleep(0.2)
        supervisor.close()
        time.sleep(0.2)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_the_run_s_shell_sees_the_command_as_written():
    supervisor = Supervisor()
    try:
        for shell in ("/bin/bash", "/bin/sh"):
            done = subprocess.run(
                supervisor.argv(shell, 'echo "$0 $#"; cat; echo "[$OCSCHED_RUN_ID]"; exit 3'),
                stdin=supervisor.stdin,
                env={**os.environ, "OCSCHED_RUN_ID": "r-1"},
                capture_output=True,
                text=True,
                start_new_session=True,
                timeout=10,
            )
            assert (done.returncode, done.stdout, done.stderr) == (3, f"{shell} 0\n[r-1]\n", "")
        with pytest.raises(FileNotFoundError):
            supervisor.argv("/nonexistent/fish", "true")
    finally:
        supervisor.close()


def test_recovery_kills_a_run_s_processes_in_any_group_and_waits_until_gone():
    env = {**os.environ, "OCSCHED_RUN_ID": "run-escaped"}
    escaped = subprocess.Popen(["setsid", "sleep", "30"], env=env)  # its own session
    ended = subprocess.Popen(["true"], env={**os.environ, "OCSCHED_RUN_ID": "run-ended"})
    try:
        time.sleep(0.2)  # `true` is a zombie now: it counts as gone
        found = processes.run_processes({"run-escaped": None, "run-ended": None, "x": None})
        assert set(found.values()) == {"run-escaped"}
        survivors = asyncio.run(
            processes.end_run_processes({"run-escaped": None, "run-ended": None})
        )
        assert survivors == set()
        assert escaped.wait(timeout=5) == -9
    finally:
        escaped.kill()
        escaped.wait()
        ended.wait()


def test_the_kill_loop_with_10_kills_and_bursts_of_20_jobs():
    chaos = load_script("scripts/chaos/kill_loop.py")
    result = chaos.run_kill_loop(
        kills=10, burst=20, burst_share=0.6, max_delay=1.5, seed=11, max_settle=20
    )
    assert chaos.failures(result) == []
    assert result["kills_in_burst"] >= 3
    assert result["jobs"] == 120 and result["statuses"]["ok"] == 120
