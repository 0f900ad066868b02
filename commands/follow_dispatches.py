"""The reactor's part in sub-agent dispatches (spec §31.10–31.11): it follows every
running dispatch instead of a watcher job per label. Mixed into `Reactor`, whose writer,
gateway client, read models and deliveries it uses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ocsched.adapters import shell
from ocsched.adapters.gateway import GatewayError
from ocsched.domain.dispatch_rules import (
    RETRY_MESSAGE_FRESH,
    RETRY_MESSAGE_REUSE,
    is_overload_error,
    recovery_decision,
    recovery_notice,
    task_message,
)
from ocsched.domain.label import Label, resolution
from ocsched.domain.run import RUN_NAMESPACE
from ocsched.projections import views

from .reactor_settings import (
    VERIFY_TIMEOUT_MS,
    log,
    overload_grace_seconds,
)


class DispatchFollowing:
    async def follow_dispatches(self) -> None:
        """Announce new dispatches ("starting…"), deliver the results of finished ones, and
        resolve running ones whose session went idle or ran past its monitor timeout."""
        await self.follow_dispatches_quickly()
        await self._resolve_idle_dispatches(datetime.now(UTC))
        await self.recover_overloaded_dispatches()

    async def _dispatch_delivery(self, row: dict, purpose: str, text: str, now) -> None:
        job_like = {
            "id": row["label"],
            "delivery_channel": row["deliver_channel"],
            "delivery_to": row["deliver_to"],
        }
        meta = self.meta(f"label/{row['dispatch_id']}")
        await self._save_quietly(
            *self._delivery(row["dispatch_id"], job_like, purpose, text, meta, now)
        )

    async def follow_dispatches_quickly(self) -> None:
        """After others' events: deliver new results and notices (no gateway polling)."""
        now = datetime.now(UTC)
        for row in views.labels_to_verify(self.db()):
            await self._verify(row)
        for row in views.labels_awaiting_delivery(self.db(), "dispatch-start"):
            text = f"🌶️ *{self.brand}* [{row['label']}] starting..."
            await self._dispatch_delivery(row, "dispatch-start", text, now)
        for row in views.labels_awaiting_delivery(self.db(), "dispatch-result"):
            await self._dispatch_delivery(row, "dispatch-result", dispatch_result_text(row), now)

    async def _verify(self, row: dict) -> None:
        """Run a done dispatch's `--verify-cmd` (shell, 60 s) before its result goes out."""
        if row["dispatch_id"] in self.verifying:
            return
        self.verifying.add(row["dispatch_id"])
        try:
            try:
                result = await shell.run_shell(row["verify_cmd"], timeout_ms=VERIFY_TIMEOUT_MS)
                passed = result.returncode == 0 and not result.timed_out
                stderr = result.stderr.decode("utf-8", "replace").strip()
                detail = None if passed else stderr or f"exit code {result.returncode}"
            except OSError as error:
                passed, detail = False, str(error)
            dispatch: Label = self.ctx.log.repository.get(row["dispatch_id"])
            if dispatch.status == "done":
                meta = self.meta(f"verify/{row['dispatch_id']}")
                dispatch.verified(
                    passed=passed, detail=detail, meta=meta, timestamp=datetime.now(UTC)
                )
                await self._save_quietly(dispatch)
        finally:
            self.verifying.discard(row["dispatch_id"])

    async def _resolve_idle_dispatches(self, now: datetime) -> None:
        running = views.running_labels(self.db())
        if not running:
            return
        try:
            answer = await self.gateway().sessions_list(activeMinutes=1440)
        except GatewayError:
            return  # the gateway cannot tell: decide nothing
        sessions = {s.get("key"): s for s in answer.get("sessions") or []}
        now_ms = now.timestamp() * 1000
        for row in running:
            if await self._overloaded(row, sessions.get(row["session_key"]), now):
                continue
            ending = resolution(
                spawned_ms=datetime.fromisoformat(row["spawned_at"]).timestamp() * 1000,
                timeout_s=row["timeout_seconds"],
                monitor_timeout_min=row["monitor_timeout_min"],
                session=sessions.get(row["session_key"]),
                now_ms=now_ms,
                grace_ms=self.dispatch_grace_ms,
            )
            if ending is None:
                continue
            dispatch: Label = self.ctx.log.repository.get(row["dispatch_id"])
            if dispatch.status != "running":
                continue
            dispatch.fail(*ending, self.meta(f"follow/{row['label']}"), now)
            await self._save_quietly(dispatch)

    async def _overloaded(self, row: dict, session: dict | None, now: datetime) -> bool:
        """A session whose last turn failed with an overload (529) error after the
        dispatch's last change: the dispatch ends in error, for the recovery to retry."""
        if not session or session.get("status") != "failed":
            return False
        error = session.get("lastRunError") or ""
        ended = session.get("endedAt") or session.get("updatedAt") or 0
        changed_ms = datetime.fromisoformat(row["updated_at"]).timestamp() * 1000
        if not is_overload_error(error) or ended <= changed_ms:
            return False
        dispatch: Label = self.ctx.log.repository.get(row["dispatch_id"])
        if dispatch.status != "running":
            return False
        meta = self.meta(f"follow/{row['label']}")
        dispatch.fail(
            "error", f"FailoverError (529): {error}", f"Auto-resolved as error: {error}", meta, now
        )
        await self._save_quietly(dispatch)
        return True

    async def recover_overloaded_dispatches(self) -> None:
        """Spec §31.11 as a policy: an overload error younger than an hour and older than
        the grace is retried, in the same session first, then in a fresh one, at most 3
        times. The gateway call's idempotency key is derived from the dispatch and the
        attempt, and the retry is an event: a restart or a second daemon never retries the
        same error twice."""
        now = datetime.now(UTC)
        for row in views.overloaded_labels(self.db()):
            decision = recovery_decision(
                error_text=row["error"],
                error_at_ms=int(datetime.fromisoformat(row["updated_at"]).timestamp() * 1000),
                now_ms=int(now.timestamp() * 1000),
                retries_so_far=row["retry_count"],
                session_reusable=(row["retry_count"] or 0) == 0,
                grace_ms=int(overload_grace_seconds() * 1000),
            )
            if decision is None:
                continue
            attempt = (row["retry_count"] or 0) + 1
            key = str(uuid.uuid5(RUN_NAMESPACE, f"dispatch-retry/{row['dispatch_id']}/{attempt}"))
            session_key = row["session_key"]
            try:
                if decision == "retry-reuse":
                    await self._turn(session_key, RETRY_MESSAGE_REUSE, key, "nested")
                else:
                    session_key = f"agent:{row['agent'] or 'main'}:subagent:{key}"
                    await self.gateway().sessions_patch(session_key, spawnDepth=1)
                    prompt = f"{RETRY_MESSAGE_FRESH}\n\n{row['task_prompt'] or ''}"
                    message = task_message(
                        label=row["label"],
                        prompt=prompt,
                        target=row["deliver_to"],
                        channel=row["deliver_channel"],
                        origin=row["origin"],
                    )
                    await self._turn(session_key, message, key, "subagent")
            except GatewayError as error:
                log(f"dispatch {row['label']}: overload retry {attempt} failed: {error}")
                continue
            dispatch: Label = self.ctx.log.repository.get(row["dispatch_id"])
            if dispatch.status != "error":
                continue
            meta = self.meta(f"overload-retry/{row['dispatch_id']}/{attempt}")
            dispatch.retry(session_key, row["error"] or "", meta, now)
            method = "send" if decision == "retry-reuse" else "fresh"
            notice = recovery_notice(row["label"], attempt, method)
            deliveries = []
            if row["deliver_to"]:
                job_like = {
                    "id": row["label"],
                    "delivery_channel": row["deliver_channel"],
                    "delivery_to": row["deliver_to"],
                }
                deliveries = self._delivery(
                    row["dispatch_id"], job_like, f"dispatch-retry-{attempt}", notice, meta, now
                )
            if await self._save_quietly(dispatch, *deliveries):
                log(notice)

    async def _turn(self, session_key: str, message: str, key: str, lane: str) -> None:
        params = {
            "message": message,
            "sessionKey": session_key,
            "idempotencyKey": key,
            "deliver": False,
            "lane": lane,
        }
        await self.gateway().call("agent", params, timeout_s=15, resend_on_drop=True)


def dispatch_result_text(row: dict) -> str:
    """What a finished dispatch delivers, in spec §31.9's order (completion, summary), with
    a fixed explanation when nothing usable is left."""
    import json

    from ocsched.domain.dispatch_rules import resolve_delivery_text

    if (row["error"] or "").startswith("verify-cmd failed"):
        return (
            f"🌶️ *dispatch* [{row['label']}] ⚠️ VERIFICATION FAILED\n\n"
            f"Command: {row['verify_cmd']}\n{row['error']}"
        )
    completion = json.loads(row["completion"]) if row["completion"] else None
    text = resolve_delivery_text(
        completion=completion, last_reply=None, fallback_summary=row["summary"]
    )
    ending = "done" if row["status"] == "done" else row["status"]
    mark = "✅" if row["status"] == "done" else "⚠️"
    return f"{mark} [{row['label']}] {ending}\n\n{text or row['summary'] or ''}".rstrip()
