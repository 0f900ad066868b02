"""The task tracker's pass (spec §23.4–23.5): team messages mapped onto team tasks, and
the dead-man switch and completion of task groups, on a timer.

The pass runs when the daemon starts, when another process recorded something (a group
created, a heartbeat, a team message: `wake`), and at the earliest deadline of a live
member of an active group; nothing is polled. A member with a registered session is
looked for in the gateway only at its deadline. Handlers only; the decisions are in
`domain/reactions/teams.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from ocsched.domain.agent import MAIN_AGENT, agent_aggregate_id, register
from ocsched.domain.reactions import teams
from ocsched.domain.reactions.plan import Plan, reactor_meta
from ocsched.domain.task_group import TaskGroup
from ocsched.domain.task_team import Team, map_messages, team_aggregate_id
from ocsched.projections import tasks

from .handlers import Handlers

log = logging.getLogger("ocsched")

RETRY_S = 1.0
"""After a pass that failed, or a save that did not land."""
LONGEST_WAIT_S = 300.0
"""A safety net: the pass runs at least this often."""
MAP_LIMIT = 200


class TeamPass:
    def __init__(
        self, handlers: Handlers, *, gateway: Callable[[], Any], stopping: asyncio.Event
    ) -> None:
        self.handlers = handlers
        self.gateway = gateway
        self.stopping = stopping
        self.changed = asyncio.Event()

    def wake(self) -> None:
        """Something was recorded by another process: look again."""
        self.changed.set()

    async def run(self) -> None:
        """Register the main agent, then pass at each change and each deadline."""
        try:
            await self.register_main()
        except Exception as error:  # noqa: BLE001 - the registry must not stop the daemon
            log.error("registering agent main: %s: %s", type(error).__name__, error)
        while not self.stopping.is_set():
            self.changed.clear()
            try:
                wait = await self.pass_once()
            except Exception as error:  # noqa: BLE001 - a failed pass must not stop the daemon
                log.error("task tracker pass: %s: %s", type(error).__name__, error)
                wait = RETRY_S
            await self._sleep(min(wait, LONGEST_WAIT_S))

    async def _sleep(self, seconds: float) -> None:
        changed = asyncio.ensure_future(self.changed.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait(
                {changed, stopping}, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (changed, stopping):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter

    async def register_main(self) -> None:
        """Spec §22: the daemon registers `main` (Main Agent, idle, every capability);
        recorded when it is missing or differs."""
        h = self.handlers
        try:
            agent = h.load(agent_aggregate_id(MAIN_AGENT))
        except AggregateNotFoundError:
            agent = None
        wanted = ("Main Agent", "idle", ["*"])
        if agent is not None and (agent.name, agent.status, agent.capabilities) == wanted:
            return
        meta = reactor_meta(h.owner, f"start/{h.owner}")
        record = register(
            agent,
            MAIN_AGENT,
            name="Main Agent",
            capabilities=["*"],
            meta=meta,
            at=h.now(),
        )
        await h.apply(Plan([record]))

    async def pass_once(self) -> float:
        """Map new team messages, then decide every group whose deadline has come;
        returns seconds until the next deadline."""
        h = self.handlers
        await h.writer.settled()  # the read models include this daemon's own decisions
        mapped = await self.map_team_messages()
        now = h.now()
        next_due: datetime | None = None
        for row in tasks.active_groups(h.db()):
            try:
                group: TaskGroup = h.load(row["id"])
                due = group.next_deadline()
                if due is not None and due <= now:
                    due = await self._decide(group, now)
            except Exception as error:  # noqa: BLE001 - one group must not stop the others
                log.error("task group %s: %s: %s", row["id"], type(error).__name__, error)
                due = now + timedelta(seconds=RETRY_S)
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        wait = LONGEST_WAIT_S if next_due is None else (next_due - h.now()).total_seconds()
        return wait if mapped is not None else min(wait, RETRY_S)

    async def _decide(self, group: TaskGroup, now: datetime) -> datetime | None:
        h = self.handlers
        asked = teams.sessions_to_ask(group, now)
        active = await self.active_sessions() if asked else set()
        plan = teams.dead_man(group, active_sessions=active, owner=h.owner, now=now, facts=h.facts)
        if plan.records and not await h.apply(plan):
            return h.now() + timedelta(seconds=RETRY_S)  # look again then
        return group.next_deadline()

    async def active_sessions(self) -> set[str]:
        """Keys of sessions active in the last 10 minutes (spec §23.4's auto-heartbeat);
        none when the gateway does not answer, as in the anchor."""
        try:
            answer = await self.gateway().sessions_list(
                activeMinutes=teams.ACTIVE_SESSION_MINUTES, limit=200
            )
        except Exception as error:  # noqa: BLE001 - the gateway's failures are many
            log.warning("task tracker: listing sessions failed: %s", error)
            return set()
        sessions = answer.get("sessions") if isinstance(answer, dict) else None
        return {
            str(s.get("key") or s.get("sessionKey"))
            for s in sessions or []
            if isinstance(s, dict) and (s.get("key") or s.get("sessionKey"))
        }

    async def map_team_messages(self) -> int | None:
        """Spec §23.5: team messages not yet mapped, onto their teams' tasks; how many, or
        None when the save failed (another process mapped some first)."""
        h = self.handlers
        rows = tasks.unmapped_team_messages(h.db(), MAP_LIMIT)
        if not rows:
            return 0
        records, mapped = map_messages(
            rows, self._team, h.load, reactor_meta(h.owner, "team-map"), h.now()
        )
        if records and not await h.apply(Plan(records)):
            return None  # (not saved: the next pass maps them)
        return mapped

    def _team(self, team_id: str) -> Team | None:
        try:
            return self.handlers.load(team_aggregate_id(team_id))
        except AggregateNotFoundError:
            return None
