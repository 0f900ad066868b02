"""The task tracker (spec §23): a dead-man switch for a team of sub-agents.

A task group expects some agents (members, by label); each reports `running`, `completed`
or `failed` (`tasks heartbeat`), or has its session registered so the daemon can see it
alive in the gateway. A member that stays silent past the group's timeout is dead; once
every member has ended, the group completes (or fails) with a summary, which is delivered
to the group's target. Heartbeats, deaths and the completion are events of the group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError, unknown_field

DEFAULT_TIMEOUT_S = 600
MAX_TIMEOUT_S = 1_000_000_000
"""31 years: beyond it a deadline would not fit a date."""
DEFAULT_CREATED_BY = "main"
HEARTBEAT_GRACE_MAX_S = 300
"""A heartbeat keeps a member alive for min(timeout, 5 min) past the group's timeout."""
DEAD_ERROR = "Timed out (dead-man switch)"
LIVE = ("pending", "running")
TERMINAL = ("completed", "failed", "dead")
HEARTBEAT_STATUSES = ("running", "completed", "failed")
SPEC_KEYS = ("name", "expectedAgents", "timeoutS", "createdBy", "deliveryChannel", "deliveryTo")
CREATE_USAGE = 'Invalid JSON. Usage: tasks create \'{"name":"..."}\''


@dataclass(frozen=True)
class TaskGroupSpec:
    """What `tasks create` takes (camelCase keys, spec §5.6), checked."""

    name: str
    expected_agents: list[str]
    timeout_s: int = DEFAULT_TIMEOUT_S
    created_by: str = DEFAULT_CREATED_BY
    delivery_channel: str | None = None
    delivery_to: str | None = None


def parse_spec(spec: Any) -> TaskGroupSpec:
    """A `tasks create` object, checked; the anchor's message where it has one."""
    if not isinstance(spec, dict):
        raise DomainError(CREATE_USAGE)
    for key in spec:
        if key not in SPEC_KEYS:
            raise DomainError(unknown_field(str(key), SPEC_KEYS))
    agents = spec.get("expectedAgents")
    if not isinstance(agents, list) or not agents:
        raise DomainError("expectedAgents must be a non-empty array")
    check_members(agents, "expectedAgents")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DomainError("name is required")
    timeout = spec.get("timeoutS", DEFAULT_TIMEOUT_S)
    if type(timeout) is not int or not 1 <= timeout <= MAX_TIMEOUT_S:
        raise DomainError(f"timeoutS must be a whole number of seconds from 1 to {MAX_TIMEOUT_S}")
    texts = {key: spec.get(key) for key in ("createdBy", "deliveryChannel", "deliveryTo")}
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise DomainError(f"{key} must be text")
    return TaskGroupSpec(
        name=name,
        expected_agents=list(agents),
        timeout_s=timeout,
        created_by=texts["createdBy"] or DEFAULT_CREATED_BY,
        delivery_channel=texts["deliveryChannel"] or None,
        delivery_to=texts["deliveryTo"] or None,
    )


def check_members(labels: list[Any], what: str) -> None:
    if not all(isinstance(label, str) and label for label in labels):
        raise DomainError(f"{what} must hold non-empty labels (text)")
    for label in labels:
        if labels.count(label) > 1:
            raise DomainError(f"{what} names {label} twice")


@dataclass
class Member:
    """One expected agent of a group (a row of the anchor's `task_tracker_agents`)."""

    label: str
    status: str = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_message: str | None = None
    error: str | None = None
    session_key: str | None = None
    last_heartbeat: datetime | None = None

    def when_seen(self, at: datetime) -> tuple[str, datetime]:
        """Status and start after activity at `at`: a pending member runs from then
        (spec §23.2's touch)."""
        status = "running" if self.status == "pending" else self.status
        return status, self.started_at or at

    def seen(self, status: str, started_at: datetime, at: datetime) -> None:
        self.status, self.started_at, self.last_heartbeat = status, started_at, at

    def end(self, status: str, at: datetime, **text: str | None) -> None:
        """Completed (with its `exit_message`), failed or dead (with its `error`)."""
        self.status, self.finished_at = status, at
        for name, value in text.items():
            setattr(self, name, value)


