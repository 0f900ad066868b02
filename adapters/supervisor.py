"""A watchdog process that kills the daemon's run process groups when the daemon dies.

The daemon tells it `+<pgid>` when a run starts and `-<pgid>` when it ends, over a pipe.
When the pipe closes without a goodbye (the daemon was killed, even with SIGKILL), it
kills every group still registered, so no run outlives the daemon that started it.
"""

from __future__ import annotations

import subprocess
import sys

WATCHDOG = r"""
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line == "bye":
        sys.exit(0)
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class Supervisor:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", WATCHDOG],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def watch(self, process_group: int) -> None:
        self._send(f"+{process_group}")

    def forget(self, process_group: int) -> None:
        self._send(f"-{process_group}")

    def update(self, changes: list[tuple[int, bool]]) -> None:
        """Several groups in one write, in order: `(group, True)` to watch, `False` to
        forget."""
        if changes:
            self._send("\n".join(f"{'+' if watch else '-'}{group}" for group, watch in changes))

    def close(self) -> None:
        """A clean stop: the daemon has dealt with its runs itself."""
        self._send("bye")
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=5)

    def _send(self, line: str) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
