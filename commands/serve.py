"""`ocsched serve`: the JSON API, the live event stream and the metrics over HTTP
(adapters/http), alone or inside the daemon (`daemon --serve`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .argv import command
from .context import Context
from .output import CommandError, print_json

if TYPE_CHECKING:
    import argparse

    from ocsched.adapters.http.access import Access, ApiToken

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "serve",
        cli_serve,
        help="the JSON API, live events and metrics over HTTP",
        usage="[--host <address>] [--port <n>] [--require-token]",
        description="Serve the read models as JSON (/api/v1, the shapes of --json), the log's\n"
        "events as they come (/api/v1/events/stream) and Prometheus metrics (/metrics).\n"
        "Binds 127.0.0.1, where reads need no token; any other address needs the token for\n"
        "everything, and writes (approve, reject) always do: OCSCHED_API_TOKEN, else the one\n"
        "in $SCHEDULER_HOME/api-token (made, and printed once, when missing), sent as\n"
        "'Authorization: Bearer <token>' (a browser logs in at /login). Decisions are\n"
        "recorded with this command's actor (--actor, OCSCHED_ACTOR) and origin api.\n"
        "The daemon can serve too: ocsched daemon --serve.",
        examples=[
            "ocsched serve",
            "ocsched serve --port 9000 --require-token",
            "OCSCHED_API_TOKEN=$(cat token) ocsched serve --host 0.0.0.0",
            "curl http://127.0.0.1:8765/api/v1/jobs",
            "curl -H 'Authorization: Bearer <token>' -X POST \\",
            "     http://127.0.0.1:8765/api/v1/jobs/75db1016/approve",
        ],
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, metavar="<address>", help="the address to listen on"
    )
    parser.add_argument(
        "--port", default=str(DEFAULT_PORT), metavar="<n>", help="the port (8765; 0: any free)"
    )
    parser.add_argument(
        "--require-token", action="store_true", help="on loopback too, reads need the token"
    )


@dataclass(frozen=True)
class Server:
    """What to serve and who may use it, checked before anything starts."""

    host: str
    port: int
    access: Access
    token: ApiToken

    def notice(self, url: str) -> dict[str, Any]:
        notice: dict[str, Any] = {
            "ok": True,
            "url": url,
            "api": f"{url}/api/v1",
            "metrics": f"{url}/metrics",
            "open_reads": self.access.open_reads,
            "token_file": str(self.token.path) if self.token.path else None,
        }
        if self.token.generated:
            notice["token"] = self.token.value  # shown this once; it stays in the file
        return notice

    async def run(
        self,
        ctx: Context,
        until: Coroutine[Any, Any, Any],
        on_ready: Callable[[dict[str, Any]], None],
        *,
        catch_up: bool,
    ) -> None:
        from ocsched.adapters.http.app import run_server

        try:
            await run_server(
                ctx.settings,
                self.access,
                ctx.actor,
                self.host,
                self.port,
                catch_up=catch_up,
                until=until,
                on_ready=lambda url: on_ready(self.notice(url)),
            )
        except OSError as error:
            raise CommandError(
                f"Cannot listen on {self.host}:{self.port}: {error.strerror or error}"
            ) from None
        finally:
            until.close()  # (never started when the address could not be bound)

    async def beside(
        self,
        ctx: Context,
        main: Coroutine[Any, Any, Any],
        on_ready: Callable[[dict[str, Any]], None],
    ) -> None:
        """Serve from a thread with an event loop of its own while `main` (the reactor)
        runs: a request never waits behind the reactor's work on one loop, nor a due run
        behind a request's parsing. The read models are the daemon's to keep up."""
        import threading

        ready = threading.Event()
        shared: dict[str, Any] = {}

        async def serving() -> None:
            shared["loop"], shared["stop"] = asyncio.get_running_loop(), asyncio.Event()

            def announced(notice: dict[str, Any]) -> None:
                on_ready(notice)
                ready.set()

            await self.run(ctx, shared["stop"].wait(), announced, catch_up=False)

        def thread_main() -> None:
            try:
                asyncio.run(serving())
            except BaseException as error:  # noqa: BLE001 - handed to the daemon's thread
                shared["error"] = error
            finally:
                ready.set()

        thread = threading.Thread(target=thread_main, name="ocsched-http", daemon=True)
        thread.start()
        await asyncio.to_thread(ready.wait)
        if "error" in shared:
            main.close()
            raise shared["error"]
        try:
            await main
        finally:
            loop = shared["loop"]
            if not loop.is_closed():
                loop.call_soon_threadsafe(shared["stop"].set)
            await asyncio.to_thread(thread.join, 10)


def server(ctx: Context, host: str, port: str, require_token: bool = False) -> Server:
    from ocsched.adapters.http.access import Access, api_token

    if not port.isdigit() or int(port) > 65535:
        raise CommandError(f"--port must be a port number (0 to 65535), got: {port}")
    if not host or any(c.isspace() for c in host):
        raise CommandError(f"--host must be an address to listen on, got: {host!r}")
    if ctx.read_only and not ctx.settings.api_token:
        token_path = ctx.settings.home / "api-token"
        if not token_path.exists():
            raise ctx.refuse_read_only("no API token can be made; set OCSCHED_API_TOKEN")
    token = api_token(ctx.settings)
    return Server(host, int(port), Access.for_bind(token.value, host, require_token), token)


def address(text: str) -> tuple[str, str]:
    """`daemon --serve`'s [HOST:]PORT (an IPv6 host in brackets)."""
    host, colon, port = text.rpartition(":")
    if not colon:
        return DEFAULT_HOST, text or str(DEFAULT_PORT)
    return host.strip("[]") or DEFAULT_HOST, port


def cli_serve(ctx: Context, args: argparse.Namespace) -> None:
    chosen = server(ctx, args.host, args.port, args.require_token)

    async def until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        await stop.wait()

    def ready(notice: dict[str, Any]) -> None:
        if ctx.json:
            print_json(notice)
        else:
            print(_describe(notice))
        import sys

        sys.stdout.flush()

    asyncio.run(chosen.run(ctx, until_stopped(), ready, catch_up=True))


def _describe(notice: dict[str, Any]) -> str:
    lines = [f"Serving {notice['url']}: the API at {notice['api']}, metrics at {notice['metrics']}"]
    where = notice["token_file"] or "OCSCHED_API_TOKEN"
    if "token" in notice:
        lines.append(f"API token (shown this once; kept in {where}): {notice['token']}")
    reads = "reads are open on loopback; " if notice["open_reads"] else ""
    lines.append(f"{reads}the token ({where}) is needed for writes; a browser logs in at /login")
    return "\n".join(lines)
