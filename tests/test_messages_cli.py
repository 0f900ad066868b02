"""`msg`, `messages`, `queue` and `inbox-consumer` through the real CLI (spec §5.5, §13.3):
arguments, outputs, `--json` shapes and errors."""

from __future__ import annotations

import pytest

from .test_postgres import database_url, on_host  # noqa: F401 - the fixture, for one test


def send(scheduler, *args: str) -> dict:
    return scheduler.ok("--json", "msg", "send", *args).json["message"]


def test_msg_send_joins_the_body_and_prints_the_message(scheduler):
    result = scheduler.ok("--json", "msg", "send", "alice", "bob", "hello", "there")
    message = result.json["message"]
    assert result.json["ok"] is True
    assert (message["from_agent"], message["to_agent"], message["body"]) == (
        "alice",
        "bob",
        "hello there",
    )
    assert (message["kind"], message["priority"], message["status"]) == ("text", 0, "pending")
    plain = scheduler.ok("msg", "send", "alice", "bob", "-x", "--y")
    assert plain.stdout.startswith("Sent: {\n")
    assert '"body": "-x --y"' in plain.stdout


def test_msg_send_without_a_body_prints_its_usage(scheduler):
    for args in (("alice",), ("alice", "bob")):
        result = scheduler.run("msg", "send", *args)
        assert (result.returncode, result.stderr) == (1, "Usage: msg send <from> <to> <body>\n")
    failed = scheduler.run("--json", "msg", "send", "alice")
    assert failed.json == {"ok": False, "error": "Usage: msg send <from> <to> <body>"}


def test_messages_send_defaults_to_main_and_status(scheduler):
    message = scheduler.ok(
        "--json", "messages", "send", "--from", "build-42", "--body", "Starting step 2"
    ).json["message"]
    assert (message["to_agent"], message["kind"]) == ("main", "status")
    routed = scheduler.ok(
        "--json",
        "messages",
        "send",
        "--from",
        "ops",
        "--to",
        "bob",
        "--kind",
        "decision",
        "--channel",
        "slack",
        "--delivery-to",
        "C1",
        "--body",
        "ship it",
    ).json["message"]
    assert (routed["kind"], routed["channel"], routed["delivery_to"]) == ("decision", "slack", "C1")
    usage = (
        "Usage: messages send --from <label> [--to <agent>] [--kind <kind>]"
        ' [--channel <channel>] [--delivery-to <target>] --body "<text>"\n'
    )
    assert scheduler.run("messages", "send", "--from", "x").stderr == usage
    bad = scheduler.run("messages", "send", "--from", "x", "--kind", "memo", "--body", "b")
    assert bad.returncode == 1
    assert bad.stderr.startswith("Invalid message kind 'memo'. Valid: text, task, result")


def test_the_inbox_lists_unread_messages_in_inbox_order(scheduler):
    assert scheduler.ok("msg", "inbox", "bob").stdout == "Inbox empty\n"
    assert scheduler.ok("--json", "msg", "inbox", "bob").json == []
    text = send(scheduler, "alice", "bob", "plain")
    constraint = scheduler.ok(
        "--json", "messages", "send", "--from", "lead", "--to", "bob", "--kind", "constraint",
        "--body", "staging only",
    ).json["message"]  # fmt: skip
    everyone = send(scheduler, "alice", "broadcast", "all hands")
    send(scheduler, "alice", "carol", "not bob's")
    rows = scheduler.ok("--json", "msg", "inbox", "bob").json
    assert [r["id"] for r in rows] == [constraint["id"], text["id"], everyone["id"]]
    assert len(scheduler.ok("--json", "msg", "inbox", "bob", "1").json) == 1
    table = scheduler.ok("msg", "inbox", "bob").stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "FROM", "KIND", "SUBJECT"]
    assert constraint["id"][:8] in table
    bad = scheduler.run("msg", "inbox", "bob", "many")
    assert bad.returncode == 1 and "Usage: msg inbox <agent-id> [limit]" in bad.stderr


