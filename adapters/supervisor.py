"""A watchdog process that kills the daemon's run process groups when the daemon dies.

Every run's shell registers its own process group before its command starts, so no
process can exist that the watchdog does not know of. The shell is started (`argv`) as a
session leader with the write end of the watchdog's registration pipe as its stdin and a
prefix before the command: if its parent is no longer this daemon it exits; it writes
`+<pgid>` to the pipe (one write below PIPE_BUF: atomic, never mixed with another
writer's), replaces its stdin with /dev/null, and only then runs the command. The daemon
writes `-<pgid>` to the same pipe once a run's group has ended, so the watchdog reads a
group's start before its end.

The daemon's death, even by SIGKILL, is the end of the watchdog's stdin, which only the
daemon holds (a clean stop says `bye` first). The watchdog then kills every registered
group, and goes on reading registrations until the registration pipe ends, killing each
group at once: the pipe ends only when every shell the daemon forked has registered (or
exited) and let go of it, so a shell caught mid-spawn by the kill is killed too, before
its command can have started anything. Only the daemon and shells that have not yet run
their command hold the pipe; the daemon's copy is close-on-exec.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import select
import shutil
import subprocess
import sys

log = logging.getLogger("ocsched")

WATCHDOG = r"""
import os, select, signal, sys, time
control, register = 0, int(sys.argv[1])
groups, rest = set(), b""

def kill(group):
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass

def read(daemon_gone):
    global rest
    data = os.read(register, 65536)
    *lines, rest = (rest + data).split(b"\n")
    for line in lines:
        sign, group = line[:1], line[1:]
        if not group.isdigit():
            continue
        if sign == b"+":
            groups.add(int(group))
            if daemon_gone:
                kill(int(group))
        elif sign == b"-":
            groups.discard(int(group))
    return bool(data)

registering = True
while True:
    ready = select.select([control, register] if registering else [control], [], [])[0]
    if register in ready:
        registering = read(False)
        # A burst's registrations gather meanwhile: one wake-up reads them all (no hurry:
        # whatever is in the pipe when the daemon goes is read before the groups are killed).
        time.sleep(0.01)
    if control in ready:
        data = os.read(control, 64)
        if b"bye" in data:
            sys.exit(0)
        if not data:
            break
for group in groups:
    kill(group)
deadline = time.monotonic() + 60
while registering and time.monotonic() < deadline:
    if select.select([register], [], [], 1)[0]:
        registering = read(True)
"""

POSIX_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash"})
"""Shells that run the registration prefix themselves; others are exec'd by /bin/sh."""


@functools.cache
def _posix_shell(shell: str) -> bool:
    return os.path.basename(shell) in POSIX_SHELLS


class Supervisor:
    """The watchdog, and how the daemon starts a run's shell under it (`argv`, `stdin`).

    It keeps the groups the daemon says are running (`update`): should the watchdog die
    while the daemon lives, the next spawn starts another and registers them with it."""

    def __init__(self) -> None:
        self._live: set[int] = set()
        self._open = False
        self._start()
        self._prefix = (
            f'[ "$PPID" = {os.getpid()} ] || exit 111; '
            "printf '+%d\\n' $$ >&0 || exit 111; exec 0</dev/null; "
        )

    def _start(self) -> None:
        read_end, register = os.pipe()  # both close-on-exec
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", WATCHDOG, str(read_end)],
                stdin=subprocess.PIPE,
                pass_fds=(read_end,),
                start_new_session=True,
            )
        except BaseException:
            os.close(register)
            raise
        finally:
            os.close(read_end)
        self._register, self._open = register, True

    @property
    def stdin(self) -> int:
        """What a run's shell must have as its stdin: the registration pipe."""
        return self._register

    def argv(self, shell: str, command: str) -> list[str]:
        """`<shell> -c <command>`, registering its process group with the watchdog before
        the command starts; to be started in a new session with `stdin` as its stdin. The
        prefix goes on the command's first line, so line numbers stay as they were."""
        if self._open and self._process.poll() is not None:
            self._restart()
        if _posix_shell(shell):
            return [shell, "-c", self._prefix + command]
        if shutil.which(shell) is None:  # as starting it would fail
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), shell)
        return ["/bin/sh", "-c", self._prefix + 'exec "$0" -c "$1"', shell, command]

    def _restart(self) -> None:
        log.error(
            "the watchdog (pid %d) exited with %s; starting another",
            self._process.pid,
            self._process.returncode,
        )
        if self._process.stdin:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        os.close(self._register)
        self._start()
        self._write([(group, True) for group in self._live])

    def watch(self, process_group: int) -> None:
        self.update([(process_group, True)])

    def forget(self, process_group: int) -> None:
        self.update([(process_group, False)])

    def update(self, changes: list[tuple[int, bool]]) -> None:
        """Groups that started (`(group, True)`: their shells registered themselves) and
        ended (`False`: told to the watchdog), in order."""
        for group, running in changes:
            if running:
                self._live.add(group)
            else:
                self._live.discard(group)
        self._write([change for change in changes if not change[1]])

    def _write(self, changes: list[tuple[int, bool]]) -> None:
        """In whole lines of at most PIPE_BUF bytes: each write atomic, so never mixed with
        a shell's registration."""
        chunks, chunk = [], b""
        for group, watch in changes:
            line = b"%c%d\n" % (43 if watch else 45, group)  # "+" or "-"
            if len(chunk) + len(line) > select.PIPE_BUF:
                chunks.append(chunk)
                chunk = b""
            chunk += line
        chunks.append(chunk)
        try:
            for chunk in chunks:
                if chunk and self._open:
                    os.write(self._register, chunk)
        except OSError as error:  # gone: the next spawn starts another
            log.error("the watchdog (pid %d) is gone: %s", self._process.pid, error)

    def close(self) -> None:
        """A clean stop: the daemon has dealt with its runs itself."""
        stdin = self._process.stdin
        if stdin and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(b"bye\n")
                stdin.flush()
            with contextlib.suppress(OSError):
                stdin.close()
        self._process.wait(timeout=5)
        if self._open:
            self._open = False
            os.close(self._register)
