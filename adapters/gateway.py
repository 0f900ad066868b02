"""The OpenClaw gateway client: WebSocket RPC (protocol 4) and the HTTP endpoints on the same
port (spec §30; `shared/notes/openclaw-gateway.md` §5, §7–§9).

One `GatewayClient` holds one aiohttp session and one WebSocket, opened on first use and
reopened (with backoff) after it drops. The token is never part of an error, a repr or a
log line: messages name the setting it came from instead.

An `agent` turn is idempotent by its key (notes §8.2: the same key returns the same run,
never a second one), so the client asks again through drops, connection failures and
retryable refusals until the turn's own deadline, then asks `agent.wait`; only a definite
failure, or a deadline with no answer (an error that says the outcome is unknown), fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ocsched.domain.json_text import parse_json

if TYPE_CHECKING:
    import aiohttp  # imported where used: ~100 ms that only a gateway call pays

log = logging.getLogger(__name__)

Json = dict[str, Any]
Listener = Callable[[Json], Awaitable[Any] | Any]
AcceptedCallback = Callable[[Json], Awaitable[Any] | Any]

DEFAULT_URL = "http://127.0.0.1:18789"
URL_ENV = "OPENCLAW_GATEWAY_URL"
TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
TOKEN_PATH_ENV = "OPENCLAW_GATEWAY_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "~/.openclaw/credentials/.gateway-token"

PROTOCOL_VERSION = 4
CLIENT_ID = "gateway-client"  # with mode "backend" over loopback the requested scopes are kept
CLIENT_MODE = "backend"
READ_SCOPES = ("operator.read",)
"""Enough for `sessions.list` and `chat.history`."""
WRITE_SCOPES = ("operator.read", "operator.write")
"""Also `agent`, `agent.wait` and `sessions.patch` of the fields in the gateway's write
allowlist (`label`, `model`, `thinkingLevel`, …; openclaw's method scopes)."""
PATCH_ADMIN_SCOPES = (*WRITE_SCOPES, "operator.admin")
"""A `sessions.patch` of any other field, such as the `spawnDepth` a fresh sub-agent
session gets (spec §31.3), needs `operator.admin`: only the connection that makes it asks."""

HEALTH_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 15.0
WS_CLOSE_TIMEOUT_S = 2.0
MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_TICK_MS = 30000
DEFAULT_AGENT_TIMEOUT_S = 600
AGENT_WAIT_GRACE_S = 30.0
AGENT_SETTLE_S = 10.0
"""The end of an `agent` call's wait (at most a quarter of it) kept for `agent.wait` when
the turn's outcome is still unknown."""
AGENT_FETCH_S = 1.0
"""Of that, what is kept to fetch the final answer of a turn `agent.wait` saw end."""
TURN_STATUSES = frozenset({"ok", "error", "timeout"})
RESEND_BACKOFF_MAX_S = 1.0
"""The longest pause before asking again after a dropped connection (a refusal or a failed
connect backs off up to `backoff_max_s`): a drop says nothing about the gateway's load,
and reconnecting backs off on its own."""
ERROR_BODY_CHARS = 500
REDACTED = "***"


class GatewayError(Exception):
    """The gateway answered with an error: a `res` frame with `ok:false`, or a non-2xx HTTP
    status (`status`). `retryable` says whether the same request may succeed later."""

    def __init__(
        self,
        code: str,
        message: str,
        retryable: bool = False,
        *,
        retry_after_ms: int | None = None,
        status: int | None = None,
        details: Json | None = None,
        payload: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        self.status = status
        self.details = details
        self.payload = payload


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached, the connection dropped, or it did not answer in
    time. Always retryable; an `agent` call may have started a turn (re-send it with the
    same idempotency key)."""

    def __init__(self, message: str, *, code: str = "UNAVAILABLE", **kwargs: Any) -> None:
        kwargs.setdefault("retryable", True)
        super().__init__(code, message, **kwargs)


class GatewayAuthError(GatewayError):
    """The gateway refused the token (or its absence), or granted too few scopes."""

    def __init__(self, message: str, *, code: str = "UNAUTHORIZED", **kwargs: Any) -> None:
        super().__init__(code, message, **kwargs)


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway is and the token to show it. `token_source` names where the token
    came from (a setting, never the value) for error messages."""

    url: str = DEFAULT_URL
    token: str | None = field(default=None, repr=False)
    token_source: str | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> GatewaySettings:
        """Spec §30: `OPENCLAW_GATEWAY_TOKEN`, else the trimmed contents of
        `OPENCLAW_GATEWAY_TOKEN_PATH` (default `$HOME/.openclaw/credentials/.gateway-token`),
        from the variables `Settings.gateway_environment` gives."""
        env = environ
        url = (env.get(URL_ENV) or DEFAULT_URL).strip().rstrip("/")
        token = env.get(TOKEN_ENV)
        if token:
            return cls(url=url, token=token, token_source=TOKEN_ENV)
        path = env.get(TOKEN_PATH_ENV)
        if not path:
            home = env.get("HOME") or str(Path.home())
            path = str(Path(home) / ".openclaw" / "credentials" / ".gateway-token")
        try:
            token = Path(path).read_text().strip()
        except (OSError, ValueError):
            token = ""
        if token:
            return cls(url=url, token=token, token_source=f"{TOKEN_PATH_ENV} file {path}")
        return cls(url=url)

    @property
    def http_url(self) -> str:
        base = self.url.rstrip("/")
        for ws_scheme, http_scheme in (("ws://", "http://"), ("wss://", "https://")):
            if base.startswith(ws_scheme):
                return http_scheme + base[len(ws_scheme) :]
        return base

    @property
    def ws_url(self) -> str:
        base = self.http_url
        for http_scheme, ws_scheme in (("http://", "ws://"), ("https://", "wss://")):
            if base.startswith(http_scheme):
                return ws_scheme + base[len(http_scheme) :] + "/"
        return base + "/"

    def auth_error(self, reason: str, **kwargs: Any) -> GatewayAuthError:
        """The refusal, worded so the reader knows which setting to fix."""
        if self.token is None:
            text = (
                f"The gateway requires a token and none is configured ({reason}); set "
                f"{TOKEN_ENV} or {TOKEN_PATH_ENV} (default {DEFAULT_TOKEN_PATH}) "
                "to the gateway's token"
            )
        else:
            source = self.token_source or "the configured token"
            text = (
                f"The gateway refused the token from {source} ({reason}); set "
                f"{TOKEN_ENV} or {TOKEN_PATH_ENV} to the gateway's token"
            )
        return GatewayAuthError(self.redact(text), **kwargs)

    def redact(self, text: str) -> str:
        """`text` with the token cut out, for anything that quotes the gateway's words."""
        if self.token:
            return text.replace(self.token, REDACTED)
        return text

    def redact_value(self, value: Any) -> Any:
        """`redact` applied to every string in a JSON value."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        return value


class _Dropped(Exception):
    """The connection a request was sent on closed before its answer came."""


class _Unanswered(Exception):
    """A request asked again and again got no answer before its time was up; `problem`
    says what happened to the last try."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(eq=False)
class _Connection:
    ws: aiohttp.ClientWebSocketResponse
    hello: Json
    silence_limit_s: float
    pending: dict[str, asyncio.Queue[Json | None]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    closed: bool = False

    @property
    def alive(self) -> bool:
        return not self.closed and not self.ws.closed


@dataclass(eq=False)
class _Feed:
    """One listener's queue of event frames and the task that empties it."""

    listener: Listener
    queue: asyncio.Queue[Json] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def put(self, frame: Json) -> None:
        self.queue.put_nowait(frame)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while True:
            frame = await self.queue.get()
            try:
                result = self.listener(frame)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("gateway event listener %r failed", self.listener)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.queue = asyncio.Queue()  # unsent events are stale; and a new loop may follow


class GatewayClient:
    """An async client for one OpenClaw gateway.

    WebSocket requests share one connection, opened lazily with the protocol-4 handshake and
    reopened after a drop (`connect_attempts` tries, `backoff_initial_s` doubling up to
    `backoff_max_s`). Every call has a timeout. Responses are matched by id; `event` frames
    go to the listeners through a queue of their own, so a slow listener never holds up a
    response.
    """

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        call_timeout_s: float = 30.0,
        connect_attempts: int = 3,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        client_version: str = "0.1.0",
        display_name: str = "ocsched",
        scopes: Sequence[str] = WRITE_SCOPES,
    ) -> None:
        if settings is None:
            from .settings import Settings

            settings = GatewaySettings.from_environment(
                Settings.from_environment().gateway_environment
            )
        self.settings = settings
        self.call_timeout_s = call_timeout_s
        self.connect_attempts = max(1, connect_attempts)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.client_version = client_version
        self.display_name = display_name
        self.scopes = tuple(scopes)
        """What the connection asks for: the least its calls need."""
        self._session: aiohttp.ClientSession | None = None
        self._connection: _Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._listeners: dict[Listener, _Feed] = {}
        self._epoch = 0  # moves on close(), so calls in flight do not reconnect

    def __repr__(self) -> str:
        source = self.settings.token_source or ("configured" if self.settings.token else None)
        connected = self._connection is not None and self._connection.alive
        return (
            f"GatewayClient(url={self.settings.url!r}, token_source={source!r}, "
            f"connected={connected})"
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def hello(self) -> Json | None:
        """The `hello-ok` payload of the current connection."""
        return self._connection.hello if self._connection is not None else None

    async def connect(self) -> Json:
        """Open the WebSocket now (calls do it on demand); returns the `hello-ok` payload."""
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return (await self._live_connection()).hello
        except TimeoutError:
            raise GatewayUnavailable(
                f"The gateway at {self.settings.url} did not complete the handshake "
                f"within {self.call_timeout_s:g}s",
                code="TIMEOUT",
            ) from None

    async def close(self) -> None:
        self._epoch += 1
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._drop(connection)
        for feed in self._listeners.values():
            await feed.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._connect_lock = asyncio.Lock()  # the client may be reused under another loop

    # -- events --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(frame)` for every `event` frame (`{"type":"event","event",
        "payload","seq"}`), in order. Each listener has its own queue and task, so a slow
        one delays neither responses nor the other listeners; a coroutine result is awaited
        before that listener's next event."""
        self._listeners.setdefault(listener, _Feed(listener))

    def remove_listener(self, listener: Listener) -> None:
        feed = self._listeners.pop(listener, None)
        if feed is not None and feed.task is not None:
            feed.task.cancel()

    # -- WebSocket methods ---------------------------------------------------------------

    async def agent(
        self,
        message: str,
        *,
        idempotency_key: str,
        session_key: str | None = None,
        agent_id: str | None = None,
        model: str | None = None,
        thinking: str | None = None,
        timeout_s: int | None = None,
        extra: Mapping[str, Any] | None = None,
        on_accepted: AcceptedCallback | None = None,
        wait_s: float | None = None,
    ) -> Json:
        """Run one agent turn and return its final payload (`runId`, `status`, `result`).

        `timeout_s` is the run's deadline, sent to the gateway (whole seconds); the client
        waits `wait_s` for the final frame (default: that deadline, or 600 s, plus 30 s).
        `on_accepted(payload)` is called once when the gateway accepts the turn.

        Until the last `AGENT_SETTLE_S` (at most a quarter) of `wait_s`, the request is sent
        again, with the same idempotency key and backoff, through dropped connections,
        connection failures and retryable refusals (5xx, `UNAVAILABLE`, overload): the key
        makes the gateway return the same run, never start another. Then, with the outcome
        still unknown (whether or not the turn was accepted: the run id is the key),
        `agent.wait` asks for the run; a turn it saw end is fetched once more by its key (or
        rebuilt from the wait's answer). Raises `GatewayError` for a definite failure (a
        non-retryable refusal, or the turn's own error answer), and `GatewayUnavailable`
        with code `OUTCOME_UNKNOWN` when nothing settled it by the deadline.
        """
        params: Json = {"message": message, "idempotencyKey": idempotency_key}
        optional = {
            "sessionKey": session_key,
            "agentId": agent_id,
            "model": model,
            "thinking": thinking,
            "timeout": timeout_s,
        }
        params.update({name: value for name, value in optional.items() if value is not None})
        params.update(extra or {})
        if wait_s is None:
            wait_s = (timeout_s or DEFAULT_AGENT_TIMEOUT_S) + AGENT_WAIT_GRACE_S
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        accepted = False

        async def notify(payload: Json) -> None:
            nonlocal accepted
            if accepted:
                return
            accepted = True
            if on_accepted is not None:
                result = on_accepted(payload)
                if inspect.isawaitable(result):
                    await result

        ask_until = deadline - min(AGENT_SETTLE_S, wait_s / 4)
        try:
            return await self._ask("agent", params, ask_until, expect_final=True, notify=notify)
        except _Unanswered as unanswered:
            problem = unanswered.problem
        waited = await self._wait_for_run(idempotency_key, deadline)
        if waited.get("status") not in TURN_STATUSES or not waited.get("endedAt"):
            raise self._outcome_unknown(idempotency_key, wait_s, accepted, problem, waited)
        try:  # a turn that has ended: its stored final, at once, by the same key
            fetch_until = max(deadline, loop.time() + AGENT_FETCH_S / 2)
            return await self._ask("agent", params, fetch_until, expect_final=True, notify=notify)
        except _Unanswered:
            return self._final_from_wait(idempotency_key, waited)

    async def _wait_for_run(self, run_id: str, deadline: float) -> Json:
        """`agent.wait` for a turn whose outcome is unknown, asked again through faults
        until `deadline` (its wait ends `AGENT_FETCH_S` before); with no answer,
        `{"status": None, "problem": …}`."""

        def wait_params(remaining: float) -> Json:
            budget_ms = int(max(0.0, remaining - AGENT_FETCH_S) * 1000)
            return {"runId": run_id, "timeoutMs": budget_ms}

        try:
            waited = await self._ask("agent.wait", wait_params, deadline)
        except _Unanswered as unanswered:
            return {"status": None, "problem": unanswered.problem}
        except GatewayError as error:
            return {"status": None, "problem": error.message}
        if not isinstance(waited, dict):
            return {"status": None, "problem": "an answer that is not an object"}
        return waited

    def _outcome_unknown(
        self, key: str, wait_s: float, accepted: bool, problem: str, waited: Json
    ) -> GatewayUnavailable:
        if waited.get("status") is None:
            seen = f"agent.wait got no answer either ({waited.get('problem')})"
        elif waited.get("status") in ("timeout", "pending"):
            seen = "agent.wait says it has not ended"
        else:
            seen = f"agent.wait answered status {waited.get('status')!r}"
        fate = "accepted the turn but gave" if accepted else "gave"
        return GatewayUnavailable(
            self.settings.redact(
                f"The outcome of agent turn {key} is unknown: the gateway at "
                f"{self.settings.url} {fate} no final answer within {wait_s:g}s "
                f"(last: {problem}), and {seen}"
            ),
            code="OUTCOME_UNKNOWN",
        )

    def _final_from_wait(self, key: str, waited: Json) -> Json:
        """The final payload of a turn `agent.wait` saw end (notes §8.3), when the stored
        final itself could not be fetched: status, and the reply text of a turn that ended
        ok; an error ending is its definite failure."""
        status = waited.get("status")
        if status == "error":
            message = str(waited.get("error") or "the agent turn failed")
            raise GatewayError("UNAVAILABLE", self.settings.redact(message), payload=waited)
        final: Json = {"runId": key, "status": status, "summary": waited.get("error")}
        if status == "ok":
            reply = (waited.get("terminalReply") or {}).get("text")
            final.update(summary="completed", result={"payloads": [{"text": reply or ""}]})
        return final

    async def _ask(
        self,
        method: str,
        params: Json | Callable[[float], Json],
        until: float,
        *,
        expect_final: bool = False,
        notify: Callable[[Json], Awaitable[None]] | None = None,
    ) -> Any:
        """Send `method` (params, or a function of the seconds left that makes them) and
        return the answer's payload, sending it again, with jittered backoff (at least a
        refusal's `retryAfterMs`; drops and refusals each double their own delay, a
        drop's up to `RESEND_BACKOFF_MAX_S`), through dropped connections, connection
        failures and retryable refusals until the loop time `until`; then `_Unanswered`.
        A definite failure is raised as it comes: a non-retryable error, or a turn's own
        error answer (a payload with the run's status)."""
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        delays = {"drop": self.backoff_initial_s, "refusal": self.backoff_initial_s}
        problem = "no answer"
        while (remaining := until - loop.time()) > 0:
            retry_after_ms: int | None = None
            cause, longest = "refusal", self.backoff_max_s
            sent = params(remaining) if callable(params) else params
            try:
                async with asyncio.timeout(remaining):
                    connection = await self._live_connection()
                    return await self._exchange(
                        connection, method, sent, expect_final, notify or _ignore
                    )
            except TimeoutError:
                problem = "no answer in time" if problem == "no answer" else problem
                break
            except _Dropped:
                problem = "the connection dropped"
                cause, longest = "drop", RESEND_BACKOFF_MAX_S
            except GatewayError as error:
                if not error.retryable or _turn_ended(error):
                    raise
                problem, retry_after_ms = error.message, error.retry_after_ms
            if epoch != self._epoch:
                raise GatewayUnavailable(f"The client was closed during {method}")
            delay = delays[cause]
            delays[cause] = min(delay * 2, longest)
            pause = max(delay * random.uniform(0.5, 1.0), (retry_after_ms or 0) / 1000)
            pause = min(pause, self.backoff_max_s, max(0.0, until - loop.time()))
            log.info("gateway %s: %s; asking again in %.2fs", method, problem, pause)
            await asyncio.sleep(pause)
        raise _Unanswered(problem)

    async def agent_wait(self, run_id: str, timeout_ms: int = 30000) -> Json:
        """`status:"timeout"` without `endedAt` means only that the wait ran out."""
        return await self.call(
            "agent.wait",
            {"runId": run_id, "timeoutMs": timeout_ms},
            timeout_s=timeout_ms / 1000 + self.call_timeout_s,
            resend_on_drop=True,
        )

    async def sessions_patch(self, key: str, **fields: Any) -> Json:
        """Fields as the gateway spells them (`label`, `thinkingLevel`, ...); None clears."""
        return await self.call("sessions.patch", {"key": key, **fields}, resend_on_drop=True)

    async def sessions_list(self, **params: Any) -> Json:
        return await self.call("sessions.list", params, resend_on_drop=True)

    async def chat_history(self, session_key: str, **params: Any) -> Json:
        return await self.call(
            "chat.history", {"sessionKey": session_key, **params}, resend_on_drop=True
        )

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        expect_final: bool = False,
        timeout_s: float | None = None,
        resend_on_drop: bool = False,
        on_accepted: AcceptedCallback | None = None,
    ) -> Any:
        """Send one request and return the response payload.

        With `expect_final`, an interim `status:"accepted"` answer is passed to
        `on_accepted` and the call waits for the final one. With `resend_on_drop` (only for
        requests that are safe to repeat), a connection that drops before the answer is
        reopened and the request sent again, up to `connect_attempts` times.
        """
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._call(
                    method, dict(params or {}), expect_final, resend_on_drop, on_accepted
                )
        except TimeoutError:
            raise GatewayUnavailable(
                f"The gateway at {self.settings.url} did not answer {method} within {timeout:g}s",
                code="TIMEOUT",
            ) from None

    async def _call(
        self,
        method: str,
        params: Json,
        expect_final: bool,
        resend_on_drop: bool,
        on_accepted: AcceptedCallback | None,
    ) -> Any:
        epoch = self._epoch
        accepted = False

        async def notify(payload: Json) -> None:
            nonlocal accepted
            if accepted or on_accepted is None:
                return
            accepted = True
            result = on_accepted(payload)
            if inspect.isawaitable(result):
                await result

        attempts = self.connect_attempts if resend_on_drop else 1
        delay = self.backoff_initial_s
        for attempt in range(1, attempts + 1):
            connection = await self._live_connection()
            try:
                return await self._exchange(connection, method, params, expect_final, notify)
            except _Dropped:
                if epoch != self._epoch:
                    raise GatewayUnavailable(f"The client was closed during {method}") from None
                if attempt == attempts:
                    raise GatewayUnavailable(
                        f"The connection to the gateway at {self.settings.url} dropped "
                        f"during {method}"
                    ) from None
                log.warning(
                    "gateway connection dropped during %s; re-sending in %.1fs", method, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        params: Json,
        expect_final: bool,
        notify: Callable[[Json], Awaitable[None]],
    ) -> Any:
        import aiohttp

        request_id = uuid.uuid4().hex
        answers: asyncio.Queue[Json | None] = asyncio.Queue()
        connection.pending[request_id] = answers
        frame = {"type": "req", "id": request_id, "method": method, "params": params}
        try:
            try:
                await connection.ws.send_str(json.dumps(frame))
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as error:
                raise _Dropped from error
            while True:
                answer = await answers.get()
                if answer is None:
                    raise _Dropped
                if not answer.get("ok"):
                    raise self._error_from(answer)
                payload = answer.get("payload")
                if (
                    expect_final
                    and isinstance(payload, dict)
                    and payload.get("status") == "accepted"
                ):
                    await notify(payload)
                    continue
                return payload
        finally:
            connection.pending.pop(request_id, None)

    def _error_from(self, frame: Json) -> GatewayError:
        raw_error = frame.get("error")
        error: Json = raw_error if isinstance(raw_error, dict) else {}
        retry_after = error.get("retryAfterMs")
        details = error.get("details")
        return GatewayError(
            str(error.get("code") or "UNKNOWN"),
            self.settings.redact(str(error.get("message") or "the gateway reported an error")),
            retryable=bool(error.get("retryable")),
            retry_after_ms=retry_after if isinstance(retry_after, int) else None,
            details=self.settings.redact_value(details) if isinstance(details, dict) else None,
            payload=self.settings.redact_value(frame.get("payload")),
        )

    # -- the connection ------------------------------------------------------------------

    async def _live_connection(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.alive:
            return connection
        async with self._connect_lock:
            connection = self._connection
            if connection is not None and connection.alive:
                return connection
            self._connection = await self._open_with_backoff()
            return self._connection

    async def _open_with_backoff(self) -> _Connection:
        delay = self.backoff_initial_s
        for attempt in range(1, self.connect_attempts + 1):
            try:
                return await self._open()
            except GatewayUnavailable as error:
                if attempt == self.connect_attempts:
                    raise
                wait = min(max(delay, (error.retry_after_ms or 0) / 1000), self.backoff_max_s)
                log.info("gateway unavailable (%s); connecting again in %.1fs", error, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.backoff_max_s)
        raise AssertionError("unreachable")

    async def _open(self) -> _Connection:
        import aiohttp

        url = self.settings.ws_url
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                ws = await self._http_session().ws_connect(
                    url,
                    max_msg_size=MAX_FRAME_BYTES,
                    timeout=aiohttp.ClientWSTimeout(ws_close=WS_CLOSE_TIMEOUT_S),
                )
        except aiohttp.WSServerHandshakeError as error:
            if error.status == 401:
                raise self.settings.auth_error(f"HTTP {error.status}", status=401) from None
            raise GatewayUnavailable(
                f"The gateway at {url} refused the WebSocket upgrade (HTTP {error.status})",
                status=error.status,
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise GatewayUnavailable(
                f"Cannot reach the OpenClaw gateway at {url}: {_describe(error)}"
            ) from error
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                hello = await self._handshake(ws)
        except TimeoutError:
            await ws.close()
            raise GatewayUnavailable(
                f"The gateway at {url} did not complete the handshake in {HANDSHAKE_TIMEOUT_S:g}s"
            ) from None
        except BaseException:
            await ws.close()
            raise
        tick_ms = (hello.get("policy") or {}).get("tickIntervalMs") or DEFAULT_TICK_MS
        connection = _Connection(ws=ws, hello=hello, silence_limit_s=2 * tick_ms / 1000)
        connection.reader = asyncio.create_task(self._read(connection))
        log.info("connected to the gateway at %s", url)
        return connection

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> Json:
        """Notes §7.2: wait for `connect.challenge`, send `connect`, expect `hello-ok`."""
        import aiohttp

        while True:
            frame = await _receive_frame(ws)
            if frame.get("type") == "event" and frame.get("event") == "connect.challenge":
                break
        params: Json = {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": CLIENT_ID,
                "version": self.client_version,
                "platform": "linux" if os.name == "posix" else os.name,
                "mode": CLIENT_MODE,
                "displayName": self.display_name,
            },
            "role": "operator",
            "scopes": list(self.scopes),
            "caps": [],
        }
        if self.settings.token:
            params["auth"] = {"token": self.settings.token}
        request_id = f"connect-{uuid.uuid4().hex}"
        try:
            await ws.send_str(
                json.dumps({"type": "req", "id": request_id, "method": "connect", "params": params})
            )
        except (aiohttp.ClientError, ConnectionError) as error:
            raise GatewayUnavailable(
                f"The gateway at {self.settings.url} closed during the handshake"
            ) from error
        while True:
            frame = await _receive_frame(ws)
            if frame.get("type") == "res" and frame.get("id") == request_id:
                break
        if not frame.get("ok"):
            raise self._connect_error(frame)
        payload = frame.get("payload")
        hello: Json = payload if isinstance(payload, dict) else {}
        if hello.get("type") != "hello-ok" or hello.get("protocol") != PROTOCOL_VERSION:
            raise GatewayError(
                "PROTOCOL",
                f"The gateway at {self.settings.url} answered connect without a protocol "
                f"{PROTOCOL_VERSION} hello-ok",
            )
        granted = (hello.get("auth") or {}).get("scopes")
        if isinstance(granted, list):
            missing = [scope for scope in self.scopes if scope not in granted]
            if missing:
                raise GatewayAuthError(
                    f"The gateway granted this client the scopes {granted}, without "
                    f"{', '.join(missing)}; connect over loopback with the gateway's token",
                    code="MISSING_SCOPE",
                )
        return hello

    def _connect_error(self, frame: Json) -> GatewayError:
        error = self._error_from(frame)
        detail_code = str((error.details or {}).get("code") or "")
        if detail_code.startswith("AUTH_") or error.message.lower().startswith("unauthorized"):
            return self.settings.auth_error(
                _auth_reason(error.message), details=error.details, code=error.code
            )
        if error.retryable:
            return GatewayUnavailable(
                f"The gateway at {self.settings.url} is not ready: {error.message}",
                retry_after_ms=error.retry_after_ms,
                details=error.details,
            )
        return error

    async def _read(self, connection: _Connection) -> None:
        import aiohttp

        ws = connection.ws
        try:
            while True:
                message = await ws.receive(timeout=connection.silence_limit_s)
                if message.type is aiohttp.WSMsgType.TEXT:
                    self._route(connection, message.data)
                elif message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    log.warning("the gateway closed the connection (code %s)", ws.close_code)
                    break
        except TimeoutError:
            log.warning(
                "nothing heard from the gateway in %.0fs; dropping the connection",
                connection.silence_limit_s,
            )
        finally:
            connection.closed = True
            for answers in connection.pending.values():
                answers.put_nowait(None)
            with contextlib.suppress(Exception):
                await ws.close()

    def _route(self, connection: _Connection, data: str) -> None:
        try:
            frame = parse_json(data)
        except ValueError:
            log.warning("ignored a gateway frame that is not JSON")
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "res":
            answers = connection.pending.get(str(frame.get("id")))
            if answers is not None:  # else a late frame for a call that has finished
                answers.put_nowait(frame)
        elif kind == "event":
            for feed in self._listeners.values():
                feed.put(frame)

    async def _drop(self, connection: _Connection) -> None:
        connection.closed = True
        if connection.reader is not None:
            connection.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connection.reader
        for answers in connection.pending.values():
            answers.put_nowait(None)
        await connection.ws.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _http_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _auth_headers(self) -> dict[str, str]:
        if self.settings.token:
            return {"Authorization": f"Bearer {self.settings.token}"}
        return {}

    async def health(self) -> bool:
        """Spec §30.3: 2xx within 5 s is healthy; anything else, errors included, is not."""
        import aiohttp

        try:
            async with self._http_session().get(
                f"{self.settings.http_url}/health",
                headers=self._auth_headers(),
                timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S),
            ) as response:
                return 200 <= response.status < 300
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def invoke_tool(
        self,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        session_key: str | None = None,
        idempotency_key: str | None = None,
        timeout_s: float = 30.0,
    ) -> Json:
        """`POST /tools/invoke` (spec §30.2); returns the response body (`{ok, result}`)."""
        body: Json = {"tool": tool, "args": dict(args or {}), "sessionKey": session_key or "main"}
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return await self._http_json(
            "POST", "/tools/invoke", what=f"Gateway {tool}", body=body, timeout_s=timeout_s
        )

    async def chat_completion(
        self,
        messages: list[Json],
        *,
        model: str = "openclaw/default",
        session_key: str | None = None,
        user: str | None = None,
        model_override: str | None = None,
        agent_id: str | None = None,
        auth_profile: str | None = None,
        timeout_s: float = 300.0,
    ) -> Json:
        """`POST /v1/chat/completions` (spec §30.1), not streamed; returns the completion.
        `model` picks the agent (`openclaw/<agent>`); `model_override` the backend model."""
        headers: dict[str, str] = {}
        if self.settings.token:
            headers["x-openclaw-scopes"] = "operator.write"
        optional_headers = {
            "x-openclaw-agent-id": agent_id,
            "x-openclaw-session-key": session_key,
            "x-openclaw-model": model_override,
            "x-openclaw-auth-profile": auth_profile,
        }
        headers.update({name: value for name, value in optional_headers.items() if value})
        body: Json = {"model": model, "messages": messages, "stream": False}
        if user is not None:
            body["user"] = user
        return await self._http_json(
            "POST",
            "/v1/chat/completions",
            what="Chat completions",
            body=body,
            headers=headers,
            timeout_s=timeout_s,
        )

    async def session(self, key: str, *, timeout_s: float = 5.0) -> Json:
        """`GET /sessions/<key>`."""
        return await self._http_json(
            "GET", f"/sessions/{quote(key, safe=':')}", what="Gateway session", timeout_s=timeout_s
        )

    async def _http_json(
        self,
        method: str,
        path: str,
        *,
        what: str,
        timeout_s: float,
        body: Json | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        import aiohttp

        url = f"{self.settings.http_url}{path}"
        try:
            async with self._http_session().request(
                method,
                url,
                json=body,
                headers={**self._auth_headers(), **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                status = response.status
                text = await response.text()
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise GatewayUnavailable(
                f"{what} could not reach the gateway at {self.settings.url}: {_describe(error)}"
            ) from error
        if not 200 <= status < 300:
            raise self._http_error(what, status, text, retry_after)
        try:
            result = parse_json(text)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise GatewayError(
                "BAD_RESPONSE", f"{what} returned something other than a JSON object", status=status
            )
        return result

    def _http_error(
        self, what: str, status: int, text: str, retry_after: str | None
    ) -> GatewayError:
        if status == 401:
            return self.settings.auth_error(f"{what} got HTTP 401", status=status)
        message = f"{what} failed ({status}): {self.settings.redact(text)[:ERROR_BODY_CHARS]}"
        retry_after_ms = None
        if retry_after and retry_after.strip().isdigit():
            retry_after_ms = int(retry_after.strip()) * 1000
        if status == 529:
            code = "OVERLOADED"
        elif status >= 500:
            code = "UNAVAILABLE"
        else:
            code = _error_type(text) or f"HTTP_{status}"
        return GatewayError(
            code,
            message,
            retryable=status >= 500 or status == 429,
            retry_after_ms=retry_after_ms,
            status=status,
        )


async def _receive_frame(ws: aiohttp.ClientWebSocketResponse) -> Json:
    """The next JSON frame before the reader runs; a close becomes GatewayUnavailable."""
    import aiohttp

    while True:
        message = await ws.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            try:
                frame = parse_json(message.data)
            except ValueError:
                continue
            if isinstance(frame, dict):
                return frame
        elif message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            raise GatewayUnavailable(
                f"The gateway closed the connection during the handshake (code {ws.close_code})"
            )


async def _ignore(payload: Json) -> None:
    """An interim answer nobody is waiting for."""


def _turn_ended(error: GatewayError) -> bool:
    """Whether an error answer is an agent turn's own ending (its final frame, with the
    run's status), not a refusal of the request."""
    payload = error.payload
    return isinstance(payload, dict) and (
        payload.get("status") in TURN_STATUSES or "runId" in payload
    )


def _auth_reason(message: str) -> str:
    """'unauthorized: gateway token mismatch (provide gateway auth token)' → the middle."""
    reason = message
    if reason.lower().startswith("unauthorized:"):
        reason = reason[len("unauthorized:") :]
    reason = reason.split(" (", 1)[0].strip()
    return reason or "unauthorized"


def _error_type(text: str) -> str | None:
    try:
        body = parse_json(text)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return error["type"].upper()
    return None


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
