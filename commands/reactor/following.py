"""Following sub-agent dispatches (spec §31.10–31.11): the reactor follows every running
dispatch instead of a watcher job per label. Handlers only; the decisions are in
`domain/reactions/following.py`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ocsched.adapters import shell
from ocsched.projections import views

from .handlers import Handlers

log = logging.getLogger("ocsched")

VERIFY_TIMEOUT_MS = 60_000


def _following() -> Any:
    # The dispatch rules' patterns take ~14 ms to compile: a daemon pays them once it has
    # a dispatch to follow, not before its first run.
    from ocsched.domain.reactions import following

    return following


class DispatchFollower:
    def __init__(
        self,
        handlers: Handlers,
        *,
        gateway: Callable[[], Any],
        brand: str,
        startup_grace_ms: float,
        overload_grace_s: float,
        shell_path: str,
        guard: Callable[[], shell.SpawnGuard | None] = lambda: None,
    ) -> None:
        self.handlers = handlers
        self.gateway = gateway
        self.brand = brand
        self.startup_grace_ms = startup_grace_ms
        self.overload_grace_s = overload_grace_s
        self.shell_path = shell_path
        self.guard = guard
        """The daemon's watchdog, which knows each verify command's group before it runs."""
        self.verifying: set[str] = set()

    async def follow(self) -> None:
        """Announce new dispatches, deliver the results of finished ones, resolve running
        ones whose session ended, and retry overloaded ones."""
        await self.follow_quickly()
        await self.resolve_running()
        await self.retry_overloaded()
        await self.follow_quickly()  # deliver what this pass ended, without waiting a pass

    async def follow_quickly(self) -> None:
        """After others' events: verifications, notices and results (no gateway polling)."""
        h = self.handlers
        await h.writer.settled()  # the read models include this daemon's own decisions
        db, now = h.db(), h.now()
        for row in views.labels_to_verify(db):
            await self._verify(row["dispatch_id"], row["verify_cmd"])
        for row in views.labels_awaiting_delivery(db, "dispatch-start"):
            await h.apply(
                _following().start_notice(row, self.brand, owner=h.owner, now=now, facts=h.facts)
            )
        for row in views.labels_awaiting_delivery(db, "dispatch-result"):
            await h.apply(_following().result_delivery(row, owner=h.owner, now=now, facts=h.facts))

    async def _verify(self, dispatch_id: str, command: str) -> None:
        """Run a done dispatch's `--verify-cmd` (shell, 60 s) before its result goes out."""
        if dispatch_id in self.verifying:
            return
        self.verifying.add(dispatch_id)
        try:
            try:
                result = await shell.run_shell(
                    command,
                    timeout_ms=VERIFY_TIMEOUT_MS,
                    shell=self.shell_path,
                    guard=self.guard(),
                )
                passed = result.returncode == 0 and not result.timed_out
                stderr = result.stderr.decode("utf-8", "replace").strip()
                detail = None if passed else stderr or f"exit code {result.returncode}"
            except OSError as error:
                passed, detail = False, str(error)
            h = self.handlers
            plan = _following().verification_recorded(
                h.load(dispatch_id), passed=passed, detail=detail, owner=h.owner, now=h.now()
            )
            verified = await h.apply(plan)
        finally:
            self.verifying.discard(dispatch_id)
        if verified:
            await self.follow_quickly()  # the result can go out now

    async def resolve_running(self) -> None:
        from ocsched.adapters.gateway import GatewayError

        h = self.handlers
        running = views.running_labels(h.db())
        if not running:
            return
        try:
            answer = await self.gateway().sessions_list(activeMinutes=1440)
        except GatewayError:
            return  # the gateway cannot tell: decide nothing
        sessions = {s.get("key"): s for s in answer.get("sessions") or []}
        for row in running:
            plan = _following().running_dispatch_ended(
                row,
                h.load(row["dispatch_id"]),
                sessions.get(row["session_key"]),
                grace_ms=self.startup_grace_ms,
                owner=h.owner,
                now=h.now(),
            )
            await h.apply(plan)

    async def retry_overloaded(self) -> None:
        """Spec §31.11: the retry goes to the gateway first, with an idempotency key derived
        from the dispatch and the attempt, and is recorded once accepted; a restart or a
        second daemon repeating the call gets the same turn."""
        from ocsched.adapters.gateway import GatewayError

        h = self.handlers
        for row in views.overloaded_labels(h.db()):
            retry = _following().overload_retry(row, grace_s=self.overload_grace_s, now=h.now())
            if retry is None:
                continue
            try:
                if retry.fresh:
                    await self._patch_spawn_depth(retry.session_key)
                lane = "subagent" if retry.fresh else "nested"
                await self._turn(retry.session_key, retry.message, retry.idempotency_key, lane)
            except GatewayError as error:
                log.warning(
                    "dispatch %s: overload retry %s failed: %s", row["label"], retry.attempt, error
                )
                continue
            plan = _following().overload_retried(
                row, h.load(row["dispatch_id"]), retry, owner=h.owner, now=h.now(), facts=h.facts
            )
            await h.apply(plan)

    async def _patch_spawn_depth(self, session_key: str) -> None:
        """`spawnDepth` needs `operator.admin`, which the daemon's connection does not ask
        for: a connection of its own, for this call only."""
        from ocsched.adapters.gateway import PATCH_ADMIN_SCOPES, GatewayClient

        settings = self.gateway().settings
        async with GatewayClient(settings, scopes=PATCH_ADMIN_SCOPES) as client:
            await client.sessions_patch(session_key, spawnDepth=1)

    async def _turn(self, session_key: str, message: str, key: str, lane: str) -> None:
        params = {
            "message": message,
            "sessionKey": session_key,
            "idempotencyKey": key,
            "deliver": False,
            "lane": lane,
        }
        await self.gateway().call("agent", params, timeout_s=15, resend_on_drop=True)
