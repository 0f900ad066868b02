"""The gateway calls of the dispatch CLI (spec §31.3), one client per command.

Every function takes the invocation's `Settings`; the gateway's token follows spec §31.1
(`OPENCLAW_GATEWAY_TOKEN`, else `gateway.auth.token` from `openclaw.json`, else the
scheduler's token file). Failures the command must report become a `CommandError`;
failures a command tolerates (liveness, activity, history) come back as values.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .output import CommandError

if TYPE_CHECKING:
    from ocsched.adapters.gateway import GatewayClient, GatewaySettings
    from ocsched.adapters.settings import Settings

Warn = Callable[[str], None]


def gateway_settings(settings: Settings) -> GatewaySettings:
    """Spec §31.1: `OPENCLAW_GATEWAY_TOKEN`, else `gateway.auth.token` from
    `<OpenClaw home>/openclaw.json`, else the scheduler's token file."""
    from ocsched.adapters.gateway import GatewaySettings
    from ocsched.adapters.openclaw_files import config_token

    environment = settings.gateway_environment
    if not environment.get("OPENCLAW_GATEWAY_TOKEN"):
        token = config_token(settings.openclaw_home)
        if token:
            environment = {**environment, "OPENCLAW_GATEWAY_TOKEN": token}
    return GatewaySettings.from_environment(environment)


def gateway_call(
    settings: Settings,
    calls: Callable[[GatewayClient], Awaitable[Any]],
    scopes: Sequence[str] | None = None,
) -> Any:
    """Run `calls` with one client, closed afterwards, connected with `scopes`: the least
    the calls need (`adapters.gateway`: `READ_SCOPES`, the default, `WRITE_SCOPES`,
    `PATCH_ADMIN_SCOPES`)."""
    from ocsched.adapters.gateway import READ_SCOPES, GatewayClient

    async def run() -> Any:
        client = GatewayClient(gateway_settings(settings), scopes=scopes or READ_SCOPES)
        async with client:
            return await calls(client)

    return asyncio.run(run())


def sessions_by_key(settings: Settings) -> dict[str, dict] | None:
    """The gateway's sessions (`sessions.list`, last 24 h) by key; None when it cannot be
    asked."""
    from ocsched.adapters.gateway import GatewayError

    try:
        answer = gateway_call(settings, lambda client: client.sessions_list(activeMinutes=1440))
    except (GatewayError, OSError):
        return None
    return {s.get("key"): s for s in answer.get("sessions") or []}


def liveness(settings: Settings, session_key: str, now_ms: int) -> dict[str, Any]:
    """What the gateway knows of the session (`sessions.list`), or `{"error": …}`."""
    sessions = sessions_by_key(settings)
    if sessions is None:
        return {"error": "sessions store unavailable"}
    session = sessions.get(session_key)
    if session is None:
        return {"error": "session not found in sessions store"}
    updated = session.get("updatedAt")
    return {
        "updatedAt": updated,
        "ageMs": now_ms - updated if isinstance(updated, (int, float)) else None,
        "sessionId": session.get("sessionId"),
        "model": session.get("model"),
        "tokens": session.get("totalTokens"),
    }


def session_activity(settings: Settings, session_key: str) -> tuple[dict | None, str | None]:
    """`GET /sessions/<key>` for `done`'s activity check, and the failure's text; the check
    fails open, so a gateway that does not answer is (None, why)."""
    from ocsched.adapters.gateway import GatewayError

    try:
        return gateway_call(settings, lambda client: client.session(session_key)), None
    except (GatewayError, OSError) as error:
        return None, str(error)


def last_reply(settings: Settings, session_key: str, warn: Warn) -> str | None:
    """The session's last assistant reply (`chat.history`); a failure is a warning."""
    from ocsched.adapters.gateway import GatewayError

    try:
        history = gateway_call(settings, lambda client: client.chat_history(session_key))
    except GatewayError as error:
        warn(f"WARNING: chat.history failed: {error}")
        return None
    messages = history.get("messages") if isinstance(history, dict) else None
    return last_assistant_reply(messages if isinstance(messages, list) else [])


def last_assistant_reply(messages: list[Any]) -> str | None:
    """The newest assistant message with text (spec §31.6): a string content, the joined
    `text` parts of a list, or the JSON of anything else; empty ones are passed over."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        text = _content_text(message.get("content"))
        if text:
            return text
    return None


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return "".join(text if isinstance(text, str) else _js_json(text) for text in texts if text)
    return _js_json(content)


def _js_json(value: Any) -> str:
    """`JSON.stringify`: no spaces after separators."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def spawn(
    settings: Settings,
    *,
    fresh: bool,
    model: str | None,
    thinking: str | None,
    params: dict[str, Any],
    warn: Warn,
) -> dict[str, Any]:
    """Spec §31.4 steps 10–11: a fresh session's `sessions.patch` calls (spawn depth and
    model fatal, thinking a warning), then the `agent` call that starts it."""
    from ocsched.adapters.gateway import GatewayError

    session_key = params["sessionKey"]

    async def patch(client: GatewayClient, what: str, **fields: Any) -> None:
        try:
            await client.sessions_patch(session_key, **fields)
        except GatewayError as error:
            raise CommandError(f"sessions.patch ({what}) failed: {error}") from None

    async def calls(client: GatewayClient) -> dict[str, Any]:
        if fresh:
            await patch(client, "spawnDepth", spawnDepth=1)
            if model:
                await patch(client, "model", model=model)
            if thinking:
                try:
                    level = None if thinking == "off" else thinking
                    await client.sessions_patch(session_key, thinkingLevel=level)
                except GatewayError as error:
                    warn(f"WARNING: sessions.patch (thinking) failed: {error}")
        try:
            return await client.call("agent", params, timeout_s=15, resend_on_drop=True)
        except GatewayError as error:
            raise CommandError(f"gateway agent call failed: {error}") from None

    from ocsched.adapters.gateway import PATCH_ADMIN_SCOPES, WRITE_SCOPES

    return gateway_call(settings, calls, PATCH_ADMIN_SCOPES if fresh else WRITE_SCOPES)


def send(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """`send` / `steer`: an `agent` call in lane `nested` (spec §31.6)."""
    from ocsched.adapters.gateway import WRITE_SCOPES, GatewayError

    try:
        return gateway_call(
            settings,
            lambda client: client.call("agent", params, timeout_s=15, resend_on_drop=True),
            WRITE_SCOPES,
        )
    except GatewayError as error:
        raise CommandError(f"Failed to send message: {error}") from None
