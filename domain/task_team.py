"""The team adapter (spec §23.5): a team's tasks and mailbox, seen through its messages.

One aggregate per team (its id derived from the team id). Team messages are mapped onto
the team's tasks (a `task_id`, or a `task` message's own id, names a task; the first
message about a task creates it), a completion gate ties a task to a task group of its
members, and a team-aware ack is noted; each is an event that the `team_tasks` and
`team_mailbox_events` read models copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .errors import DomainError
from .run import RUN_NAMESPACE
from .task_group import check_members

TITLE_CHARS = 120


def team_aggregate_id(team_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"team/{team_id}"))


def gate_group_name(team_id: str, task_id: str) -> str:
    return f"team:{team_id}:task:{task_id}"


def check_gate(team_id: Any, task_id: Any, members: Any) -> None:
    if not team_id:
        raise DomainError("teamId is required")
    if not task_id:
        raise DomainError("taskId is required")
    if not isinstance(members, list) or not members:
        raise DomainError("expectedMembers must be a non-empty array")
    check_members(members, "expectedMembers")


def task_key(message: dict[str, Any]) -> str | None:
    """The task a team message is about: its `task_id`, or its own id for a `task`."""
    if message.get("task_id"):
        return message["task_id"]
    if message.get("kind") == "task":
        return message["id"]
    return None


class Team(Aggregate):
    class Created(Aggregate.Created):
        team_id: str

    @event(Created)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        team_id: str,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.team_id = team_id
        self.tasks: dict[str, dict[str, Any]] = {}
        """task id -> member_id, source_message_id"""
        self.waiting: dict[str, str] = {}
        """task id -> the task group its gate waits for"""
        self.mapped: set[str] = set()

    class MessageMapped(Aggregate.Event):
        """`event_type`: task_created, task_message or mailbox. `member_id` and
        `source_message_id` are the task's values after the message (None: no task)."""

        team_id: str
        message_id: str
        task_id: str | None
        event_type: str
        message_member_id: str | None
        member_id: str | None
        source_message_id: str | None
        title: str | None
        payload: dict[str, Any]

    @event(MessageMapped)
    def _record_mapped(
        self,
        team_id: str,
        message_id: str,
        task_id: str | None,
        event_type: str,
        message_member_id: str | None,
        member_id: str | None,
        source_message_id: str | None,
        title: str | None,
        payload: dict[str, Any],
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.mapped.add(message_id)
        if task_id is not None:
            self.tasks[task_id] = {"member_id": member_id, "source_message_id": source_message_id}

    class GateOpened(Aggregate.Event):
        team_id: str
        task_id: str
        tracker_id: str
        expected_members: list[str]
        timeout_s: int
        new_task: bool

    @event(GateOpened)
    def _record_gate(
        self,
        team_id: str,
        task_id: str,
        tracker_id: str,
        expected_members: list[str],
        timeout_s: int,
        new_task: bool,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.tasks.setdefault(task_id, {"member_id": None, "source_message_id": None})
        self.waiting[task_id] = tracker_id

    class GateClosed(Aggregate.Event):
        """The gate's task group ended: `status` is the group's (the gate passes when it
        is `completed`), or None when the group was missing (the gate fails)."""

        team_id: str
        task_id: str
        tracker_id: str
        status: str | None
        summary: str | None

    @event(GateClosed)
    def _record_closed(
        self,
        team_id: str,
        task_id: str,
        tracker_id: str,
        status: str | None,
        summary: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.waiting.pop(task_id, None)

    class MessageAcked(Aggregate.Event):
        """`team ack`: the message's ack is recorded on the message; this notes it for
        the team's mailbox."""

        team_id: str
        message_id: str
        member_id: str | None
        task_id: str | None
        actor: str
        detail: str | None

    @event(MessageAcked)
    def _record_ack(
        self,
        team_id: str,
        message_id: str,
        member_id: str | None,
        task_id: str | None,
        actor: str,
        detail: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        pass

    def map_message(self, message: dict[str, Any], meta: EventMeta, at: datetime) -> bool:
        """Map one team message (a messages row); False when it was mapped before."""
        if message["id"] in self.mapped:
            return False
        task_id = task_key(message)
        member, source, title, event_type = None, None, None, "mailbox"
        if task_id is not None:
            known = self.tasks.get(task_id)
            if known is None:
                event_type = "task_created"
                member, source = message.get("member_id"), message["id"]
                body = message.get("body") or ""
                title = message.get("subject") or body[:TITLE_CHARS] or "Team task"
            else:
                event_type = "task_message"
                member = known["member_id"] or message.get("member_id")
                source = known["source_message_id"] or message["id"]
        payload = {
            "kind": message.get("kind"),
            "from_agent": message.get("from_agent"),
            "to_agent": message.get("to_agent"),
            "subject": message.get("subject"),
            "status": message.get("status"),
            "priority": message.get("priority"),
            "ack_required": bool(message.get("ack_required")),
        }
        self._record_mapped(
            team_id=self.team_id,
            message_id=message["id"],
            task_id=task_id,
            event_type=event_type,
            message_member_id=message.get("member_id"),
            member_id=member,
            source_message_id=source,
            title=title,
            payload=payload,
            meta=meta,
            timestamp=at,
        )
        return True

    def open_gate(
        self,
        task_id: str,
        tracker_id: str,
        members: list[str],
        timeout_s: int,
        meta: EventMeta,
        at: datetime,
    ) -> None:
        self._record_gate(
            team_id=self.team_id,
            task_id=task_id,
            tracker_id=tracker_id,
            expected_members=members,
            timeout_s=timeout_s,
            new_task=task_id not in self.tasks,
            meta=meta,
            timestamp=at,
        )

    def close_gate(
        self,
        task_id: str,
        tracker_id: str,
        group_status: str | None,
        summary: str | None,
        meta: EventMeta,
        at: datetime,
    ) -> None:
        """The gate's task group `tracker_id` ended (`group_status`; None: it is missing).
        A group the gate no longer waits for (the task was gated again) changes nothing."""
        if self.waiting.get(task_id) != tracker_id:
            return
        self._record_closed(
            team_id=self.team_id,
            task_id=task_id,
            tracker_id=tracker_id,
            status=group_status,
            summary=summary,
            meta=meta,
            timestamp=at,
        )

    def note_ack(
        self, message: dict[str, Any], actor: str, detail: str | None, meta: EventMeta, at: datetime
    ) -> None:
        self._record_ack(
            team_id=self.team_id,
            message_id=message["id"],
            member_id=message.get("member_id"),
            task_id=task_key(message),
            actor=actor,
            detail=detail,
            meta=meta,
            timestamp=at,
        )


def team_for(existing: Team | None, team_id: str, meta: EventMeta, at: datetime) -> Team:
    """The team's aggregate, begun when it has none yet."""
    if existing is not None:
        return existing
    return Team(id=team_aggregate_id(team_id), team_id=team_id, meta=meta, timestamp=at)


def map_messages(
    rows: list[dict[str, Any]],
    existing: Callable[[str], Team | None],
    message_of: Callable[[str], Any],
    meta: EventMeta,
    at: datetime,
) -> tuple[list[Any], int]:
    """Map team messages (messages rows, oldest first) onto their teams, each message
    marked mapped (`Message.map_to_team`); the aggregates to save together, and how many
    messages were mapped. `existing(team_id)` loads a team, `message_of(id)` a message."""
    teams: dict[str, Team] = {}
    messages = []
    for row in rows:
        team_id = row["team_id"]
        if team_id not in teams:
            teams[team_id] = team_for(existing(team_id), team_id, meta, at)
        if teams[team_id].map_message(row, meta, at):
            message = message_of(row["id"])
            message.map_to_team(meta, at)
            messages.append(message)
    changed = [team for team in teams.values() if team.pending_events]
    return [*changed, *messages], len(messages)
