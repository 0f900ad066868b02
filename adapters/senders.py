"""Senders: how one chunk of a delivery leaves the machine, behind one small interface.
Chat channels go through the gateway's `message` tool with the chunk's idempotency key;
the hook channels (`loki`, `webhook`) are a JSON POST to the target URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .hooks import HOOK_CHANNELS, HookError, post_hook


class SendError(Exception):
    """The chunk did not go out; the delivery records the attempt and tries again later."""


class Sender(Protocol):
    async def send(self, channel: str | None, target: str, text: str, key: str) -> None:
        """Send `text`; raise `SendError` when it did not go out."""
        ...


class ChatSender:
    """A chat message through the gateway's `message` tool (spec §13.4)."""

    def __init__(self, gateway: Callable[[], Any]) -> None:
        self.gateway = gateway

    async def send(self, channel: str | None, target: str, text: str, key: str) -> None:
        from .gateway import GatewayError

        args = {"action": "send", "message": text, "channel": channel, "target": target}
        try:
            await self.gateway().invoke_tool("message", args, idempotency_key=key)
        except GatewayError as error:
            raise SendError(str(error)) from None


class HookSender:
    """A lifecycle hook's JSON POST (spec §31.12); the target is the URL."""

    async def send(self, channel: str | None, target: str, text: str, key: str) -> None:
        try:
            await post_hook(target, text)
        except HookError as error:
            raise SendError(str(error)) from None


class RoutingSender:
    """Hooks to the hook sender, everything else to the chat sender."""

    def __init__(self, chat: Sender, hooks: Sender) -> None:
        self.chat, self.hooks = chat, hooks

    async def send(self, channel: str | None, target: str, text: str, key: str) -> None:
        sender = self.hooks if channel in HOOK_CHANNELS else self.chat
        await sender.send(channel, target, text, key)
