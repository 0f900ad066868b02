"""Sub-agent dispatches (spec §31) as aggregates: one per `dispatch enqueue`.

A label names a line of work; each enqueue of it is a new aggregate, so nothing of an
earlier session leaks into the next (the anchor merges into the old ledger entry: quirk
Q12). The labels read model shows each label's newest dispatch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .dispatch_rules.auto_resolution import INTERRUPTED_SUMMARY, idle_threshold_ms
from .errors import DomainError


class Label(Aggregate):
    class Enqueued(Aggregate.Created):
        """`settings` holds what enqueue was told (agent, mode, model, thinking, origin,
        delivery target, channel and mode, timeouts, verify command, the task's first
        2000 characters); for `import-labels`, every field of the ledger's entry as well
        (status, summary, error, run id, completion, sha, times, retry counts) and
        `imported`."""

        label: str
        session_key: str
        settings: dict[str, Any]

    @event(Enqueued)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        label: str,
        session_key: str,
        settings: dict[str, Any],
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.label = label
        self.session_key = session_key
        self.settings = settings
        self.status = settings.get("status") or "running"  # an imported entry's, else running
        self.spawned_at = timestamp
        self.retries = settings.get("retry_count") or 0
        self.messages = 0

    class Spawned(Aggregate.Event):
        """The gateway accepted the turn that starts the session."""

        run_id: str

    @event(Spawned)
    def spawned(self, run_id: str, meta: EventMeta, timestamp: datetime) -> None:
        pass

    class MessageSent(Aggregate.Event):
        kind: str  # send | steer
        idempotency_key: str
        text: str

    @event(MessageSent)
    def _record_message(
        self, kind: str, idempotency_key: str, text: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.messages += 1

    class ActivityObserved(Aggregate.Event):
        updated_at: str | None
        tokens: int | None

    @event(ActivityObserved)
    def observed(
        self, updated_at: str | None, tokens: int | None, meta: EventMeta, timestamp: datetime
    ) -> None:
        pass

    class Done(Aggregate.Event):
        summary: str
        checklist: dict[str, Any] | None
        sha: str | None
        completion: dict[str, Any]
        forced: bool
        reason: str | None

    @event(Done)
    def _record_done(
        self,
        summary: str,
        checklist: dict[str, Any] | None,
        sha: str | None,
        completion: dict[str, Any],
        forced: bool,
        reason: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.status = "done"

    class Failed(Aggregate.Event):
        """The dispatch ended without `done`: `status` is error or interrupted."""

        status: str
        error: str | None
        summary: str

    @event(Failed)
    def _record_failed(
        self, status: str, error: str | None, summary: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.status = status

    class Verified(Aggregate.Event):
        """The `--verify-cmd` ran on a done dispatch; a failure turns it into an error."""

        passed: bool
        detail: str | None

    @event(Verified)
    def verified(self, passed: bool, detail: str | None, meta: EventMeta, timestamp) -> None:
        if not passed:
            self.status = "error"

    class Retried(Aggregate.Event):
        """Overload recovery (§31.11) started the task again, in the same session or a
        fresh one."""

        attempt: int
        session_key: str
        error: str

    @event(Retried)
    def _record_retried(
        self, attempt: int, session_key: str, error: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.retries = attempt
        self.session_key = session_key
        self.status = "running"

    # Commands

    def send(self, kind: str, idempotency_key: str, text: str, meta: EventMeta, at: datetime):
        self._record_message(
            kind=kind, idempotency_key=idempotency_key, text=text[:2000], meta=meta, timestamp=at
        )

    def done(
        self,
        summary: str,
        checklist: dict | None,
        sha: str | None,
        completion: dict,
        meta: EventMeta,
        at: datetime,
        *,
        forced: bool = False,
        reason: str | None = None,
    ) -> None:
        self._record_done(
            summary=summary,
            checklist=checklist,
            sha=sha,
            completion=completion,
            forced=forced,
            reason=reason,
            meta=meta,
            timestamp=at,
        )

    def fail(self, status: str, error: str | None, summary: str, meta: EventMeta, at: datetime):
        if status not in ("error", "interrupted"):
            raise DomainError(f"Not a failure status: {status}")
        if self.status != "running":
            raise DomainError(f"Dispatch {self.label} is already {self.status}")
        self._record_failed(status=status, error=error, summary=summary, meta=meta, timestamp=at)

    def retry(self, session_key: str, error: str, meta: EventMeta, at: datetime) -> None:
        if self.status != "error":
            raise DomainError(f"Dispatch {self.label} is {self.status}, not in error")
        self._record_retried(
            attempt=self.retries + 1, session_key=session_key, error=error, meta=meta, timestamp=at
        )


def resolution(
    *,
    spawned_ms: float,
    timeout_s: int | None,
    monitor_timeout_min: int | None,
    session: dict[str, Any] | None,
    now_ms: float,
    grace_ms: float,
) -> tuple[str, str | None, str] | None:
    """How a running dispatch ends, as (status, error, summary), when the gateway's view of
    its session says it has (spec §31.5–31.6); None while it may still be working. A
    session never seen within twice the grace is a spawn failure; one gone later, idle
    past max(timeout, 10 min), or past the monitor timeout was interrupted. Never `done`:
    only the agent says that."""
    age = now_ms - spawned_ms
    if age < grace_ms:
        return None
    if session is None:
        if age <= 2 * grace_ms:
            reason = "session never appeared in gateway"
            return "error", f"spawn-failure: {reason}", f"Auto-resolved as spawn failure: {reason}"
        reason = "session not found in sessions store or gateway API"
    else:
        updated = session.get("updatedAt")
        last = updated if isinstance(updated, (int, float)) else spawned_ms
        idle_ms = idle_threshold_ms(timeout_s)
        if now_ms - last >= idle_ms:
            reason = f"session idle {int((now_ms - last) // 60000)}min (completed)"
        elif age >= (monitor_timeout_min or 60) * 60_000:
            reason = f"monitor timeout of {monitor_timeout_min or 60}min reached"
        else:
            return None
    return "interrupted", None, INTERRUPTED_SUMMARY.format(reason=reason)
