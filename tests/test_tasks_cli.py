"""`tasks` and `team` through the real CLI (in process): the anchor's arguments, outputs
and --json shapes (spec §5.6, §23)."""

from __future__ import annotations

import json


def create(scheduler, **spec) -> dict:
    spec.setdefault("name", "team")
    spec.setdefault("expectedAgents", ["writer", "reviewer"])
    return scheduler.ok("--json", "tasks", "create", json.dumps(spec)).json["group"]


def test_tasks_create_answers_in_the_anchors_shape(scheduler):
    answer = scheduler.ok("--json", "tasks", "create", '{"name":"t","expectedAgents":["a"]}')
    group = answer.json["group"]
    assert set(group) == {"id", "name", "status", "created_at", "created_by", "agents"}
    assert (group["status"], group["created_by"]) == ("active", "main")
    assert group["agents"] == [{"agent_label": "a", "status": "pending"}]
    plain = scheduler.ok("tasks", "create", '{"name":"u","expectedAgents":["b"]}').stdout
    assert plain.startswith("Created: {\n")


def test_tasks_create_refuses_bad_specs_with_one_line(scheduler):
    for spec, message in [
        ("not json", """Invalid JSON. Usage: tasks create '{"name":"..."}'"""),
        ('{"name":"x","expectedAgents":[]}', "expectedAgents must be a non-empty array"),
        ('{"expectedAgents":["a"]}', "name is required"),
        (
            r'{"name":"t\ud800","expectedAgents":["a"]}',
            r"The JSON holds a lone surrogate (a \ud800 escape without its pair)",
        ),
    ]:
        result = scheduler.run("tasks", "create", spec)
        assert (result.returncode, result.stderr.strip()) == (1, message)
        as_json = scheduler.run("--json", "tasks", "create", spec)
        assert as_json.json == {"ok": False, "error": message}
    assert scheduler.ok("--json", "tasks", "list").json == []


def test_heartbeats_and_sessions_report_as_the_anchor_does(scheduler):
    gid = create(scheduler)["id"]
    running = scheduler.ok("--json", "tasks", "heartbeat", gid, "writer", "running").json
    assert running == {"ok": True, "tracker_id": gid, "agent": "writer", "status": "running"}
    done = scheduler.ok("tasks", "heartbeat", gid, "writer", "completed", "notes", "written")
    assert done.stdout.strip() == "Heartbeat recorded: writer -> completed (notes written)"
    failed = scheduler.ok("--json", "tasks", "heartbeat", gid, "reviewer", "failed").json
    assert failed == {"ok": True, "tracker_id": gid, "agent": "reviewer", "status": "failed"}
    session = scheduler.ok("tasks", "register-session", gid, "reviewer", "agent:main:subagent:9")
    assert session.stdout.strip() == "Session registered: reviewer -> agent:main:subagent:9"
    bad = scheduler.run("tasks", "heartbeat", gid, "writer", "bogus")
    assert (
        bad.stderr.strip() == 'Unknown status: "bogus". Valid values: running | completed | failed'
    )
    short = scheduler.run("tasks", "heartbeat", gid)
    assert short.stderr.strip() == (
        "Usage: tasks heartbeat <trackerId> <agentLabel> running|completed|failed [message]"
    )
    unknown = scheduler.ok("--json", "tasks", "heartbeat", "no-such-group", "x", "running")
    assert unknown.json["ok"] is True


def test_tasks_status_shows_the_members_by_label(scheduler):
    gid = create(scheduler, timeoutS=300)["id"]
    scheduler.ok("tasks", "heartbeat", gid, "writer", "completed", "shipped")
    view = scheduler.ok("--json", "tasks", "status", gid[:8]).json
    assert [a["label"] for a in view["agents"]] == ["reviewer", "writer"]
    assert view["agents"][0] == {"label": "reviewer", "status": "pending", "duration": None}
    assert (view["status"], view["remaining_timeout"] + view["elapsed"]) == ("active", 300)
    assert "summary" not in view
    plain = scheduler.ok("tasks", "status", gid).stdout
    assert "Task Group: team\nStatus:     active\n" in plain
    assert "  [ ] reviewer: pending\n" in plain
    assert "  [ok] writer: completed -- shipped" in plain  # never reported running
    missing = scheduler.run("--json", "tasks", "status", "nope")
    assert missing.json == {"ok": False, "error": "Task group not found: nope"}


