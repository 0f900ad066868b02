"""The task tracker's pass in a real daemon (spec §23.4): the dead-man switch fires at the
deadline (a timer, not a poll), a session the gateway shows active is a heartbeat, and
the summary reaches the chat through the fake gateway."""

from __future__ import annotations

import asyncio
import time

from ocsched.adapters.settings import Settings
from ocsched.commands import agents, tasks
from ocsched.commands.context import Context

from .conftest import wait_until


def context(scheduler) -> Context:
    return Context(settings=Settings.from_environment(scheduler.env), actor="tester")


def status(scheduler, group_id: str) -> dict:
    ctx = context(scheduler)
    try:
        return tasks.group_status(ctx, group_id)
    finally:
        ctx.close()


def test_a_silent_member_dies_at_the_deadline_and_the_summary_is_sent(scheduler, daemons, gateway):
    ctx = context(scheduler)
    group = tasks.create_group(
        ctx,
        {
            "name": "ship",
            "expectedAgents": ["writer", "reviewer"],
            "timeoutS": 2,
            "deliveryChannel": "telegram",
            "deliveryTo": "123",
        },
    )
    tasks.heartbeat(ctx, group["id"], "writer", "completed", "written")
    ctx.close()
    created = time.monotonic()
    daemons.start()
    (sent,) = wait_until(gateway.messages_sent, what="the summary")
    assert time.monotonic() - created >= 1.5  # not before the deadline
    assert (sent["channel"], sent["target"]) == ("telegram", "123")
    assert sent["message"] == (
        '[FAILED] Task group "ship" failed\n\n[ok] writer: written\n[DEAD] reviewer: timed out'
    )
    view = status(scheduler, group["id"])
    assert view["status"] == "failed"
    assert [a["status"] for a in view["agents"]] == ["dead", "completed"]
    assert view["agents"][0]["error"] == "Timed out (dead-man switch)"


def test_the_daemon_registers_main_and_completes_a_group_as_soon_as_it_ends(
    scheduler, daemons, gateway
):
    daemons.start()
    ctx = context(scheduler)
    main = wait_until(lambda: agents.get_agent(ctx, "main"), what="agent main")
    assert (main["name"], main["status"], main["capabilities"]) == ("Main Agent", "idle", ["*"])
    group = tasks.create_group(
        ctx,
        {"name": "quick", "expectedAgents": ["a"], "deliveryChannel": "x", "deliveryTo": "y"},
    )
    tasks.heartbeat(ctx, group["id"], "a", "completed", None)
    ctx.close()
    (sent,) = wait_until(gateway.messages_sent, timeout=5, what="the summary")
    assert sent["message"] == '[ok] Task group "quick" completed\n\n[ok] a: done'


def test_a_registered_session_active_in_the_gateway_keeps_its_member_alive(
    scheduler, daemons, gateway
):
    key = "agent:main:subagent:alive"
    asyncio.run(_touch_session(scheduler, key))
    ctx = context(scheduler)
    group = tasks.create_group(ctx, {"name": "long", "expectedAgents": ["a"], "timeoutS": 1})
    tasks.register_session(ctx, group["id"], "a", key)
    registered = status(scheduler, group["id"])["agents"][0]["last_heartbeat"]
    ctx.close()
    daemons.start()
    wait_until(lambda: gateway.calls_of("sessions.list"), what="the gateway asked")
    time.sleep(1.5)  # past the deadline again: the session is still active
    view = status(scheduler, group["id"])
    assert (view["status"], view["agents"][0]["status"]) == ("active", "running")
    assert view["agents"][0]["last_heartbeat"] > registered
    assert len(gateway.calls_of("sessions.list")) >= 2


async def _touch_session(scheduler, key: str) -> None:
    from ocsched.adapters.gateway import GatewayClient, GatewaySettings

    async with GatewayClient(GatewaySettings.from_environment(scheduler.env)) as client:
        await client.sessions_patch(key, label="alive")


def test_the_daemon_maps_team_messages_as_they_come(scheduler, daemons):
    from ocsched.commands import messages

    daemons.start()
    ctx = context(scheduler)
    task = messages.send_message(ctx, "lead", "writer", "Ship it", kind="task", team_id="core")
    ctx.close()

    def mapped() -> list:
        ctx = context(scheduler)
        try:
            return tasks.team_tasks(ctx, "core", 10)
        finally:
            ctx.close()

    (row,) = wait_until(mapped, timeout=5, what="the team task")
    assert (row["id"], row["title"], row["status"]) == (task["id"], "Ship it", "open")
    assert scheduler.ok("--json", "team", "map").json == {"ok": True, "mapped": 0}
    (event,) = scheduler.ok("--json", "team", "events", "core").json
    assert (event["event_type"], event["message_id"]) == ("task_created", task["id"])
