"""A team of sub-agents end to end (issue 11's "Done when"), as a user drives it: agents
registered, a task group created, messages sent and acknowledged, heartbeats that stop,
the dead-man switch firing in a real daemon at the deadline, and the summary delivered
through the fake gateway."""

from __future__ import annotations

import json
import time

from .conftest import wait_until

TIMEOUT_S = 3


def test_a_team_whose_reviewer_goes_silent(scheduler, daemons, gateway):
    daemon = daemons.start()
    for agent in ("writer", "reviewer"):
        scheduler.ok("agents", "register", agent, agent.title())
    spec = {
        "name": "release notes",
        "expectedAgents": ["writer", "reviewer"],
        "timeoutS": TIMEOUT_S,
        "deliveryChannel": "telegram",
        "deliveryTo": "-100123",
    }
    group = scheduler.ok("--json", "tasks", "create", json.dumps(spec)).json["group"]
    gid = group["id"]
    scheduler.ok("tasks", "register-session", gid, "writer", "agent:main:subagent:writer")
    scheduler.ok("tasks", "heartbeat", gid, "reviewer", "running")
    last_heartbeat = time.monotonic()

    # They talk through the post office.
    sent = scheduler.ok("--json", "msg", "send", "writer", "reviewer", "draft", "ready").json
    message_id = sent["message"]["id"]
    (waiting,) = scheduler.ok("--json", "msg", "inbox", "reviewer").json
    assert (waiting["id"], waiting["body"]) == (message_id, "draft ready")
    acked = scheduler.ok("--json", "msg", "ack", message_id, "reviewer", "on", "it").json
    assert (acked["id"], acked["status"]) == (message_id, "read")
    (receipt,) = scheduler.ok("--json", "msg", "receipts", message_id).json
    assert (receipt["event_type"], receipt["actor"], receipt["detail"]) == (
        "ack",
        "reviewer",
        "on it",
    )

    # The writer finishes; the reviewer's heartbeats stop.
    scheduler.ok("tasks", "heartbeat", gid, "writer", "completed", "notes", "written")
    view = scheduler.ok("--json", "tasks", "status", gid).json
    assert [(a["label"], a["status"]) for a in view["agents"]] == [
        ("reviewer", "running"),
        ("writer", "completed"),
    ]
    assert scheduler.ok("--json", "agents", "get", "main").json["name"] == "Main Agent"

    (summary,) = wait_until(gateway.messages_sent, timeout=TIMEOUT_S + 10, what="the summary")
    fired_after = time.monotonic() - last_heartbeat
    assert TIMEOUT_S - 0.5 <= fired_after <= TIMEOUT_S + 2, fired_after
    assert (summary["channel"], summary["target"]) == ("telegram", "-100123")
    assert summary["message"] == (
        '[FAILED] Task group "release notes" failed\n\n'
        "[ok] writer: notes written\n"
        "[DEAD] reviewer: timed out"
    )

    view = scheduler.ok("--json", "tasks", "status", gid).json
    assert view["status"] == "failed"
    reviewer = view["agents"][0]
    assert (reviewer["status"], reviewer["error"]) == ("dead", "Timed out (dead-man switch)")
    assert scheduler.ok("tasks", "list").stdout.strip() == "No active task groups"
    (ended,) = scheduler.ok("--json", "tasks", "history").json
    assert ended["summary"] == "[ok] writer: notes written\n[DEAD] reviewer: timed out"
    (delivery,) = scheduler.ok("--json", "deliveries", "list").json
    assert (delivery["status"], delivery["purpose"]) == ("delivered", "task-summary")

    # Why the reviewer is dead: the daemon's event, with its cause.
    history = scheduler.ok("--json", "events", "show", gid).json
    dead = [e for e in history if e["type"].endswith("MembersDead")]
    assert len(dead) == 1 and dead[0]["actor"] == "reactor"
    assert "task group release notes" in daemon.log
