"""The task tracker (spec §23): the TaskGroup rules, the dead-man switch and completion as
reactions, and the read model they leave, on a real store (no daemon, no clock)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from ocsched.commands import tasks as service
from ocsched.commands.output import CommandError
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.errors import DomainError
from ocsched.domain.reactions import teams
from ocsched.domain.task_group import TaskGroup, new_task_group, parse_spec
from ocsched.projections import tasks as read_model

from .test_reactions import NOW, OWNER, Store

META = EventMeta(actor="tester", origin="cli", correlation_id="c")


@pytest.fixture(name="store")
def store_fixture(tmp_path):
    store = Store(tmp_path)
    yield store
    store.ctx.close()


def group_of(*labels: str, timeout_s: int = 600, **fields) -> TaskGroup:
    spec = parse_spec({"name": "team", "expectedAgents": list(labels), "timeoutS": timeout_s})
    return new_task_group("g1", spec, meta=META, at=NOW, **fields)


# The spec of `tasks create`


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "x"}, "expectedAgents must be a non-empty array"),
        ({"name": "x", "expectedAgents": []}, "expectedAgents must be a non-empty array"),
        ({"expectedAgents": ["a"]}, "name is required"),
        ({"name": "x", "expectedAgents": ["a", "a"]}, "expectedAgents names a twice"),
        ({"name": "x", "expectedAgents": [1]}, "expectedAgents must hold non-empty labels (text)"),
        ({"name": "x", "expectedAgents": ["a"], "timeoutS": 0}, "timeoutS must be a whole number"),
        ({"name": "x", "expectedAgents": ["a"], "timeoutS": 10**30}, "from 1 to 1000000000"),
        ({"name": "x", "expectedAgents": ["a"], "timeoutS": True}, "timeoutS must be a whole"),
        (
            {"name": "x", "expected_agents": ["a"]},
            'Unknown field "expected_agents". Did you mean "expectedAgents"?',
        ),
    ],
)
def test_a_bad_task_group_spec_is_refused_with_one_line(spec, message):
    with pytest.raises(DomainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec)


def test_a_task_group_spec_takes_the_anchors_defaults():
    spec = parse_spec({"name": "x", "expectedAgents": ["a"]})
    assert (spec.timeout_s, spec.created_by, spec.delivery_to) == (600, "main", None)


# Members


def test_heartbeats_move_a_member_through_its_states():
    group = group_of("a", "b")
    assert group.heartbeat("a", "running", None, META, NOW + timedelta(seconds=5))
    assert group.members["a"].started_at == NOW + timedelta(seconds=5)
    group.heartbeat("a", "completed", "shipped", META, NOW + timedelta(seconds=9))
    group.heartbeat("b", "failed", None, META, NOW + timedelta(seconds=9))
    assert (group.members["a"].status, group.members["a"].exit_message) == ("completed", "shipped")
    assert (group.members["b"].status, group.members["b"].error) == ("failed", "failed")


def test_an_unknown_label_changes_nothing():
    group = group_of("a")
    assert not group.heartbeat("zz", "running", None, META, NOW)
    assert not group.register_session("zz", "key", META, NOW)
    assert len(group.pending_events) == 1


def test_a_registered_session_makes_a_pending_member_run_and_keeps_its_start():
    group = group_of("a")
    group.register_session("a", "agent:main:subagent:1", META, NOW + timedelta(seconds=3))
    group.register_session("a", "agent:main:subagent:1", META, NOW + timedelta(seconds=8))
    member = group.members["a"]
    assert (member.status, member.started_at) == ("running", NOW + timedelta(seconds=3))
    assert member.last_heartbeat == NOW + timedelta(seconds=8)


# The dead-man switch


def test_a_silent_member_dies_at_the_groups_timeout():
    group = group_of("a", timeout_s=60)
    assert group.next_deadline() == NOW + timedelta(seconds=60)
    assert group.overdue(NOW + timedelta(seconds=59)) == []
    assert [m.label for m in group.overdue(NOW + timedelta(seconds=60))] == ["a"]


def test_a_heartbeat_keeps_a_member_alive_for_the_shorter_of_timeout_and_five_minutes():
    group = group_of("a", "b", timeout_s=600)
    group.heartbeat("a", "running", None, META, NOW + timedelta(seconds=590))
    assert group.deadline(group.members["a"]) == NOW + timedelta(seconds=890)
    assert group.deadline(group.members["b"]) == NOW + timedelta(seconds=600)
    assert group.next_deadline() == NOW + timedelta(seconds=600)
    short = group_of("a", timeout_s=30)
    short.heartbeat("a", "running", None, META, NOW + timedelta(seconds=25))
    assert short.deadline(short.members["a"]) == NOW + timedelta(seconds=55)


def test_dead_man_marks_silent_members_dead_and_completes_the_group(store: Store):
    group = group_of("a", "b", timeout_s=60)
    group.heartbeat("a", "completed", None, META, NOW)
    later = NOW + timedelta(seconds=61)
    plan = teams.dead_man(group, active_sessions=(), owner=OWNER, now=later, facts=store.facts)
    assert (group.members["b"].status, group.members["b"].error) == (
        "dead",
        "Timed out (dead-man switch)",
    )
    assert group.status == "failed"
    assert group.summary == "[ok] a: done\n[DEAD] b: timed out"
    assert plan.records == [group]  # no target: nothing to deliver
    assert group.next_deadline() is None


def test_a_member_whose_session_is_active_is_seen_not_killed(store: Store):
    group = group_of("a", timeout_s=60)
    group.register_session("a", "agent:main:subagent:7", META, NOW)
    later = NOW + timedelta(seconds=61)
    assert teams.sessions_to_ask(group, later) == ["agent:main:subagent:7"]
    plan = teams.dead_man(
        group,
        active_sessions={"agent:main:subagent:7"},
        owner=OWNER,
        now=later,
        facts=store.facts,
    )
    assert group.members["a"].status == "running"
    assert group.members["a"].last_heartbeat == later
    assert group.next_deadline() == later + timedelta(seconds=60)
    assert type(group.pending_events[-1]).__name__ == "MemberSeen"
    assert plan.records == [group]


def test_an_ended_group_completes_at_once_and_its_summary_is_delivered(store: Store):
    spec = parse_spec(
        {
            "name": "ship",
            "expectedAgents": ["w", "r"],
            "deliveryChannel": "telegram",
            "deliveryTo": "123",
        }
    )
    group = new_task_group("g2", spec, meta=META, at=NOW)
    group.heartbeat("w", "completed", "written", META, NOW)
    group.heartbeat("r", "completed", None, META, NOW)
    assert group.next_deadline() == NOW  # due now: every member ended
    plan = teams.dead_man(group, active_sessions=(), owner=OWNER, now=NOW, facts=store.facts)
    assert group.status == "completed"
    (delivery,) = plan.records[1:]
    assert (delivery.channel, delivery.target) == ("telegram", "123")
    assert delivery.chunks == ['[ok] Task group "ship" completed\n\n[ok] w: written\n[ok] r: done']


def test_a_delivery_needs_both_channel_and_target(store: Store):
    spec = parse_spec({"name": "x", "expectedAgents": ["a"], "deliveryTo": "123"})
    group = new_task_group("g3", spec, meta=META, at=NOW)
    group.heartbeat("a", "failed", "boom", META, NOW)
    plan = teams.dead_man(group, active_sessions=(), owner=OWNER, now=NOW, facts=store.facts)
    assert group.status == "failed" and plan.records == [group]


# The read model, through the service functions


def test_the_read_model_follows_a_group_from_creation_to_its_end(store: Store):
    ctx = store.ctx
    created = service.create_group(
        ctx, {"name": "team", "expectedAgents": ["b", "a"], "timeoutS": 60}
    )
    assert created["agents"] == [
        {"agent_label": "b", "status": "pending"},
        {"agent_label": "a", "status": "pending"},
    ]
    gid = created["id"]
    service.heartbeat(ctx, gid, "a", "running", None)
    service.register_session(ctx, gid, "b", "agent:main:subagent:b")
    row = read_model.group(ctx.views(), gid)
    assert row is not None and row["expected_agents"] == '["b","a"]'
    view = service.group_status(ctx, gid)
    assert [a["label"] for a in view["agents"]] == ["a", "b"]
    assert view["agents"][1]["session_key"] == "agent:main:subagent:b"
    assert (view["elapsed"], view["remaining_timeout"]) == (0, 60)
    assert "summary" not in view and "exit_message" not in view["agents"][0]
    group = ctx.log.repository.get(gid)
    plan = teams.dead_man(
        group,
        active_sessions=(),
        owner=OWNER,
        now=NOW + timedelta(seconds=61),
        facts=store.facts,
    )
    store.save(plan)
    assert [g["id"] for g in service.active_groups(ctx)] == []
    (ended,) = service.ended_groups(ctx, 10)
    assert ended["status"] == "failed"
    assert ended["summary"] == "[DEAD] b: timed out\n[DEAD] a: timed out"
    members = read_model.members(ctx.views(), gid)
    assert {m["status"] for m in members} == {"dead"}


def test_heartbeats_to_an_unknown_group_succeed_and_record_nothing(store: Store):
    ctx = store.ctx
    before = ctx.log.recorder.max_notification_id()
    answer = service.heartbeat(ctx, "nope", "a", "completed", "x")
    assert answer == {
        "ok": True,
        "tracker_id": "nope",
        "agent": "a",
        "status": "completed",
        "message": "x",
    }
    assert ctx.log.recorder.max_notification_id() == before


# Team gates


def test_a_gate_passes_when_its_group_completes(store: Store):
    ctx = store.ctx
    gate = service.open_gate(ctx, "core", "deploy-1", ["w", "r"], 600)
    tid = gate["tracker_id"]
    (task,) = read_model.team_tasks(ctx.views(), "core", 50)
    assert (task["status"], task["gate_status"], task["title"]) == (
        "blocked",
        "waiting",
        "Team task deploy-1",
    )
    assert service.check_gates(ctx) == {"passed": 0, "failed": 0, "pending": 1}
    service.heartbeat(ctx, tid, "w", "completed", None)
    service.heartbeat(ctx, tid, "r", "completed", None)
    assert service.check_gates(ctx) == {"passed": 1, "failed": 0, "pending": 0}
    (task,) = read_model.team_tasks(ctx.views(), "core", 50)
    assert (task["status"], task["gate_status"]) == ("open", "passed")
    kinds = [e["event_type"] for e in read_model.team_events(ctx.views(), "core", 50)]
    assert kinds == ["gate_passed", "gate_open"]
    assert service.check_gates(ctx) == {"passed": 0, "failed": 0, "pending": 0}


def test_a_gate_fails_with_its_group_in_the_dead_man_pass(store: Store):
    ctx = store.ctx
    gate = service.open_gate(ctx, "core", "deploy-2", ["w"], 30)
    group = ctx.log.repository.get(gate["tracker_id"])
    plan = teams.dead_man(
        group, active_sessions=(), owner=OWNER, now=NOW + timedelta(seconds=31), facts=store.facts
    )
    store.save(plan)
    (task,) = read_model.team_tasks(ctx.views(), "core", 50)
    assert (task["status"], task["gate_status"]) == ("failed", "failed")
    assert task["last_error"] == "[DEAD] w: timed out"
    assert task["completed_at"] is not None


# The team mailbox


def test_team_messages_map_onto_tasks_and_a_team_ack_is_noted(store: Store):
    from ocsched.commands import messages

    ctx = store.ctx
    first = messages.send_message(
        ctx, "lead", "writer", "Write the release notes", kind="task", team_id="core"
    )
    messages.send_message(
        ctx, "writer", "lead", "On it", team_id="core", task_id=first["id"], member_id="w"
    )
    messages.send_message(ctx, "lead", "all", "Standup at 10", team_id="core")
    messages.send_message(ctx, "lead", "all", "not a team message")
    assert service.map_team_messages(ctx) == 3
    assert service.map_team_messages(ctx) == 0
    (task,) = service.team_tasks(ctx, "core", 50)
    assert (task["id"], task["title"], task["status"], task["member_id"]) == (
        first["id"],
        "Write the release notes",
        "open",
        "w",
    )
    events = service.team_events(ctx, "core", 50, None)
    assert [e["event_type"] for e in events] == ["mailbox", "task_message", "task_created"]
    assert json.loads(events[-1]["payload"]) == {
        "kind": "task",
        "from_agent": "lead",
        "to_agent": "writer",
        "subject": None,
        "status": "pending",
        "priority": 0,
        "ack_required": False,
    }
    assert messages.get_message(ctx, first["id"])["team_mapped_at"] is not None  # type: ignore[index]
    acked = service.team_ack(ctx, first["id"], "team-member", "seen")
    assert (acked["id"], acked["status"]) == (first["id"], "read")
    assert acked["ack_at"] is not None
    (ack,) = [
        e for e in service.team_events(ctx, "core", 50, first["id"]) if e["event_type"] == "ack"
    ]
    assert json.loads(ack["payload"]) == {"actor": "team-member", "detail": "seen"}
    (plain,) = [m for m in messages.inbox(ctx, "all", 10) if m["team_id"] is None]
    with pytest.raises(CommandError, match="Team message not found"):
        service.team_ack(ctx, plain["id"], "x", None)


def test_a_rebuild_reproduces_the_tracker_and_agents_tables_row_for_row(store: Store):
    from ocsched.commands import agents
    from ocsched.commands.context import Context
    from ocsched.projections.runner import by_name, rebuild

    ctx = store.ctx
    agents.register_agent(ctx, "ops", "Ops")
    agents.register_agent(ctx, "ops")
    gid = service.create_group(ctx, {"name": "t", "expectedAgents": ["a", "b"]})["id"]
    service.register_session(ctx, gid, "a", "agent:main:subagent:a")
    service.heartbeat(ctx, gid, "b", "failed", "boom")
    gate = service.open_gate(ctx, "core", "x", ["m"], 60)
    service.heartbeat(ctx, gate["tracker_id"], "m", "completed", None)
    service.check_gates(ctx)

    def tables() -> dict:
        db = ctx.views()
        assert db is not None
        names = (*read_model.projection.tables, "agents")
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in names}

    live = tables()
    assert len(live["task_tracker"]) == 2 and len(live["team_mailbox_events"]) == 2
    fresh = Context(settings=ctx.settings, actor="tester")
    try:
        for name in ("tasks", "agents"):
            rebuild(fresh.log, fresh.store, by_name(name))
    finally:
        fresh.close()
    ctx.close()
    assert tables() == live


def test_a_task_gated_again_waits_for_its_new_group_only(store: Store):
    ctx = store.ctx
    first = service.open_gate(ctx, "core", "deploy-3", ["w"], 600)["tracker_id"]
    second = service.open_gate(ctx, "core", "deploy-3", ["w", "r"], 600)["tracker_id"]
    service.heartbeat(ctx, first, "w", "completed", None)
    group = ctx.log.repository.get(first)
    store.save(teams.dead_man(group, active_sessions=(), owner=OWNER, now=NOW, facts=store.facts))
    assert group.status == "completed"
    (task,) = read_model.team_tasks(ctx.views(), "core", 50)
    assert (task["gate_tracker_id"], task["gate_status"]) == (second, "waiting")
