"""A fake OpenClaw gateway for tests and benchmarks.

It serves, on one port, the parts of the gateway that `GatewayClient` uses, with the frames
and bodies recorded from the real one (`shared/notes/openclaw-gateway.md` §5, §7, §8): the
protocol-4 WebSocket (challenge, `connect`, `agent` with its accepted and final frames and
idempotency, `agent.wait`, `sessions.patch`, `sessions.list`, `chat.history`, events) and
HTTP (`/health`, `/tools/invoke`, `/v1/chat/completions`, `/sessions/<key>`).

Switches are plain attributes that can change while it runs. Every WS request and HTTP
request is recorded in `calls`, and every turn run under its idempotency key
(`turns_by_key`, `turn_statuses`).

Faults (`set_faults`): a fraction of WebSocket connects, WebSocket requests and
authenticated HTTP requests (never the probes) fail, drawn from a seeded generator: a 5xx
answer or a 529/overload answer (both refusals: nothing is accepted or run), the socket
dropped before the request is handled or after it took effect (for `agent`: after the
accepted frame, and the turn goes on), or an answer `slow_s` late.

As a process:

    python -m ocsched.testing.fake_gateway --port 18789 --token T [--reply-delay S]
        [--fault-rate 0.3 --fault-seed 7 --faults 5xx,529,drop_before,drop_after,slow
         --slow S]

prints its URL and serves until SIGTERM. Its control API (with the token as a bearer, when
it has one): `GET /__fake__/record` (turns by idempotency key with their final status,
faults injected by kind, calls by name) and `POST /__fake__/switches` (a JSON object of
switches, `SWITCHES`; the answer is the switches now in force).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

Json = dict[str, Any]

DEFAULT_TOKEN = "fake-gateway-token"
DEFAULT_REPLY = "Hello from the fake model."
PROTOCOL_VERSION = 4
VERSION = "2026.9.6-fake"
MAX_PAYLOAD = 26214400
PROBES = frozenset({"/health", "/healthz", "/readyz", "/startupz"})


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# An `agent` failure like a provider overload, for `fake.agent_error`.
OVERLOADED_ERROR: Json = {
    "code": "UNAVAILABLE",
    "message": "⚠️ fake/fake-model request failed (provider overloaded, HTTP 529)",
    "retryable": True,
    "retryAfterMs": 1000,
}

FAULT_KINDS = ("5xx", "529", "drop_before", "drop_after", "slow")
"""What `set_faults` injects: a 5xx and a 529/overload answer (refusals: nothing accepted,
retryable), the socket dropped before the request is handled or after it took effect, an
answer `slow_s` late."""

# The `ok:false` answers of the two refusing faults on the WebSocket (HTTP gets the status).
FAULT_ERRORS: dict[str, Json] = {
    "5xx": {
        "code": "UNAVAILABLE",
        "message": "gateway upstream failed (HTTP 503)",
        "retryable": True,
        "details": {"status": 503},
    },
    "529": {
        "code": "UNAVAILABLE",
        "message": "⚠️ fake/fake-model request refused (provider overloaded, HTTP 529)",
        "retryable": True,
        "retryAfterMs": 200,
        "details": {"status": 529},
    },
}
CONTROL_PREFIX = "/__fake__/"
SWITCHES = frozenset(
    {
        "reply_delay_s",
        "http_status",
        "agent_error",
        "drop_after_accept",
        "slow_accept_s",
        "healthy",
        "fault_rate",
        "fault_kinds",
        "slow_s",
    }
)
"""The switches `POST /__fake__/switches` sets (`fault_seed` restarts the generator)."""

CLIENT_IDS = words(
    "webchat-ui openclaw-control-ui openclaw-browser-copilot openclaw-tui webchat cli "
    "gateway-client openclaw-macos openclaw-linux openclaw-ios openclaw-watchos "
    "openclaw-android node-host openclaw-worker test fingerprint openclaw-probe"
)
CLIENT_MODES = words("webchat cli ui backend node worker probe test")
TRUSTED_CLIENTS = frozenset({("gateway-client", "backend"), ("cli", "cli")})
REQUEST_KEYS = frozenset({"type", "id", "method", "params", "traceparent", "expectedProfileId"})

# The closed parameter objects of notes §8; `check_params` also admits `internal*`/`expected*`.
AGENT_PARAMS = words(
    "message idempotencyKey sessionKey agentId sessionId expectedExistingSessionId provider "
    "model thinking timeout extraSystemPrompt promptMode bootstrapContextMode label cwd lane "
    "deliver channel to replyTo replyChannel accountId threadId groupId attachments "
    "inputProvenance sessionEffects disableMessageTool suppressPromptPersistence"
)
PATCH_PARAMS = words(
    "key agentId label autoLabel icon color category statusNote attention ttlMinutes archived "
    "pinned unread boardFace boardPresentation model thinkingLevel fastMode contextWindow "
    "verboseLevel traceLevel reasoningLevel responseUsage elevatedLevel execHost execSecurity "
    "execAsk execNode permissionMode sandboxMode nativeRuntimeConsent toolOverrides "
    "agentRuntime completionOwnerSessionKey inheritedToolPolicyVersion inheritedToolAllow "
    "inheritedToolDeny sendPolicy groupActivation spawnDepth"
)
PATCH_WRITE_FIELDS = words(
    "key agentId expectedSessionId expectedLifecycleRevision label autoLabel icon color "
    "category boardFace boardPresentation pinned archived unread model agentRuntime "
    "thinkingLevel fastMode permissionMode"
)
"""What `operator.write` may patch; any other field needs `operator.admin`."""
LIST_PARAMS = words(
    "limit offset search label agentId activeMinutes activeOnly sortBy archived pinned "
    "includeGlobal includeUnknown excludeSubagents excludeCron excludeSystem "
    "configuredAgentsOnly includeDerivedTitles includeLastMessage includeActivitySummary group "
    "projectId workspaceDir boardFace hasBoard creatorId ownerId ownerFirst involvingMe "
    "profileRelation involvingProfileId includePeople spawnedBy"
)
HISTORY_PARAMS = words(
    "sessionKey agentId limit offset cursor maxBytes maxChars messageId sessionId "
    "pendingBefore inputRunIds"
)
WAIT_PARAMS = frozenset({"runId", "timeoutMs"})
RESERVED_SESSION_PREFIXES = ("subagent:", "cron:", "acp:")


def now_ms() -> int:
    return int(time.time() * 1000)


class Refusal(Exception):
    """An `ok:false` answer to a request."""

    def __init__(self, code: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.error: Json = {"code": code, "message": message}
        if details:
            self.error["details"] = details


@dataclass(eq=False)
class _Peer:
    ws: web.WebSocketResponse
    request: web.Request
    scopes: list[str] = field(default_factory=list)
    seq: int = 0

    async def send(self, frame: Json) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(json.dumps(frame))
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def event(self, name: str, payload: Json) -> None:
        self.seq += 1
        await self.send({"type": "event", "event": name, "payload": payload, "seq": self.seq})

    def drop(self) -> None:
        """Cut the TCP connection without a close frame, as a network failure would."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


