"""Lifecycle hooks (spec §31.12): JSON posted to Loki's push API and to a webhook.

Hooks travel as deliveries on the channels `loki` and `webhook` (the target is the URL),
so they are recorded, retried with backoff and sent once, like chat deliveries, and a
command that emits one never waits for it.
"""

from __future__ import annotations

HOOK_CHANNELS = ("loki", "webhook")
TIMEOUT_S = 3.0


class HookError(Exception):
    pass


async def post_hook(url: str, body: str) -> None:
    """POST the JSON body; anything but a 2xx answer is a HookError."""
    import aiohttp  # ~100 ms to import: a daemon with no hook target never pays it

    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
        ):
            if answer.status // 100 != 2:
                text = (await answer.text())[:200]
                raise HookError(f"HTTP {answer.status}: {text}")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise HookError(f"{type(error).__name__}: {error}") from None