class TaskGroup(Aggregate):
    class Created(Aggregate.Created):
        """`tasks create` (or `team gate`, then with its team and task)."""

        name: str
        expected_agents: list[str]
        timeout_s: int
        created_by: str
        delivery_channel: str | None
        delivery_to: str | None
        team_id: str | None
        task_id: str | None

    @event(Created)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        name: str,
        expected_agents: list[str],
        timeout_s: int,
        created_by: str,
        delivery_channel: str | None,
        delivery_to: str | None,
        team_id: str | None,
        task_id: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.delivery_channel, self.delivery_to = delivery_channel, delivery_to
        self.team_id, self.task_id = team_id, task_id
        self.created_at = timestamp
        self.members = {label: Member(label) for label in expected_agents}
        self.status = "active"
        self.summary: str | None = None

    class MemberStarted(Aggregate.Event):
        """`tasks heartbeat <id> <label> running`."""

        label: str

    @event(MemberStarted)
    def _record_started(self, label: str, meta: EventMeta, timestamp: datetime) -> None:
        member = self.members[label]
        member.status = "running"
        member.started_at = member.last_heartbeat = timestamp

    class SessionRegistered(Aggregate.Event):
        """`tasks register-session`: the member's OpenClaw session, which the daemon
        asks the gateway about before declaring the member dead. `status` and
        `started_at` are the member's after it (a pending member runs from now)."""

        label: str
        session_key: str
        status: str
        started_at: datetime

    @event(SessionRegistered)
    def _record_session(
        self,
        label: str,
        session_key: str,
        status: str,
        started_at: datetime,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.members[label].session_key = session_key
        self.members[label].seen(status, started_at, timestamp)

    class MemberSeen(Aggregate.Event):
        """The daemon found the member's registered session active in the gateway (spec
        §23.4's auto-heartbeat); `status` and `started_at` as for `SessionRegistered`."""

        label: str
        status: str
        started_at: datetime

    @event(MemberSeen)
    def _record_seen(
        self, label: str, status: str, started_at: datetime, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.members[label].seen(status, started_at, timestamp)

    class MemberCompleted(Aggregate.Event):
        label: str
        message: str | None

    @event(MemberCompleted)
    def _record_completed(
        self, label: str, message: str | None, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.members[label].end("completed", timestamp, exit_message=message)

    class MemberFailed(Aggregate.Event):
        label: str
        error: str

    @event(MemberFailed)
    def _record_failed(self, label: str, error: str, meta: EventMeta, timestamp: datetime) -> None:
        self.members[label].end("failed", timestamp, error=error)

    class MembersDead(Aggregate.Event):
        """The dead-man switch: these members were silent past their deadline."""

        labels: list[str]
        error: str

    @event(MembersDead)
    def _record_dead(
        self, labels: list[str], error: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        for label in labels:
            self.members[label].end("dead", timestamp, error=error)

    class Completed(Aggregate.Event):
        """Every member ended: `completed` when all completed, else `failed`."""

        status: str
        summary: str

    @event(Completed)
    def _record_completed_group(
        self, status: str, summary: str, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.status, self.summary = status, summary

    # Commands (an unknown label changes nothing, as in the anchor: False)

    def heartbeat(
        self, label: str, status: str, message: str | None, meta: EventMeta, at: datetime
    ) -> bool:
        """A member reports (spec §23.2); no guard on its previous state."""
        if status not in HEARTBEAT_STATUSES:
            raise DomainError(
                f'Unknown status: "{status}". Valid values: running | completed | failed'
            )
        if label not in self.members:
            return False
        if status == "running":
            self._record_started(label=label, meta=meta, timestamp=at)
        elif status == "completed":
            self._record_completed(label=label, message=message, meta=meta, timestamp=at)
        else:
            self._record_failed(label=label, error=message or "failed", meta=meta, timestamp=at)
        return True

    def register_session(self, label: str, session_key: str, meta: EventMeta, at: datetime) -> bool:
        member = self.members.get(label)
        if member is None:
            return False
        status, started_at = member.when_seen(at)
        self._record_session(
            label=label,
            session_key=session_key,
            status=status,
            started_at=started_at,
            meta=meta,
            timestamp=at,
        )
        return True

    def seen_alive(self, label: str, meta: EventMeta, at: datetime) -> None:
        status, started = self.members[label].when_seen(at)
        self._record_seen(label=label, status=status, started_at=started, meta=meta, timestamp=at)

    def mark_dead(self, labels: list[str], meta: EventMeta, at: datetime) -> None:
        if labels:
            self._record_dead(labels=labels, error=DEAD_ERROR, meta=meta, timestamp=at)

    def complete(self, meta: EventMeta, at: datetime) -> bool:
        """Record the group's end once every member has ended (spec §23.4 step 3)."""
        if self.status != "active" or not self.members:
            return False
        members = list(self.members.values())
        if any(m.status not in TERMINAL for m in members):
            return False
        status = "completed" if all(m.status == "completed" for m in members) else "failed"
        self._record_completed_group(
            status=status, summary=summary(members), meta=meta, timestamp=at
        )
        return True

    # Rules

    def deadline(self, member: Member) -> datetime:
        """When a silent member dies: the group's timeout, or later when a heartbeat came
        within min(timeout, 5 min) of it (spec §23.4 step 2)."""
        deadline = self.created_at + timedelta(seconds=self.timeout_s)
        if member.last_heartbeat is not None:
            grace = min(self.timeout_s, HEARTBEAT_GRACE_MAX_S)
            deadline = max(deadline, member.last_heartbeat + timedelta(seconds=grace))
        return deadline

    def overdue(self, now: datetime) -> list[Member]:
        """Live members of an active group past their deadline, in row order."""
        if self.status != "active":
            return []
        return [m for m in self.members.values() if m.status in LIVE and self.deadline(m) <= now]

    def next_deadline(self) -> datetime | None:
        """When the daemon must look at this group next: at once when every member has
        ended (completion), else the earliest deadline of a live member; None when the
        group has ended."""
        if self.status != "active":
            return None
        live = [m for m in self.members.values() if m.status in LIVE]
        if not live:
            return self.created_at
        return min(self.deadline(m) for m in live)


def summary(members: list[Member]) -> str:
    """One line per ended member, in the order they were expected (spec §23.4 step 3)."""
    lines = []
    for m in members:
        if m.status == "completed":
            lines.append(f"[ok] {m.label}: {m.exit_message or 'done'}")
        elif m.status == "failed":
            lines.append(f"[FAILED] {m.label}: {m.error or 'failed'}")
        else:
            lines.append(f"[DEAD] {m.label}: timed out")
    return "\n".join(lines)


def summary_text(name: str, status: str, text: str | None) -> str:
    """What the group's target is sent when it ends."""
    tag = "[ok]" if status == "completed" else "[FAILED]"
    return f'{tag} Task group "{name}" {status}\n\n{text or ""}'


def new_task_group(
    group_id: str,
    spec: TaskGroupSpec,
    *,
    team_id: str | None = None,
    task_id: str | None = None,
    meta: EventMeta,
    at: datetime,
) -> TaskGroup:
    return TaskGroup(
        id=group_id,
        name=spec.name,
        expected_agents=spec.expected_agents,
        timeout_s=spec.timeout_s,
        created_by=spec.created_by,
        delivery_channel=spec.delivery_channel,
        delivery_to=spec.delivery_to,
        team_id=team_id,
        task_id=task_id,
        meta=meta,
        timestamp=at,
    )