def test_outbox_thread_and_unread(scheduler):
    question = send(scheduler, "alice", "bob", "question?")
    reply = scheduler.ok("--json", "msg", "send", "bob", "alice", "answer").json["message"]
    outbox = scheduler.ok("--json", "msg", "outbox", "alice").json
    assert [r["id"] for r in outbox] == [question["id"]]
    assert scheduler.ok("msg", "outbox", "nobody").stdout == "Outbox empty\n"
    thread = scheduler.ok("--json", "msg", "thread", question["id"]).json
    assert [r["id"] for r in thread] == [question["id"]]  # the reply names no reply_to
    plain = scheduler.ok("msg", "thread", question["id"]).stdout
    assert plain == f"[alice -> bob] (pending) {question['created_at']}\n  question?\n\n"
    assert reply["reply_to"] is None
    assert scheduler.ok("--json", "msg", "unread", "bob").json == {"agent": "bob", "unread": 1}
    assert scheduler.ok("msg", "unread", "bob").stdout == "Unread: 1\n"


def test_ack_by_prefix_with_actor_and_note_then_receipts(scheduler):
    message = send(scheduler, "alice", "bob", "hi")
    acked = scheduler.ok("--json", "msg", "ack", message["id"][:8], "bob", "on", "it").json
    assert acked["ok"] is True and acked["id"] == message["id"]
    assert acked["status"] == "read" and acked["ack_at"] == acked["read_at"]
    assert set(acked) == {"ok", "id", "status", "ack_at", "read_at"}
    plain = scheduler.ok("msg", "ack", message["id"]).stdout
    assert plain.startswith('Acknowledged: {\n  "id": "')
    receipts = scheduler.ok("--json", "msg", "receipts", message["id"]).json
    assert [(r["event_type"], r["actor"], r["detail"]) for r in receipts] == [
        ("ack", "operator", None),
        ("ack", "bob", "on it"),
    ]
    assert "ACTOR" in scheduler.ok("msg", "receipts", message["id"]).stdout
    none = scheduler.ok("msg", "receipts", "0000-none")
    assert none.stdout == "No receipts for message\n"
    missing = scheduler.run("--json", "msg", "ack", "nope")
    assert missing.returncode == 1
    assert missing.json == {"ok": False, "error": "Message not found: nope"}


def test_read_readall_and_the_queue(scheduler):
    first = send(scheduler, "alice", "main", "one")
    send(scheduler, "alice", "main", "two")
    send(scheduler, "alice", "broadcast", "three")
    read = scheduler.ok("--json", "msg", "read", first["id"]).json
    assert read == {"ok": True, "message_id": first["id"], "read": True}
    assert scheduler.ok("msg", "read", "unknown-id").stdout == "Marked read\n"
    queue = scheduler.ok("--json", "queue").json
    assert (queue["agent"], queue["pending"], queue["delivered"]) == ("main", 2, 0)
    assert [m["body"] for m in queue["messages"]] == ["two", "three"]
    header = scheduler.ok("queue", "list", "main", "1").stdout.splitlines()[0]
    assert header == "Queue for agent: main | 2 pending | 0 delivered (showing last 1)"
    cleared = scheduler.ok("--json", "queue", "clear").json
    assert cleared == {"ok": True, "agent": "main", "changes": 2}
    assert scheduler.ok("queue").stdout == "Queue empty\n"
    empty = scheduler.ok("--json", "queue", "list", "bob").json
    assert empty == {"agent": "bob", "pending": 0, "delivered": 0, "messages": []}
    send(scheduler, "alice", "bob", "four")
    assert scheduler.ok("msg", "readall", "bob").stdout == "Marked 1 read\n"
    pruned = scheduler.ok("--json", "queue", "prune").json
    assert pruned["ok"] is True and pruned["pruned"] is True
    assert scheduler.ok("queue", "prune").stdout.startswith("Pruned old messages (delivered >3d")