@dataclass(eq=False)
class _Run:
    run_id: str
    session_key: str
    agent_id: str
    message: str
    params: Json
    accepted_at: int
    final: Json | None = None  # {"ok", "payload", "error"?} once the turn has ended
    ended_at: int | None = None
    text: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def accepted(self) -> Json:
        return {
            "runId": self.run_id,
            "sessionKey": self.session_key,
            "agentId": self.agent_id,
            "status": "accepted",
            "acceptedAt": self.accepted_at,
        }


class FakeGateway:
    """The fake gateway: `async with FakeGateway() as fake:` serves on 127.0.0.1, a free
    port, at `fake.url`, and expects `fake.token` (None: no auth).

    Switches: `reply_delay_s`; `reply_text` (text, or a callable message -> text);
    `http_status` (force this status, e.g. 500 or 529, on the authenticated HTTP
    endpoints); `agent_error` (an error object such as `OVERLOADED_ERROR`: `agent` turns end
    `ok:false` with it); `drop_after_accept` (cut the socket right after the next new
    turn's accepted frame, once; the turn goes on); `slow_accept_s`; `token`; `healthy`;
    the faults (`set_faults`, or `fault_rate`, `fault_seed`, `fault_kinds`, `slow_s` here).
    """

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        reply_delay_s: float = 0.0,
        reply_text: str | Callable[[str], str] = DEFAULT_REPLY,
        tick_interval_ms: int = 30000,
        fault_rate: float = 0.0,
        fault_seed: int | None = None,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        slow_s: float = 1.0,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.reply_delay_s = reply_delay_s
        self.reply_text = reply_text
        self.tick_interval_ms = tick_interval_ms
        self.http_status: int | None = None
        self.agent_error: Json | None = None
        self.drop_after_accept = False
        self.slow_accept_s = 0.0
        self.healthy = True
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = FAULT_KINDS
        self.slow_s = slow_s
        self.faults: Counter[str] = Counter()  # injected, by kind
        self._random = random.Random()
        self.set_faults(fault_rate, seed=fault_seed, kinds=fault_kinds)
        self.calls: list[tuple[str, str, Json]] = []
        self.url = ""
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._peers: set[_Peer] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runs: dict[str, _Run] = {}
        self._sessions: dict[str, Json] = {}
        self._history: dict[str, list[Json]] = {}
        self._messages: list[Json] = []
        self._message_results: dict[str, Json] = {}
        self._turns = 0
        self._turns_by_key: Counter[str] = Counter()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        for peer in list(self._peers):
            with contextlib.suppress(Exception):
                await peer.ws.close(code=1001, message=b"gateway stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def set_faults(
        self,
        rate: float,
        *,
        seed: int | None = None,
        kinds: Iterable[str] | None = None,
        slow_s: float | None = None,
    ) -> None:
        """Fail `rate` (0..1) of connects, WS requests and authenticated HTTP requests with
        one of `kinds` (`FAULT_KINDS`), drawn from a generator seeded with `seed` (None:
        keep the current one)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, not {rate}")
        chosen = tuple(kinds) if kinds is not None else self.fault_kinds
        unknown = sorted(set(chosen) - set(FAULT_KINDS))
        if unknown or not chosen:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}: {unknown}")
        self.fault_rate, self.fault_kinds = rate, chosen
        if seed is not None:
            self._random = random.Random(seed)
        if slow_s is not None:
            self.slow_s = slow_s

    def _fault(self) -> str | None:
        """The fault to inject into this connect or request, if any (and count it)."""
        if not self.fault_rate or self._random.random() >= self.fault_rate:
            return None
        kind = self._random.choice(self.fault_kinds)
        self.faults[kind] += 1
        return kind

    def drop_connections(self) -> None:
        """Cut every open WebSocket (turns in progress go on)."""
        for peer in list(self._peers):
            peer.drop()

    # -- what happened -------------------------------------------------------------------

    def turns(self) -> int:
        """Agent turns actually run (WS `agent` and chat completions), not replays."""
        return self._turns

    def turns_by_key(self) -> dict[str, int]:
        """Turns run under each `agent` idempotency key (a replay runs none)."""
        return dict(self._turns_by_key)

    def turn_statuses(self) -> dict[str, str | None]:
        """Each turn's final status (`ok`, `error`, `timeout`), None while it runs."""
        return {
            key: run.final["payload"]["status"] if run.final is not None else None
            for key, run in self._runs.items()
        }

    def record(self) -> Json:
        """What `GET /__fake__/record` answers."""
        statuses = self.turn_statuses()
        return {
            "turns": {
                key: {"count": count, "status": statuses.get(key)}
                for key, count in self._turns_by_key.items()
            },
            "faults": dict(self.faults),
            "calls": dict(Counter(name for _, name, _ in self.calls)),
        }

    def switches(self) -> Json:
        return {name: getattr(self, name) for name in sorted(SWITCHES)}

    def messages_sent(self) -> list[Json]:
        """`message` tool invocations (one per idempotency key)."""
        return list(self._messages)

    def calls_of(self, name: str) -> list[Json]:
        """The params (WS) or `{headers, body}` (HTTP, e.g. "POST /tools/invoke") recorded
        for one method or request."""
        return [params for _, called, params in self.calls if called == name]

    # -- the app -------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._http_gate])
        app.router.add_get("/", self._root)
        for probe in ("/health", "/healthz"):
            app.router.add_get(probe, self._health)
        app.router.add_get("/readyz", self._ready)
        app.router.add_post("/tools/invoke", self._tools_invoke)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/sessions/{key:.+}", self._session)
        app.router.add_get(CONTROL_PREFIX + "record", self._control_record)
        app.router.add_post(CONTROL_PREFIX + "switches", self._control_switches)
        return app

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _broadcast(self, name: str, payload: Json) -> None:
        for peer in list(self._peers):
            if peer.scopes:
                await peer.event(name, payload)

    # -- WebSocket -----------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_PAYLOAD, compress=False, timeout=2.0)
        if not ws.can_prepare(request).ok:
            return web.json_response({"ok": True, "service": "fake openclaw gateway"})
        fault = self._fault()
        if fault in ("5xx", "529"):
            status = 529 if fault == "529" else 503
            return error_response(status, "upgrade refused", "unavailable")
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        await ws.prepare(request)
        peer = _Peer(ws, request)
        if fault in ("drop_before", "drop_after"):
            peer.drop()
            return ws
        self._peers.add(peer)
        ticker: asyncio.Task[Any] | None = None
        try:
            challenge = {"nonce": str(uuid.uuid4()), "ts": now_ms(), "capabilities": []}
            await peer.event("connect.challenge", challenge)
            if not await self._handshake(peer):
                return ws
            ticker = self._spawn(self._tick(peer))
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._receive(peer, message.data)
        finally:
            self._peers.discard(peer)
            if ticker is not None:
                ticker.cancel()
        return ws

    async def _handshake(self, peer: _Peer) -> bool:
        try:
            message = await peer.ws.receive(timeout=15)
        except TimeoutError:
            await peer.ws.close(code=1008, message=b"handshake timeout")
            return False
        if message.type is not WSMsgType.TEXT:
            return False
        try:
            frame = json.loads(message.data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or frame.get("method") != "connect":
            await self._refuse_connect(
                peer, frame, "INVALID_REQUEST", "first request must be connect"
            )
            return False
        params = _object(frame.get("params"))
        recorded = dict(params)
        if isinstance(recorded.get("auth"), dict):
            recorded["auth"] = {name: "<redacted>" for name in recorded["auth"]}
        self.calls.append(("ws", "connect", recorded))
        try:
            scopes = self._admit(params)
        except Refusal as refusal:
            await peer.send(
                {"type": "res", "id": frame.get("id"), "ok": False, "error": refusal.error}
            )
            await peer.ws.close(code=1008, message=refusal.error["message"][:120].encode())
            return False
        peer.scopes = scopes
        await peer.send(
            {"type": "res", "id": frame.get("id"), "ok": True, "payload": self._hello(scopes)}
        )
        return True

    async def _refuse_connect(self, peer: _Peer, frame: Any, code: str, message: str) -> None:
        request_id = frame.get("id") if isinstance(frame, dict) else None
        error = {"code": code, "message": f"invalid handshake: {message}"}
        await peer.send({"type": "res", "id": request_id or "connect", "ok": False, "error": error})
        await peer.ws.close(code=1008, message=b"invalid handshake")

    def _admit(self, params: Json) -> list[str]:
        """Notes §7.2–7.3: protocol, client, token; the scopes the connection gets."""
        if not params.get("minProtocol", 0) <= PROTOCOL_VERSION <= params.get("maxProtocol", 0):
            raise Refusal("INVALID_REQUEST", "protocol mismatch", {"expectedProtocol": 4})
        client = _object(params.get("client"))
        if client.get("id") not in CLIENT_IDS or client.get("mode") not in CLIENT_MODES:
            raise Refusal("INVALID_REQUEST", "invalid connect params: at /client: bad id or mode")
        if not isinstance(client.get("version"), str) or not isinstance(
            client.get("platform"), str
        ):
            raise Refusal("INVALID_REQUEST", "invalid connect params: client.version/platform")
        if self.token:
            auth = _object(params.get("auth"))
            given = auth.get("token")
            if not given:
                raise Refusal(
                    "INVALID_REQUEST",
                    "unauthorized: gateway token missing (provide gateway auth token)",
                    {"code": "AUTH_TOKEN_MISSING", "authReason": "token_missing"},
                )
            if given != self.token:
                raise Refusal(
                    "INVALID_REQUEST",
                    "unauthorized: gateway token mismatch (provide gateway auth token)",
                    {
                        "code": "AUTH_TOKEN_MISMATCH",
                        "authReason": "token_mismatch",
                        "canRetryWithDeviceToken": False,
                        "recommendedNextStep": "update_auth_credentials",
                    },
                )
        if (client["id"], client["mode"]) not in TRUSTED_CLIENTS:
            return []
        return [scope for scope in params.get("scopes") or [] if isinstance(scope, str)]

    def _hello(self, scopes: list[str]) -> Json:
        return {
            "type": "hello-ok",
            "protocol": PROTOCOL_VERSION,
            "server": {"version": VERSION, "connId": uuid.uuid4().hex},
            "features": {"methods": sorted(self._methods()), "events": ["agent", "chat", "tick"]},
            "snapshot": {"authMode": "token" if self.token else "none", "uptimeMs": 0},
            "auth": {
                "method": "token" if self.token else "none",
                "role": "operator",
                "scopes": scopes,
            },
            "policy": {
                "maxPayload": MAX_PAYLOAD,
                "maxBufferedBytes": 2 * MAX_PAYLOAD,
                "tickIntervalMs": self.tick_interval_ms,
            },
        }

    async def _tick(self, peer: _Peer) -> None:
        while not peer.ws.closed:
            await asyncio.sleep(self.tick_interval_ms / 1000)
            await peer.event("tick", {"ts": now_ms()})

    def _methods(self) -> dict[str, tuple[str, frozenset[str], tuple[str, ...], Any]]:
        """method -> (scope, params allowed, params required, handler)."""
        return {
            "agent": ("operator.write", AGENT_PARAMS, ("message", "idempotencyKey"), self._agent),
            "agent.wait": ("operator.write", WAIT_PARAMS, ("runId",), self._agent_wait),
            "sessions.patch": ("operator.write", PATCH_PARAMS, ("key",), self._sessions_patch),
            "sessions.list": ("operator.read", LIST_PARAMS, (), self._sessions_list),
            "chat.history": ("operator.read", HISTORY_PARAMS, ("sessionKey",), self._chat_history),
        }

    async def _receive(self, peer: _Peer, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "req":
            return
        request_id = frame.get("id")
        extra = sorted(set(frame) - REQUEST_KEYS)
        if not isinstance(request_id, str) or not request_id or extra:
            problem = f"unexpected property '{extra[0]}'" if extra else "id must be a string"
            error = {"code": "INVALID_REQUEST", "message": f"invalid request frame: {problem}"}
            await peer.send({"type": "res", "id": request_id, "ok": False, "error": error})
            return
        self._spawn(self._answer(peer, request_id, frame.get("method"), frame.get("params")))

    async def _answer(self, peer: _Peer, request_id: str, method: Any, params: Any) -> None:
        params = params if isinstance(params, dict) else {}
        self.calls.append(("ws", str(method), params))
        fault = self._fault()
        if fault == "drop_before":
            peer.drop()
            return
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault in FAULT_ERRORS:
            await peer.send(
                {"type": "res", "id": request_id, "ok": False, "error": FAULT_ERRORS[fault]}
            )
            return
        drop_after = fault == "drop_after"
        try:
            entry = self._methods().get(str(method))
            if entry is None:
                raise Refusal("INVALID_REQUEST", f"unknown method: {method}")
            scope, allowed, required, handler = entry
            if method == "sessions.patch" and not set(params) & PATCH_PARAMS <= PATCH_WRITE_FIELDS:
                scope = "operator.admin"  # openclaw's method scopes: a write allowlist
            if scope not in peer.scopes:
                raise Refusal(
                    "FORBIDDEN",
                    f"missing scope: {scope}",
                    {"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]},
                )
            check_params(str(method), params, allowed, required)
            if method == "agent":  # it answers itself, with the accepted and final frames
                await self._agent(peer, request_id, params, drop_after=drop_after)
                return
            payload = await handler(peer, request_id, params)
        except Refusal as refusal:
            await peer.send({"type": "res", "id": request_id, "ok": False, "error": refusal.error})
            return
        if drop_after and payload is not None:
            peer.drop()  # it took effect; the answer is lost
        elif payload is not None:
            await peer.send({"type": "res", "id": request_id, "ok": True, "payload": payload})

    # -- methods ---------------------------------------------------------------------------

    async def _agent(
        self, peer: _Peer, request_id: str, params: Json, *, drop_after: bool = False
    ) -> None:
        """The accepted frame, then the final one; a known key's stored final at once. With
        `drop_after`, the socket is cut after the accepted frame (or instead of the stored
        final): the turn goes on."""
        if not isinstance(params["message"], str) or not params["message"]:
            raise Refusal("INVALID_REQUEST", "invalid agent params: message must not be empty")
        key = str(params["idempotencyKey"])
        if key not in self._runs and self.slow_accept_s:
            await asyncio.sleep(self.slow_accept_s)
        run = self._runs.get(key)
        fresh = run is None
        if run is None:
            run = self._start_turn(key, params)
        if run.final is not None:  # a replay: the stored final at once, as one frame
            if drop_after:
                peer.drop()
            else:
                await peer.send({"type": "res", "id": request_id, **run.final})
            return
        await peer.send({"type": "res", "id": request_id, "ok": True, "payload": run.accepted})
        if drop_after or (fresh and self.drop_after_accept):
            if fresh and self.drop_after_accept:
                self.drop_after_accept = False
            peer.drop()
            return
        await run.done.wait()
        assert run.final is not None
        await peer.send({"type": "res", "id": request_id, **run.final})

    def _start_turn(self, key: str, params: Json) -> _Run:
        agent_id = str(params.get("agentId") or "main")
        session_key = canonical_key(str(params.get("sessionKey") or "main"), agent_id)
        run = _Run(key, session_key, agent_id, params["message"], params, now_ms())
        self._runs[key] = run
        self._turns += 1
        self._turns_by_key[key] += 1
        session = self._session_entry(session_key, agent_id, "run")
        session.update(
            status="running",
            hasActiveRun=True,
            activeRunIds=[key],
            lastRunId=key,
            startedAt=run.accepted_at,
            updatedAt=run.accepted_at,
        )
        self._add_history(session_key, user_message(run.message, key))
        self._spawn(self._turn(run))
        return run

    async def _turn(self, run: _Run) -> None:
        base = {"runId": run.run_id, "sessionKey": run.session_key, "agentId": run.agent_id}
        await self._broadcast(
            "agent", {**base, "stream": "lifecycle", "data": {"phase": "start"}, "ts": now_ms()}
        )
        delay = self.reply_delay_s
        deadline = run.params.get("timeout")
        timed_out = isinstance(deadline, int | float) and delay > deadline
        await asyncio.sleep(min(delay, deadline) if isinstance(deadline, int | float) else delay)
        run.ended_at = now_ms()
        duration = run.ended_at - run.accepted_at
        session = self._sessions[run.session_key]
        if timed_out:
            run.final = {"ok": True, "payload": timeout_final(run.run_id, duration)}
            status = "timeout"
        elif self.agent_error is not None:
            error = {"code": "UNAVAILABLE", "message": "agent failed", **self.agent_error}
            payload = {"runId": run.run_id, "status": "error", "summary": error["message"]}
            run.final = {"ok": False, "payload": payload, "error": error}
            status = "failed"
            session["lastRunError"] = error["message"]
        else:
            run.text = self._reply(run.message)
            usage = fake_usage(run.message, run.text)
            run.final = {"ok": True, "payload": ok_final(run.run_id, run.text, usage, duration)}
            status = "done"
            self._add_history(run.session_key, assistant_message(run.text, run.run_id, usage))
            for name, tokens in (("inputTokens", "input"), ("outputTokens", "output")):
                session[name] = session.get(name, 0) + usage[tokens]
            session["totalTokens"] = session["inputTokens"] + session["outputTokens"]
            content = [{"type": "text", "text": run.text}]
            await self._broadcast(
                "chat",
                {
                    **base,
                    "seq": 1,
                    "state": "final",
                    "stopReason": "stop",
                    "message": {"role": "assistant", "content": content},
                },
            )
        session.update(
            status=status,
            hasActiveRun=False,
            activeRunIds=[],
            endedAt=run.ended_at,
            runtimeMs=duration,
            updatedAt=run.ended_at,
        )
        await self._broadcast(
            "agent", {**base, "stream": "lifecycle", "data": {"phase": "end"}, "ts": now_ms()}
        )
        run.done.set()

    def _reply(self, message: str) -> str:
        return self.reply_text(message) if callable(self.reply_text) else self.reply_text

    async def _agent_wait(self, peer: _Peer, request_id: str, params: Json) -> Json:
        run_id = str(params["runId"])
        deadline = time.monotonic() + int(params.get("timeoutMs", 30000)) / 1000
        while run_id not in self._runs and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        run = self._runs.get(run_id)
        if run is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.done.wait(), max(0.0, deadline - time.monotonic()))
        if run is None or run.final is None:
            return {"runId": run_id, "status": "timeout"}  # only the wait ran out: no endedAt
        answer: Json = {
            "runId": run_id,
            "status": run.final["payload"]["status"],
            "startedAt": run.accepted_at,
            "endedAt": run.ended_at,
        }
        if answer["status"] == "ok":
            answer["stopReason"] = "stop"
            answer["terminalReply"] = {"disposition": "visible", "text": run.text}
        else:
            answer["error"] = run.final["payload"].get("summary") or "Request timed out"
        return answer

    async def _sessions_patch(self, peer: _Peer, request_id: str, params: Json) -> Json:
        agent_id = str(params.get("agentId") or "main")
        key = canonical_key(str(params["key"]), agent_id)
        entry = self._session_entry(key, agent_id, "operator")
        changes = {name: value for name, value in params.items() if name not in ("key", "agentId")}
        entry.update(changes, updatedAt=now_ms())
        stored = {
            name: entry[name] for name in ("sessionId", "updatedAt", "createdVia", "createdAt")
        }
        stored.update(changes)
        return {
            "ok": True,
            "path": "fake://sessions",
            "key": key,
            "entry": stored,
            "resolved": {"modelProvider": "fake", "model": entry.get("model") or "fake-model"},
        }

    async def _sessions_list(self, peer: _Peer, request_id: str, params: Json) -> Json:
        rows = self._session_rows(params)
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return {
            "ts": now_ms(),
            "path": "fake://sessions",
            "count": len(page),
            "totalCount": len(rows),
            "limitApplied": limit,
            "nextOffset": offset + limit if more else None,
            "hasMore": more,
            "owners": [],
            "defaults": {"modelProvider": "fake", "model": "fake-model"},
            "sessions": page,
        }

    async def _chat_history(self, peer: _Peer, request_id: str, params: Json) -> Json:
        key = canonical_key(str(params["sessionKey"]), str(params.get("agentId") or "main"))
        messages = self._history.get(key, [])
        limit = int(params.get("limit") or 1000)
        session = self._sessions.get(key)
        return {
            "sessionKey": key,
            "sessionId": session["sessionId"] if session else None,
            "messages": messages[-limit:],
            "pendingInputs": {"items": [], "total": 0},
            "hasMore": len(messages) > limit,
            "totalMessages": len(messages),
            "defaults": {"modelProvider": "fake", "model": "fake-model"},
            "sessionInfo": dict(session) if session else None,
        }

    # -- sessions ----------------------------------------------------------------------------

    def _session_entry(self, key: str, agent_id: str, created_via: str) -> Json:
        if key not in self._sessions:
            now = now_ms()
            self._sessions[key] = {
                "key": key,
                "kind": "direct",
                "sessionId": str(uuid.uuid4()),
                "agentId": agent_id,
                "createdVia": created_via,
                "createdAt": now,
                "updatedAt": now,
                "hasActiveRun": False,
                "activeRunIds": [],
                "inputTokens": 0,
                "outputTokens": 0,
                "totalTokens": 0,
                "model": "fake-model",
                "modelProvider": "fake",
            }
        return self._sessions[key]

    def _session_rows(self, params: Json) -> list[Json]:
        rows = sorted(self._sessions.values(), key=lambda row: row["updatedAt"], reverse=True)
        if params.get("activeOnly"):
            rows = [row for row in rows if row["hasActiveRun"]]
        if params.get("activeMinutes"):
            since = now_ms() - int(params["activeMinutes"]) * 60000
            rows = [row for row in rows if row["updatedAt"] >= since]
        if params.get("agentId"):
            rows = [row for row in rows if row["agentId"] == params["agentId"]]
        if params.get("label"):
            rows = [row for row in rows if row.get("label") == params["label"]]
        if params.get("search"):
            needle = str(params["search"]).lower()
            rows = [row for row in rows if needle in f"{row['key']} {row.get('label', '')}".lower()]
        return [dict(row) for row in rows]

    def _add_history(self, key: str, message: Json) -> None:
        messages = self._history.setdefault(key, [])
        message["__openclaw"] = {**message.get("__openclaw", {}), "seq": len(messages) + 1}
        messages.append(message)

    # -- HTTP ----------------------------------------------------------------------------

    @web.middleware
    async def _http_gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Record the request; then auth and the forced status, except for probes and WS."""
        if request.path == "/" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        if request.path.startswith(CONTROL_PREFIX):
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                return error_response(401, "Unauthorized", "unauthorized")
            return await handler(request)
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return error_response(400, "invalid JSON body", "invalid_request_error")
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.calls.append(
            ("http", f"{request.method} {request.path}", {"headers": headers, "body": body})
        )
        if request.path in PROBES or request.path == "/":
            return await handler(request)
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return error_response(401, "Unauthorized", "unauthorized")
        if self.http_status == 529:
            return error_response(529, "overloaded", "overloaded_error", {"Retry-After": "1"})
        if self.http_status is not None:
            return error_response(self.http_status, "internal error", "server_error")
        fault = self._fault()
        if fault == "5xx":
            return error_response(503, "upstream failed", "server_error")
        if fault == "529":
            return error_response(529, "overloaded", "overloaded_error", {"Retry-After": "1"})
        if fault == "drop_before":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)  # never sent: the connection is gone
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        response = await handler(request)
        if fault == "drop_after" and request.transport is not None:
            request.transport.abort()  # it took effect; the answer is lost
        return response

    async def _control_record(self, request: web.Request) -> web.Response:
        return web.json_response(self.record())

    async def _control_switches(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            return error_response(400, "a JSON object of switches", "invalid_request_error")
        unknown = sorted(set(changes) - SWITCHES - {"fault_seed"})
        if unknown:
            return error_response(400, f"unknown switches: {unknown}", "invalid_request_error")
        rate = changes.pop("fault_rate", self.fault_rate)
        seed = changes.pop("fault_seed", None)
        kinds = changes.pop("fault_kinds", None)
        try:
            self.set_faults(float(rate), seed=seed, kinds=kinds)
        except (TypeError, ValueError) as error:
            return error_response(400, str(error), "invalid_request_error")
        for name, value in changes.items():
            setattr(self, name, value)
        return web.json_response(self.switches())

    async def _health(self, request: web.Request) -> web.Response:
        if self.healthy:
            return web.json_response({"ok": True, "status": "live"})
        return web.json_response({"ok": False, "status": "draining"}, status=503)

    async def _ready(self, request: web.Request) -> web.Response:
        failing = [] if self.healthy else ["fake"]
        return web.json_response(
            {"ready": self.healthy, "failing": failing, "uptimeMs": 0},
            status=200 if self.healthy else 503,
        )

    async def _tools_invoke(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return tool_error(400, "invalid_request", "body must be an object")
        tool = body.get("tool") or body.get("name")
        args = _object(body.get("args"))
        session_key = str(body.get("sessionKey") or "main")
        if tool == "message":
            return self._message_tool(args, session_key, body.get("idempotencyKey"))
        if tool == "sessions_list":
            rows = self._session_rows({"activeMinutes": args.get("activeMinutes")})
            rows = rows[: int(args.get("limit") or len(rows) or 1)]
            details = {"count": len(rows), "sessions": rows}
            return web.json_response({"ok": True, "result": tool_result(details)})
        return tool_error(404, "not_found", f"Tool not available: {tool}")

    def _message_tool(self, args: Json, session_key: str, key: Any) -> web.Response:
        if isinstance(key, str) and key in self._message_results:
            return web.json_response(self._message_results[key])
        if args.get("action", "send") != "send" or not isinstance(args.get("message"), str):
            return tool_error(400, "invalid_request", "message requires action send and a message")
        message_id = uuid.uuid4().hex
        self._messages.append({**args, "sessionKey": session_key, "idempotencyKey": key})
        details = {"ok": True, "messageId": message_id, "channel": args.get("channel")}
        answer = {"ok": True, "result": tool_result(details)}
        if isinstance(key, str):
            self._message_results[key] = answer
        return web.json_response(answer)

    async def _chat_completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return error_response(400, "messages is required", "invalid_request_error")
        agent_id = request.headers.get("x-openclaw-agent-id") or agent_of_model(body.get("model"))
        if agent_id is None:
            return error_response(
                400, f"Invalid model: {body.get('model')}", "invalid_request_error"
            )
        if body.get("stream"):
            return error_response(400, "the fake does not stream", "invalid_request_error")
        header_key = request.headers.get("x-openclaw-session-key")
        if header_key and header_key.startswith(RESERVED_SESSION_PREFIXES):
            return error_response(400, "reserved session key prefix", "invalid_request_error")
        if header_key:
            session_key = canonical_key(header_key, agent_id)
        elif body.get("user"):
            session_key = f"agent:{agent_id}:openai-user:{body['user']}"
        else:
            session_key = f"agent:{agent_id}:openai:{uuid.uuid4()}"
        prompt = last_user_text(body["messages"])
        self._turns += 1
        run_id = f"chatcmpl_{uuid.uuid4()}"
        self._session_entry(session_key, agent_id, "run")
        self._add_history(session_key, user_message(prompt, run_id))
        await asyncio.sleep(self.reply_delay_s)
        text = self._reply(prompt)
        usage = fake_usage(prompt, text)
        self._add_history(session_key, assistant_message(text, run_id, usage))
        self._sessions[session_key].update(status="done", updatedAt=now_ms(), lastRunId=run_id)
        completion = {
            "id": run_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage["input"],
                "completion_tokens": usage["output"],
                "total_tokens": usage["total"],
            },
        }
        return web.json_response(completion, headers={"x-openclaw-session-key": session_key})

    async def _session(self, request: web.Request) -> web.Response:
        key = canonical_key(request.match_info["key"], "main")
        session = self._sessions.get(key)
        if session is None:
            return tool_error(404, "not_found", f"Session not found: {key}")
        messages = self._history.get(key, [])
        return web.json_response(
            {"ok": True, **session, "messageCount": len(messages), "messages": messages}
        )


# -- frames and bodies -------------------------------------------------------------------------


def check_params(
    method: str, params: Json, allowed: frozenset[str], required: Iterable[str]
) -> None:
    for name in params:
        if name not in allowed and not name.startswith(("internal", "expected")):
            raise Refusal(
                "INVALID_REQUEST", f"invalid {method} params: at root: unexpected property '{name}'"
            )
    for name in required:
        if name not in params:
            raise Refusal(
                "INVALID_REQUEST", f"invalid {method} params: must have required property '{name}'"
            )


def canonical_key(key: str, agent_id: str) -> str:
    """Notes §11: session keys are canonicalised to `agent:<agentId>:<key>`."""
    return key if key.startswith("agent:") else f"agent:{agent_id}:{key}"


def agent_of_model(model: Any) -> str | None:
    """`openclaw`, `openclaw/default`, `openclaw/<id>`, `openclaw:<id>`, `agent:<id>`."""
    if model in ("openclaw", "openclaw/default"):
        return "main"
    if isinstance(model, str):
        for prefix in ("openclaw/", "openclaw:", "agent:"):
            if model.startswith(prefix) and len(model) > len(prefix):
                return model[len(prefix) :]
    return None


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
            return str(content or "")
    return ""


def fake_usage(prompt: str, reply: str) -> Json:
    tokens_in, tokens_out = max(1, len(prompt.split())), max(1, len(reply.split()))
    return {
        "input": tokens_in,
        "output": tokens_out,
        "cacheRead": 0,
        "cacheWrite": 0,
        "total": tokens_in + tokens_out,
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
    }


def ok_final(run_id: str, text: str, usage: Json, duration_ms: int) -> Json:
    """The final `agent` payload of notes §8.2."""
    return {
        "runId": run_id,
        "status": "ok",
        "summary": "completed",
        "result": {
            "payloads": [{"text": text, "mediaUrl": None}],
            "meta": {
                "durationMs": duration_ms,
                "finalAssistantVisibleText": text,
                "stopReason": "stop",
                "aborted": False,
                "livenessState": "working",
                "agentMeta": {
                    "sessionId": None,
                    "provider": "fake",
                    "model": "fake-model",
                    "usage": usage,
                },
                "completion": {"stopReason": "stop", "finishReason": "stop"},
            },
        },
    }


def timeout_final(run_id: str, duration_ms: int) -> Json:
    return {
        "runId": run_id,
        "status": "timeout",
        "summary": "aborted",
        "timeoutPhase": "provider",
        "providerStarted": True,
        "result": {
            "payloads": [{"text": "Request timed out", "isError": True}],
            "meta": {"durationMs": duration_ms, "stopReason": "aborted", "aborted": True},
        },
    }


def user_message(text: str, run_id: str) -> Json:
    return {
        "role": "user",
        "content": text,
        "timestamp": now_ms(),
        "idempotencyKey": f"{run_id}:user",
        "__openclaw": {"id": uuid.uuid4().hex},
    }


def assistant_message(text: str, run_id: str, usage: Json) -> Json:
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "api": "openai-completions",
        "provider": "fake",
        "model": "fake-model",
        "usage": usage,
        "stopReason": "stop",
        "timestamp": now_ms(),
        "responseId": f"resp_{uuid.uuid4().hex}",
        "__openclaw": {"id": uuid.uuid4().hex, "runId": run_id},
    }


def tool_result(details: Json) -> Json:
    return {
        "content": [{"type": "text", "text": json.dumps(details, indent=2)}],
        "details": details,
    }


def tool_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": {"type": kind, "message": message}}, status=status
    )


def error_response(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind}}, status=status, headers=headers
    )


# -- as a process --------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    fake = FakeGateway(
        token=args.token or None,
        host=args.host,
        port=args.port,
        reply_delay_s=args.reply_delay,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        fault_kinds=[kind for kind in args.faults.split(",") if kind],
        slow_s=args.slow,
    )
    async with fake:
        print(fake.url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ocsched.testing.fake_gateway",
        description="Serve a fake OpenClaw gateway until SIGTERM; prints its URL.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help='"" serves without auth')
    parser.add_argument("--reply-delay", type=float, default=0.0, metavar="S")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, metavar="R", help="0..1 of connects/requests"
    )
    parser.add_argument("--fault-seed", type=int, default=None, metavar="N")
    parser.add_argument(
        "--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds"
    )
    parser.add_argument("--slow", type=float, default=1.0, metavar="S", help="a slow answer's lag")
    asyncio.run(serve(parser.parse_args(argv)))


def _object(value: Any) -> Json:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


if __name__ == "__main__":
    main()
