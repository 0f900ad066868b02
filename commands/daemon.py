"""`ocsched daemon` (alias `start`): run the reactor until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os

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

    asyncio.run(Reactor(ctx, grace_seconds=grace_seconds).serve())
