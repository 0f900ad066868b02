"""The agents registry (spec §22): registration as the anchor's upsert, on a real store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ocsched.commands import agents as service
from ocsched.commands.output import CommandError
from ocsched.domain.agent import Agent, agent_aggregate_id, register
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.errors import DomainError

from .test_reactions import NOW, Store
from .test_tasks import store_fixture  # noqa: F401 - the `store` fixture

META = EventMeta(actor="tester", origin="cli", correlation_id="c")


def test_a_new_agent_is_idle_and_not_yet_seen(store: Store):
    row = service.register_agent(store.ctx, "ops", "Ops Bot")
    assert row == {
        "id": "ops",
        "name": "Ops Bot",
        "status": "idle",
        "last_seen_at": None,
        "session_key": None,
        "capabilities": None,
        "delivery_channel": None,
        "delivery_to": None,
        "brand_name": None,
        "created_at": "2026-12-05 03:00:00",
    }


def test_registering_again_keeps_what_is_not_given_and_resets_the_status(store: Store):
    agent = register(None, "main", name="Main Agent", capabilities=["*"], meta=META, at=NOW)
    later = NOW + timedelta(seconds=5)
    register(agent, "main", status="busy", session_key="s1", meta=META, at=later)
    assert (agent.status, agent.session_key) == ("busy", "s1")
    register(agent, "main", meta=META, at=later)
    assert (agent.name, agent.status, agent.session_key, agent.capabilities) == (
        "Main Agent",
        "idle",
        "s1",
        ["*"],
    )
    store.ctx.save(agent)
    row = service.get_agent(store.ctx, "main")
    assert row is not None
    assert (row["status"], row["capabilities"], row["last_seen_at"]) == (
        "idle",
        ["*"],
        "2026-12-05 03:00:05",
    )


def test_agents_are_listed_by_id_apart_from_jobs_of_the_same_name(store: Store):
    store.add(id="ops", name="a job called ops")
    for agent_id in ("zeta", "ops", "alpha"):
        service.register_agent(store.ctx, agent_id)
    assert [a["id"] for a in service.list_agents(store.ctx)] == ["alpha", "ops", "zeta"]
    assert service.get_agent(store.ctx, "ops")["name"] is None  # type: ignore[index]
    assert isinstance(store.ctx.log.repository.get(agent_aggregate_id("ops")), Agent)


def test_an_empty_agent_id_is_refused(store: Store):
    with pytest.raises(CommandError, match="Agent id must be a non-empty string"):
        service.register_agent(store.ctx, "")
    with pytest.raises(DomainError, match="Invalid agent status"):
        register(None, "x", status="asleep", meta=META, at=NOW)


# Through the CLI


def test_agents_register_list_and_get_through_the_cli(scheduler):
    registered = scheduler.ok("--json", "agents", "register", "ops", "Ops Bot").json
    assert registered["ok"] is True and registered["agent"]["name"] == "Ops Bot"
    plain = scheduler.ok("agents", "register", "qa").stdout
    assert plain.startswith('Registered: {\n  "id": "qa",\n  "name": "qa",')
    listed = scheduler.ok("--json", "agents", "list").json
    assert [a["id"] for a in listed] == ["ops", "qa"]
    assert "Ops Bot" in scheduler.ok("agents", "list").stdout
    assert scheduler.ok("agents", "get", "ops").json["name"] == "Ops Bot"  # JSON either way
    missing = scheduler.run("agents", "get", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, "Agent not found: nope")
    usage = scheduler.run("agents", "register")
    assert (usage.returncode, usage.stderr.strip()) == (
        1,
        "Usage: agents register <agent-id> [name]",
    )


def test_an_agent_is_busy_with_its_session_during_a_turn_and_idle_after(
    scheduler, daemons, gateway
):
    from .conftest import wait_until
    from .test_agent_jobs import agent_job

    gateway.reply_delay_s = 1.5
    scheduler.ok("agents", "register", "ops")
    job = scheduler.add(agent_job(agent_id="ops", delivery_mode="none"), "--in", "1s")
    daemons.start()

    def agent() -> dict:
        return scheduler.ok("agents", "get", "ops").json

    busy = wait_until(lambda: agent()["status"] == "busy" and agent(), what="a busy agent")
    assert busy["session_key"] == f"agent:ops:scheduler:{job['id']}"
    idle = wait_until(lambda: agent()["status"] == "idle" and agent(), what="an idle agent")
    assert idle["session_key"] is None and idle["last_seen_at"] is not None
    assert scheduler.run("agents", "get", "main").returncode == 0  # registered at start


def test_status_lists_the_agents_with_their_unread_messages(scheduler):
    scheduler.ok("agents", "register", "ops")
    scheduler.ok("agents", "register", "qa")
    scheduler.ok("msg", "send", "lead", "ops", "please", "look")
    agents = scheduler.ok("--json", "status").json["agents"]
    assert agents == [
        {"id": "ops", "status": "idle", "unread": 1},
        {"id": "qa", "status": "idle", "unread": 0},
    ]
    plain = scheduler.ok("status").stdout
    assert "Agents:   2\n  ops: idle (1 unread)\n  qa: idle\n" in plain + "\n"


# The delivery target: the daemon sends the inbox of an agent that has one (spec §22, §26)


def test_an_agent_registered_with_a_delivery_target_has_it_in_its_row(store: Store):
    row = service.register_agent(
        store.ctx,
        "ops",
        "Ops Bot",
        delivery_to="123",
        delivery_channel="telegram",
        brand_name="Ops Desk",
    )
    assert (row["delivery_to"], row["delivery_channel"], row["brand_name"]) == (
        "123",
        "telegram",
        "Ops Desk",
    )
    agent = store.ctx.log.repository.get(agent_aggregate_id("ops"))
    assert (agent.delivery_to, agent.delivery_channel, agent.brand_name) == (
        "123",
        "telegram",
        "Ops Desk",
    )


def test_registering_again_without_a_target_keeps_it_and_no_delivery_clears_it(store: Store):
    service.register_agent(
        store.ctx, "ops", delivery_to="123", delivery_channel="slack", brand_name="Ops"
    )
    again = service.register_agent(store.ctx, "ops", "Ops Bot")
    assert (again["name"], again["delivery_to"], again["delivery_channel"]) == (
        "Ops Bot",
        "123",
        "slack",
    )
    cleared = service.register_agent(store.ctx, "ops", clear_delivery=True)
    assert (cleared["delivery_to"], cleared["delivery_channel"], cleared["brand_name"]) == (
        None,
        None,
        "Ops",
    )
    agent = store.ctx.log.repository.get(agent_aggregate_id("ops"))
    assert (agent.delivery_to, agent.delivery_channel, agent.name) == (None, None, "Ops Bot")
    assert agent.brand_name == "Ops"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"delivery_to": ""}, "delivery_to cannot be empty"),
        ({"delivery_to": "  "}, "delivery_to cannot be empty"),
        ({"delivery_channel": "tele\ngram"}, "delivery_channel must be a single line"),
        ({"delivery_to": "12\r3"}, "delivery_to must be a single line"),
        ({"brand_name": "Ops\x1b[31m"}, "brand_name contains unsupported control characters"),
        ({"delivery_to": "1\t2"}, "delivery_to contains unsupported control characters"),
        ({"delivery_to": "1\u20282"}, "delivery_to contains unsupported control characters"),
        ({"delivery_to": 123}, "delivery_to must be a string"),
        ({"delivery_to": "1" * 257}, "delivery_to exceeds max length of 256"),
        (
            {"delivery_to": "1", "clear_delivery": True},
            "Clearing the delivery cannot come with a delivery_to or delivery_channel",
        ),
    ],
)
def test_a_bad_delivery_value_is_refused_and_nothing_is_recorded(store: Store, fields, error):
    service.register_agent(store.ctx, "ops", delivery_to="123")
    with pytest.raises(CommandError) as refused:
        service.register_agent(store.ctx, "ops", "Other", **fields)
    assert str(refused.value) == error
    assert store.ctx.log.repository.get(agent_aggregate_id("ops")).version == 1
    row = service.get_agent(store.ctx, "ops")
    assert row is not None and (row["name"], row["delivery_to"]) == (None, "123")


def test_agents_register_sets_keeps_and_clears_the_delivery_through_the_cli(scheduler):
    options = ("--delivery-to", "123", "--delivery-channel", "telegram", "--brand", "Ops Desk")
    registered = scheduler.ok("--json", "agents", "register", "ops", *options).json["agent"]
    assert (registered["delivery_to"], registered["delivery_channel"]) == ("123", "telegram")
    assert registered["brand_name"] == "Ops Desk" and registered["name"] == "ops"
    scheduler.ok("agents", "register", "ops", "Ops Bot")
    shown = scheduler.ok("agents", "get", "ops").json
    assert (shown["name"], shown["delivery_to"], shown["delivery_channel"]) == (
        "Ops Bot",
        "123",
        "telegram",
    )
    assert "123" not in scheduler.ok("agents", "list").stdout  # the table is unchanged
    plain = scheduler.ok("--actor", "alice", "agents", "register", "ops", "--no-delivery").stdout
    assert plain.startswith('Registered: {\n  "id": "ops",\n  "name": "ops",')
    (cleared,) = scheduler.ok("--json", "events", "tail", "-n", "1", "--type", "Agent.Updated").json
    assert cleared["actor"] == "alice"
    assert cleared["fields"]["values"] == {
        "name": "ops",
        "status": "idle",
        "delivery_to": None,
        "delivery_channel": None,
    }
    shown = scheduler.ok("agents", "get", "ops").json
    assert (shown["delivery_to"], shown["delivery_channel"], shown["brand_name"]) == (
        None,
        None,
        "Ops Desk",
    )
    assert "--delivery-to <target>" in scheduler.ok("agents", "register", "--help").stdout


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (("--delivery-to", ""), "delivery_to cannot be empty"),
        (("--delivery-channel", "a\nb"), "delivery_channel must be a single line"),
        (("--brand", "Ops\x07"), "brand_name contains unsupported control characters"),
        (
            ("--no-delivery", "--delivery-to", "123"),
            "--no-delivery cannot be given with --delivery-to or --delivery-channel."
            " Usage: agents register <agent-id> [name] [--delivery-to <target>]"
            " [--delivery-channel <channel>] [--brand <name>] [--no-delivery]",
        ),
        (
            ("--delivery-to",),
            "--delivery-to needs a value. Usage: agents register <agent-id> [name]",
        ),
    ],
)
def test_bad_delivery_options_exit_1_with_one_line_and_record_nothing(scheduler, options, error):
    refused = scheduler.run("agents", "register", "ops", *options)
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", error + "\n")
    as_json = scheduler.run("--json", "agents", "register", "ops", *options)
    assert (as_json.returncode, as_json.json) == (1, {"ok": False, "error": error})
    assert scheduler.run("agents", "get", "ops").returncode == 1  # not registered