def test_team_inbox_needs_a_team(scheduler):
    result = scheduler.run("msg", "team-inbox")
    assert result.returncode == 1
    assert result.stderr == "Usage: msg team-inbox <team-id> [limit] [member-id] [task-id]\n"
    assert scheduler.ok("msg", "team-inbox", "red").stdout == "Team inbox empty\n"


def test_the_inbox_consumer_needs_a_target(scheduler):
    result = scheduler.run("inbox-consumer")
    assert result.returncode == 1
    assert result.stderr == (
        "[inbox-consumer] missing delivery target; pass --to or set INBOX_DELIVERY_TO\n"
    )


def test_the_inbox_consumer_sends_pending_messages_once(scheduler, gateway):
    first = send(scheduler, "worker", "main", "backup done")
    send(scheduler, "worker", "broadcast", "stdout:\n[2026-03-31 00:21:03] INFO x\nNO_FLUSH")
    send(scheduler, "worker", "bob", "not main's")
    result = scheduler.ok("inbox-consumer", "--to", "telegram:42", "--brand", "Acme")
    assert result.stdout == "[inbox-consumer] delivered 2 message(s)\n"
    (sent,) = gateway.messages_sent()
    assert (sent["channel"], sent["target"]) == ("telegram", "42")
    assert sent["message"].startswith("Acme | Notification | ")
    assert sent["message"].endswith("\n\nbackup done")
    assert sent["idempotencyKey"] == f"{first['id']}:0"
    assert scheduler.ok("inbox-consumer", "--to", "42").stdout == ""
    assert len(gateway.messages_sent()) == 1
    assert scheduler.ok("--json", "msg", "unread", "main").json["unread"] == 0


def test_the_inbox_consumer_exits_1_when_a_send_fails(scheduler, gateway):
    message = send(scheduler, "worker", "main", "report")
    gateway.http_status = 500
    result = scheduler.run("inbox-consumer", "--to", "42", env={"INBOX_BRAND": "Acme"})
    assert result.returncode == 1
    assert result.stderr.startswith("[inbox-consumer] error: Delivery failed for 1 message(s): ")
    row = scheduler.ok("--json", "msg", "inbox", "main").json[0]
    assert (row["id"], row["status"], row["delivery_attempts"]) == (message["id"], "pending", 1)
    gateway.http_status = None
    env = {"INBOX_DELIVERY_TO": "42", "INBOX_BRAND": "Acme"}
    assert scheduler.ok("inbox-consumer", env=env).stdout.endswith("delivered 1 message(s)\n")
    (sent,) = gateway.messages_sent()
    assert sent["message"].startswith("Acme | Notification | ")


def test_the_message_schema_lists_kinds_and_statuses(scheduler):
    schema = scheduler.ok("schema", "message").json
    assert schema["kinds"][:3] == ["text", "task", "result"] and len(schema["kinds"]) == 10
    assert schema["statuses"] == ["pending", "delivered", "read", "expired", "failed"]
    assert scheduler.ok("schema", "messages").json == schema


def test_a_messages_history_is_shown_by_a_prefix_of_its_id(scheduler):
    message = send(scheduler, "alice", "bob", "hi")
    scheduler.ok("msg", "ack", message["id"][:8])
    history = scheduler.ok("events", "show", message["id"][:8]).stdout
    assert "Message.Sent" in history and "Message.Acknowledged" in history


@pytest.mark.postgres
def test_messages_on_one_postgres_log_are_read_and_acked_from_another_host(
    tmp_path,
    database_url,  # noqa: F811 - the fixture
):
    alpha = on_host(tmp_path, "alpha", database_url)
    beta = on_host(tmp_path, "beta", database_url)
    message = send(alpha, "alpha-agent", "bob", "from alpha")
    assert [m["id"] for m in beta.ok("--json", "msg", "inbox", "bob").json] == [message["id"]]
    beta.ok("msg", "ack", message["id"], "bob")
    (row,) = alpha.ok("--json", "msg", "thread", message["id"]).json
    assert row["status"] == "read"
    receipts = alpha.ok("--json", "msg", "receipts", message["id"]).json
    assert [(r["event_type"], r["actor"]) for r in receipts] == [("ack", "bob")]
