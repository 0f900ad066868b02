"""How the command line leaves (`cli.leave`): without the interpreter's finalization when
nothing needs it, with the same output, exit status and exit functions as the ordinary way.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import OCSCHED, shell_job


def _leaving(body: str) -> subprocess.CompletedProcess[str]:
    program = f"import atexit, sys, threading, time\nfrom ocsched.commands.cli import leave\n{body}"
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )


def test_leaving_flushes_the_streams_and_runs_the_exit_functions():
    done = _leaving(
        "atexit.register(lambda: print('exit function'))\n"
        "sys.stdout.write('x' * 100_000)\n"  # (more than a pipe's buffer: still all there)
        "sys.stderr.write('to stderr')\n"
        "leave(3)\n"
    )
    assert done.returncode == 3
    assert done.stdout == "x" * 100_000 + "exit function\n"
    assert done.stderr == "to stderr"


def test_a_thread_still_running_is_waited_for_as_ever():
    done = _leaving(
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    print('thread done', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "leave(0)\n"
    )
    assert (done.returncode, done.stdout) == (0, "thread done\n")


def test_a_command_s_status_and_output_are_those_of_the_ordinary_exit(scheduler):
    added = scheduler.process("--json", "jobs", "add", json.dumps(shell_job()))
    assert added.returncode == 0 and added.json["job"]["name"] == "backup"
    result = scheduler.process("jobs", "get", "no-such-job")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "Job not found: no-such-job\n",
    )
    assert scheduler.process("jobs", "lst").returncode == 2


def test_a_closed_stdout_or_stderr_loses_the_output_not_the_command(scheduler):
    program = f"{' '.join(OCSCHED)} --json jobs add '{json.dumps(shell_job())}' >&- 2>&-"
    closed = subprocess.run(
        ["bash", "-c", program], env=scheduler.env, capture_output=True, text=True, timeout=60
    )
    assert (closed.returncode, closed.stdout, closed.stderr) == (0, "", "")
    listed = scheduler.process("--json", "jobs", "list")
    assert [job["name"] for job in listed.json] == ["backup"]
    failing = subprocess.run(
        ["bash", "-c", f"{' '.join(OCSCHED)} --json jobs get nope >&-"],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (failing.returncode, failing.stderr) == (1, "")