def test_tasks_list_and_history(scheduler):
    assert scheduler.ok("tasks", "list").stdout.strip() == "No active task groups"
    assert scheduler.ok("tasks", "history").stdout.strip() == "No completed task groups"
    gid = create(scheduler)["id"]
    (row,) = scheduler.ok("--json", "tasks", "list").json
    assert (row["id"], row["expected_agents"], row["timeout_s"]) == (
        gid,
        '["writer","reviewer"]',
        600,
    )
    table = scheduler.ok("tasks", "list").stdout
    assert f"{gid[:8]}.." in table and "0/2" in table and "600s" in table


def test_team_gate_tasks_events_and_check_gates(scheduler):
    gate = scheduler.ok("--json", "team", "gate", "core", "deploy-1", '["w","r"]', "900").json
    assert gate["gate"]["gate_status"] == "waiting"
    tracker = gate["gate"]["tracker_id"]
    (task,) = scheduler.ok("--json", "team", "tasks", "core").json
    assert (task["id"], task["status"], task["gate_tracker_id"]) == ("deploy-1", "blocked", tracker)
    (event,) = scheduler.ok("--json", "team", "events", "core").json
    assert json.loads(event["payload"]) == {
        "tracker_id": tracker,
        "expected_members": ["w", "r"],
        "timeout_s": 900,
    }
    name = scheduler.ok("--json", "tasks", "status", tracker).json["name"]
    assert name == "team:core:task:deploy-1"
    assert scheduler.ok("team", "check-gates").json == {"passed": 0, "failed": 0, "pending": 1}
    for member in ("w", "r"):
        scheduler.ok("tasks", "heartbeat", tracker, member, "completed")
    assert scheduler.ok("team", "check-gates").json == {"passed": 1, "failed": 0, "pending": 0}
    assert scheduler.ok("--json", "team", "tasks", "core").json[0]["gate_status"] == "passed"
    assert scheduler.ok("team", "map").stdout.strip() == "Mapped 0 team message(s)"
    assert scheduler.ok("--json", "team", "map").json == {"ok": True, "mapped": 0}
    bad = scheduler.run("team", "gate", "core", "x", "not json")
    assert (
        bad.stderr.strip() == """Invalid JSON for members list. Example: '["writer","reviewer"]'"""
    )
    assert scheduler.run("team", "tasks").stderr.strip() == "Usage: team tasks <team-id> [limit]"
    missing = scheduler.run("team", "ack", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, "Team message not found: nope")
    assert scheduler.ok("team", "tasks", "nobody").stdout.strip() == "No team tasks"


def test_members_reporting_at_the_same_moment_are_all_recorded(scheduler):
    import subprocess

    from .conftest import OCSCHED

    labels = [f"m{i}" for i in range(8)]
    gid = create(scheduler, expectedAgents=labels)["id"]
    processes = [
        subprocess.Popen(
            [*OCSCHED, "tasks", "heartbeat", gid, label, "completed", f"done by {label}"],
            env=scheduler.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label in labels
    ]
    outcomes = [(p.wait(timeout=60), p.stderr.read()) for p in processes]
    for process in processes:
        process.stdout.close()
        process.stderr.close()
    assert outcomes == [(0, "")] * len(labels)
    view = scheduler.ok("--json", "tasks", "status", gid).json
    assert {a["status"] for a in view["agents"]} == {"completed"}
    assert sorted(a["exit_message"] for a in view["agents"]) == [f"done by {x}" for x in labels]
