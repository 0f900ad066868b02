"""`ocsched daemon` (alias `start`): run the reactor until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings

from .argv import Argv
from .context import Context
from .output import CommandError


def cli_daemon(ctx: Context, args: list[str]) -> None:
    argv = Argv(args, "Usage: daemon [--grace <seconds>]")
    grace = argv.option("--grace") or os.environ.get("OCSCHED_SHUTDOWN_GRACE_S") or "10"
    argv.positionals(0, 0)
    try:
        grace_seconds = float(grace)
    except ValueError:
        raise CommandError(f"--grace must be a number of seconds, got: {grace}") from None
    from .reactor import Reactor

    _use_pidfd_child_watcher()
    asyncio.run(Reactor(ctx, grace_seconds=grace_seconds).serve())


def _use_pidfd_child_watcher() -> None:
    """Python 3.11 waits for each child process in a thread of its own; a pidfd watcher
    (the default from 3.12) waits in the event loop, which matters with hundreds of runs."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(OSError, NotImplementedError):
            asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
