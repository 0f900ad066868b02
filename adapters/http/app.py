"""The aiohttp `Application` of `ocsched serve` (and `daemon --serve`), and running it.

Adding routes (the dashboard, anything else): a module with
`add_routes(app: web.Application) -> None`, named in `ROUTE_MODULES`. It reaches the
server's state as `app[STATE]` (or `request.app[STATE]` in a handler): `reads` (service
functions in worker threads: `await state.reads.read(lambda ctx: list_jobs(ctx))`,
`await state.reads.write(...)` for a change), `access` (the token, `access.csrf_token` for
forms), `watch` (the log watch: `watch.changed()` is an `asyncio.Event` set when the log
moves), `closing` (set when the server stops: long responses end then) and `cache`
(encoded answers by URL and ETag, `cache.py`). Every route passes the access guard
(`access.py`) first; answers are JSON through `json_response` / `error_response` unless
the route is a page.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ocsched.adapters.settings import Settings

from .access import Access, middleware
from .cache import AnswerCache
from .reads import Reads

if TYPE_CHECKING:
    from .stream import LogWatch

ROUTE_MODULES = (
    "ocsched.adapters.http.access",
    "ocsched.adapters.http.api",
    "ocsched.adapters.http.stream",
    "ocsched.adapters.http.metrics",
    "ocsched.adapters.http.dashboard",
)
API_ROOT = "/api/v1"
SHUTDOWN_S = 2.0
"""How long running requests get when the server stops (streams end at once)."""


@dataclass
class ServerState:
    settings: Settings
    access: Access
    reads: Reads
    watch: LogWatch
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    cache: AnswerCache = field(default_factory=AnswerCache)


STATE = web.AppKey("ocsched", ServerState)


class _RefusedRequests(logging.Filter):
    """A request aiohttp's own parser refused (a 4xx: a request line over its 8,190 bytes,
    a malformed header) is the client's error: one warning line, not a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
            said = " ".join(str(error.message).split())[:200]
            record.msg, record.args = "%s: %s %s", (record.getMessage(), error.code, said)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


SERVER_LOG = logging.getLogger("ocsched.http")
"""aiohttp's server messages, in the program's one log channel."""
SERVER_LOG.addFilter(_RefusedRequests())


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`body` encoded as the CLI's `--json` encodes it (msgspec), compact."""
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def error_response(status: int, message: str) -> web.Response:
    """The CLI's failure envelope: `{"ok": false, "error": "<one line>"}`."""
    return json_response({"ok": False, "error": " ".join(message.split())}, status)


@web.middleware
async def api_refusals(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals under the API (no such route, a method the route does not
    take) in the API's envelope, like its handlers' errors."""
    try:
        return await handler(request)
    except web.HTTPException as refusal:
        if refusal.status < 400 or not request.path.startswith(API_ROOT):
            raise
        response = error_response(refusal.status, f"{refusal.reason}: {request.path}")
        if "Allow" in refusal.headers:
            response.headers["Allow"] = refusal.headers["Allow"]
        return response


def build_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[middleware(state.access), api_refusals])
    app[STATE] = state
    for name in ROUTE_MODULES:
        importlib.import_module(name).add_routes(app)
    if not any(r.canonical == "/" for r in app.router.resources()):
        app.router.add_get("/", _to_api_index)

    async def closing(_: web.Application) -> None:
        state.closing.set()

    app.on_shutdown.append(closing)
    return app


async def _to_api_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(API_ROOT)


async def run_server(
    settings: Settings,
    access: Access,
    actor: str,
    host: str,
    port: int,
    *,
    catch_up: bool,
    until: Awaitable[Any],
    on_ready: Callable[[str], None],
) -> None:
    """Serve on `host:port` until `until` completes. `catch_up`: this server keeps the read
    models caught up with the log (standalone; inside the daemon the daemon does it).
    `on_ready(url)` once it listens (`port` 0: a free one, named in the URL)."""
    from .stream import LogWatch

    reads = Reads(settings, actor)
    state = ServerState(settings, access, reads, LogWatch(settings, reads, catch_up=catch_up))
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, logger=SERVER_LOG
    )
    await runner.setup()
    watching = asyncio.create_task(state.watch.run())
    try:
        await state.watch.ready()
        site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_S)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        on_ready(f"http://{shown}:{bound[1]}")
        await until
    finally:
        state.closing.set()
        watching.cancel()
        await runner.cleanup()
        reads.close()
