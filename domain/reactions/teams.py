"""Task groups as decisions (spec §23.4): the dead-man switch and the completion pass.

At a member's deadline the daemon first asks the gateway about members with a registered
session (`sessions_to_ask`); a session active in the last 10 minutes is a heartbeat, any
other silent member is dead. A group whose members have all ended completes, and its
summary is delivered to its target through a `Delivery` (the anchor sends it once,
directly, and never for a group that ended in the same pass as its last death: quirk of
§23.4, not copied). A team gate waiting for the group passes or fails with it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.task_group import TaskGroup, summary_text
from ocsched.domain.task_team import team_aggregate_id

from .deliveries import new_delivery
from .facts import Facts
from .plan import Plan, reactor_meta

SUMMARY_PURPOSE = "task-summary"
ACTIVE_SESSION_MINUTES = 10


def sessions_to_ask(group: TaskGroup, now: datetime) -> list[str]:
    """Session keys of the members that die now unless the gateway has seen them."""
    return [m.session_key for m in group.overdue(now) if m.session_key]


def dead_man(
    group: TaskGroup,
    *,
    active_sessions: Collection[str],
    owner: str,
    now: datetime,
    facts: Facts,
) -> Plan:
    """Members past their deadline die, unless their session is active; then the group
    completes when every member has ended."""
    meta = reactor_meta(owner, f"tracker/{group.id}")
    plan = Plan()
    dead = []
    for member in group.overdue(now):
        if member.session_key and member.session_key in active_sessions:
            group.seen_alive(member.label, meta, now)
        else:
            dead.append(member.label)
    if dead:
        group.mark_dead(dead, meta, now)
        plan.notes.append(f"task group {group.name} ({group.id}): dead: {', '.join(dead)}")
    ended = end_group(group, meta=meta, now=now, facts=facts)
    if group.pending_events:
        plan.records.append(group)
    plan.records.extend(ended)
    if ended or group.status != "active":
        plan.notes.append(f"task group {group.name} ({group.id}) {group.status}")
    return plan


def end_group(group: TaskGroup, *, meta: EventMeta, now: datetime, facts: Facts) -> list[Any]:
    """Complete the group if every member has ended; the other aggregates that changes
    (its summary's delivery, its team gate), for saving with it."""
    if not group.complete(meta, now):
        return []
    records: list[Any] = []
    if group.delivery_channel and group.delivery_to:
        target = {
            "id": group.id,
            "delivery_channel": group.delivery_channel,
            "delivery_to": group.delivery_to,
        }
        text = summary_text(group.name, group.status, group.summary)
        records += new_delivery(
            group.id, target, SUMMARY_PURPOSE, text, meta=meta, now=now, facts=facts
        )
    if group.team_id and group.task_id:
        team = facts.load(team_aggregate_id(group.team_id))
        team.close_gate(group.task_id, group.id, group.status, group.summary, meta, now)
        if team.pending_events:
            records.append(team)
    return records
