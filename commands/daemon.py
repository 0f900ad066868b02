"""`ocsched daemon` (alias `start`): run the reactor until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import warnings
from typing import TYPE_CHECKING

from . import daemon_log
from .argv import MAX_WHOLE_NUMBER, command
from .context import Context
from .output import CommandError

if TYPE_CHECKING:
    import argparse

    from .reactor.scheduler import Reactor


def register(commands: argparse._SubParsersAction) -> None:
    for name in ("daemon", "start"):
        parser = command(
            commands,
            name,
            cli_daemon,
            help="run the scheduler until SIGTERM or SIGINT"
            + (" (= daemon)" if name == "start" else ""),
            usage="[--grace <seconds>] [--log-level <level>] [--log-format text|json|journal]"
            " [--serve [HOST:]PORT]",
            examples=[
                f"ocsched {name}",
                f"ocsched {name} --grace 30",
                f"ocsched {name} --log-level debug --log-format json",
                f"ocsched {name} --serve 127.0.0.1:8765",
            ],
        )
        parser.add_argument(
            "--grace", metavar="<seconds>", help="how long running jobs get to finish on stop"
        )
        parser.add_argument(
            "--log-level",
            metavar="<level>",
            help="debug, info, warning or error (else OCSCHED_LOG_LEVEL, else info)",
        )
        parser.add_argument(
            "--log-format",
            metavar="text|json|journal",
            help="text lines, one JSON object per line, or lines with journald's <N> level"
            " prefix (else OCSCHED_LOG_FORMAT, else text)",
        )
        parser.add_argument(
            "--serve",
            nargs="?",
            const="",
            metavar="[HOST:]PORT",
            help="also serve the HTTP API and metrics (ocsched serve; 127.0.0.1:8765)",
        )


def cli_daemon(ctx: Context, args: argparse.Namespace) -> None:
    grace = args.grace
    grace_seconds = ctx.settings.reactor.shutdown_grace_s
    if grace is not None:
        try:
            grace_seconds = float(grace)
        except ValueError:
            grace_seconds = math.nan
        if not 0 <= grace_seconds <= MAX_WHOLE_NUMBER:  # NaN, infinite or negative too
            raise CommandError(f"--grace must be a number of seconds, got: {grace}")
    try:
        level = daemon_log.choose(
            args.log_level or ctx.settings.log_level, "--log-level", daemon_log.LEVELS, "info"
        )
        form = daemon_log.choose(
            args.log_format or ctx.settings.log_format, "--log-format", daemon_log.FORMATS, "text"
        )
    except daemon_log.LogSettingError as error:
        raise CommandError(str(error)) from None
    if ctx.read_only:
        raise ctx.refuse_read_only("the daemon cannot record runs")
    from ocsched.adapters import chain

    from .reactor.scheduler import Reactor

    served = None
    if args.serve is not None:
        from . import serve

        served = serve.server(ctx, *serve.address(args.serve))
    daemon_log.configure(level, form)
    _use_pidfd_child_watcher()
    chain.hash_with_openssl()
    retry_storage_until_back(ctx)
    reactor = _hangup_reloads(Reactor(ctx, grace_seconds=grace_seconds))
    if served is not None:
        announce = logging.getLogger("ocsched").info
        reactor = served.beside(ctx, reactor, lambda n: announce("serving %s", n))
    asyncio.run(reactor)


async def _hangup_reloads(reactor: Reactor) -> None:
    """SIGHUP (a closed terminal, `kill -HUP`) does not stop the daemon as its default
    action would: the timers are reloaded from the read models and a line says so.
    Settings are read once at start (flags, environment): changing them is a restart."""
    import signal

    def hangup() -> None:
        logging.getLogger("ocsched").info(
            "SIGHUP: timers reloaded; settings are read at start, restart to change them"
        )
        reactor.reload_timers()

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)
    await reactor.serve()


def retry_storage_until_back(ctx: Context) -> None:
    """The daemon never exits for a transient storage error (a lock held elsewhere, a full
    disk, a lost connection): what it opens and reads as it starts is retried until the
    storage is back, each outage logged (`storage_errors.Outage`); after that its writer
    retries the same way (`reactor/writer.py`)."""
    from ocsched.adapters.storage_errors import Outage

    ctx.storage_retry_s = math.inf
    ctx.on_storage_fault = Outage(logging.getLogger("ocsched"), "starting").fault


def _use_pidfd_child_watcher() -> None:
    """Python 3.11 waits for each child process in a thread of its own; a pidfd watcher
    (the default from 3.12) waits in the event loop, which matters with hundreds of runs."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(OSError, NotImplementedError):
            asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
