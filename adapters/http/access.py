"""Who may use the server: the token, open reads on loopback, the CSRF guard, `/login`.

* The token is `OCSCHED_API_TOKEN`, else the one in `$SCHEDULER_HOME/api-token` (0600),
  generated (and printed once, by `ocsched serve`) when there is none. It stands for the
  server's user: what it records has that actor, origin `api`.
* It is sent as `Authorization: Bearer <token>`, or as the cookie `/login` sets
  (`/login?token=…` or its form; HttpOnly, SameSite=Strict) for a browser.
* A bind to any address but loopback requires it for every request (401 without; a
  browser's GET of a page, `Accept: text/html`, is sent to `/login` instead). On a
  loopback bind reads (GET, HEAD) are open unless `--require-token`: other users of this
  host can then read (as they could the default port of any local tool), but never write.
  There the Host header must name a loopback address, so a page whose name was made to
  resolve to 127.0.0.1 (DNS rebinding) is refused.
* Writes (POST) always require the token. One authenticated by the cookie must also pass
  the CSRF guard: a custom header (`X-Requested-By`, which no cross-site form can send and
  no cross-site script may without a CORS preflight, which this server never grants) or
  the form field `csrf_token` (`Access.csrf_token`, for plain HTML forms); and an `Origin`
  header, when present, must be this server's.
* No CORS headers are ever sent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from ocsched.adapters.settings import Settings, open_private_file, private_directory, tighten

TOKEN_FILE = "api-token"
COOKIE = "ocsched_session"
CSRF_HEADER = "X-Requested-By"
CSRF_FIELD = "csrf_token"
PUBLIC_PATHS = frozenset({"/login"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiToken:
    value: str
    path: Path | None
    """The file it was read from or written to; None: `OCSCHED_API_TOKEN`."""
    generated: bool


def api_token(settings: Settings) -> ApiToken:
    """`OCSCHED_API_TOKEN`, else the token file under the home, made when missing."""
    if settings.api_token:
        return ApiToken(settings.api_token, None, False)
    path = settings.home / TOKEN_FILE
    if path.exists():
        tighten(path, 0o600)
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return ApiToken(value, path, False)
    private_directory(settings.home, tighten_existing=False)
    value = secrets.token_urlsafe(32)
    descriptor = open_private_file(path, truncate=True)
    assert descriptor is not None, "opened for writing"
    with open(descriptor, "w", encoding="utf-8") as stream:
        stream.write(value + "\n")
    return ApiToken(value, path, True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    token: str
    open_reads: bool
    """Reads without the token: a loopback bind without `--require-token`."""
    loopback: bool
    """Bound to loopback: the Host header must name a loopback address."""

    @classmethod
    def for_bind(cls, token: str, host: str, require_token: bool) -> Access:
        loopback = is_loopback(host)
        return cls(token, loopback and not require_token, loopback)

    def _derived(self, purpose: bytes) -> str:
        return hmac.new(self.token.encode(), purpose, hashlib.sha256).hexdigest()

    @property
    def cookie_value(self) -> str:
        return self._derived(b"ocsched session")

    @property
    def csrf_token(self) -> str:
        """The form field a cookie-authenticated form post carries (a page of this server
        puts it in its forms)."""
        return self._derived(b"ocsched csrf")

    def authenticated(self, request: web.Request) -> str | None:
        """How the request proved it holds the token: "bearer", "cookie", or None."""
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(credential.strip(), self.token):
            return "bearer"
        cookie = request.cookies.get(COOKIE)
        if cookie and _same(cookie, self.cookie_value):
            return "cookie"
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def middleware(access: Access) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        from .app import error_response

        if access.loopback and not is_loopback(urlsplit(f"//{request.host}").hostname or ""):
            return error_response(403, f"Host {request.host} is not this server's")
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        via = access.authenticated(request)
        request["authenticated"] = via
        if via is None and not (access.open_reads and request.method in READS):
            if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")  # a page
            response = error_response(401, "a token is required (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="ocsched"'
            return response
        if request.method not in READS and via == "cookie":
            refused = await _csrf_refusal(request, access)
            if refused:
                return error_response(403, refused)
        return await handler(request)

    return guard


async def read_form(request: web.Request) -> Mapping[str, Any]:
    """The request's form fields; none when its body is no form that can be read (a
    multipart without its boundary, text that is not its charset): the caller refuses what
    it then misses."""
    try:
        return await request.post()
    except ValueError:
        return {}


async def _csrf_refusal(request: web.Request, access: Access) -> str | None:
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        return f"cross-origin request from {origin} refused"
    if request.headers.get(CSRF_HEADER):
        return None
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request)
        field = form.get(CSRF_FIELD)
        if isinstance(field, str) and _same(field, access.csrf_token):
            return None
    return f"a write needs the {CSRF_HEADER} header or the form's {CSRF_FIELD}"


LOGIN_FORM = """<!doctype html><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ocsched: log in</title>
<form method="post" action="/login"><p>API token (<code>ocsched serve</code> printed it;
it is in <code>$SCHEDULER_HOME/api-token</code> or <code>OCSCHED_API_TOKEN</code>)</p>
<input name="token" type="password" autofocus size="48"><input type="hidden" name="next"
value="{next}"> <button>Log in</button></form>"""


async def login(request: web.Request) -> web.StreamResponse:
    """`GET /login?token=…` or the form's POST: sets the session cookie and goes on to
    `next` (a path of this server). `GET /login` alone shows the form."""
    from html import escape

    from .app import STATE, error_response

    access = request.app[STATE].access
    fields = await read_form(request) if request.method == "POST" else request.query
    token, target = fields.get("token"), fields.get("next") or "/"
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        target = "/"
    if token is None:
        return web.Response(text=LOGIN_FORM.format(next=escape(target)), content_type="text/html")
    if not isinstance(token, str) or not _same(token, access.token):
        return error_response(401, "wrong token")
    response = web.HTTPSeeOther(target)
    response.set_cookie(COOKIE, access.cookie_value, httponly=True, samesite="Strict", path="/")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login)
    app.router.add_post("/login", login)
