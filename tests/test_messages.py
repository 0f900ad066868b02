"""The post office (spec §21, §13.3, §11.3): the Message aggregate, its rules and
reactions against a real store, and its read model rebuilt from the log."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ocsched.commands import messages as post
from ocsched.commands.context import Context
from ocsched.commands.output import CommandError
from ocsched.domain.message_rules import expiry_instant, prune_rule
from ocsched.domain.message_spawn import spawned_job_id
from ocsched.domain.message_texts import age, clean_body, consumer_text, prompt_block
from ocsched.domain.reactions import messages as reactions
from ocsched.domain.reactions.plan import reactor_meta
from ocsched.projections import views
from ocsched.projections.messages import projection
from ocsched.projections.runner import rebuild

from .test_reactions import NOW, OWNER
from .test_reactions import Store as ReactionStore


class Store(ReactionStore):
    def send(self, from_agent="alice", to_agent="bob", body="hi", **fields) -> dict:
        return post.send_message(self.ctx, from_agent, to_agent, body, **fields)

    def load(self, message_id: str):
        return self.ctx.log.repository.get(message_id)

    def later(self, seconds: float) -> None:
        self.ctx.now = self.ctx.now + timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path):
    store = Store(tmp_path)
    yield store
    store.ctx.close()


# Sending


def test_a_sent_message_is_pending_with_the_anchors_columns(store):
    row = store.send(kind="task", subject="s", metadata={"a": [1]}, priority=2)
    assert row["status"] == "pending" and row["kind"] == "task"
    assert row["metadata"] == {"a": [1]} and row["priority"] == 2
    assert row["created_at"] == "2026-12-05 03:00:00"
    assert row["delivery_attempts"] == 0 and row["ack_required"] == 0
    assert list(row)[:3] == ["id", "from_agent", "to_agent"]
    assert list(row)[-3:] == ["job_id", "run_id", "owner"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"from_agent": ""}, "from_agent is required"),
        ({"to_agent": None}, "to_agent is required"),
        ({"body": None}, "body is required"),
        (
            {"kind": "memo"},
            "Invalid message kind 'memo'. Valid: text, task, result, status, system, spawn, "
            "decision, constraint, fact, preference",
        ),
    ],
)
def test_a_message_missing_what_it_needs_is_refused_and_nothing_is_recorded(store, fields, error):
    arguments = {"from_agent": "a", "to_agent": "b", "body": "x", **fields}
    with pytest.raises(CommandError, match="^" + error.replace("(", r"\(") + "$"):
        post.send_message(store.ctx, **arguments)
    assert post.outbox(store.ctx, "a", 20) == []


def test_an_empty_body_is_a_body(store):
    assert store.send(body="")["body"] == ""


# Inbox order and visibility


def test_the_inbox_orders_by_kind_then_priority_then_age_with_broadcasts(store):
    text = store.send(body="text")
    store.later(1)
    urgent = store.send(body="urgent text", priority=2)
    fact = store.send(body="fact", kind="fact")
    constraint = store.send(body="constraint", kind="constraint", to_agent="broadcast")
    store.send(body="not mine", to_agent="carol")
    decision = store.send(body="decision", kind="decision")
    ids = [row["id"] for row in post.inbox(store.ctx, "bob", 20)]
    assert ids == [constraint["id"], decision["id"], fact["id"], urgent["id"], text["id"]]
    assert [row["id"] for row in post.inbox(store.ctx, "bob", 2)] == ids[:2]


def test_messages_sent_in_the_same_second_keep_the_order_they_were_sent_in(store):
    ids = [store.send(body=str(i))["id"] for i in range(5)]
    assert [row["id"] for row in post.inbox(store.ctx, "bob", 20)] == ids


# Status changes and receipts


def test_an_ack_marks_read_once_and_leaves_a_receipt_each_time(store):
    message = store.send()
    first = post.acknowledge(store.ctx, message["id"], "operator", "seen it")
    store.later(5)
    second = post.acknowledge(store.ctx, message["id"], "bob", None)
    assert first["status"] == second["status"] == "read"
    assert second["ack_at"] == second["read_at"] == "2026-12-05 03:00:00"
    receipts = post.receipts(store.ctx, message["id"], 20)
    assert [(r["event_type"], r["actor"], r["detail"]) for r in receipts] == [
        ("ack", "bob", None),
        ("ack", "operator", "seen it"),
    ]


def test_acking_an_unknown_message_fails(store):
    with pytest.raises(CommandError, match="^Message not found: nope$"):
        post.acknowledge(store.ctx, "nope", "operator", None)


def test_read_marks_unread_messages_only_and_records_an_agent_receipt(store):
    message = store.send()
    post.mark_read(store.ctx, message["id"])
    post.mark_read(store.ctx, message["id"])
    post.mark_read(store.ctx, "unknown")  # no existence check, nothing recorded
    row = post.get_message(store.ctx, message["id"])
    assert row is not None and row["status"] == "read" and row["ack_at"] == row["read_at"]
    receipts = post.receipts(store.ctx, message["id"], 20)
    assert [(r["event_type"], r["actor"]) for r in receipts] == [("ack", "agent")]


def test_read_all_marks_the_agents_and_broadcast_messages_read_without_receipts(store):
    mine = store.send()
    everyone = store.send(to_agent="broadcast")
    other = store.send(to_agent="carol")
    assert post.unread_count(store.ctx, "bob") == 2
    assert post.read_all(store.ctx, "bob") == 2
    assert post.read_all(store.ctx, "bob") == 0
    assert post.unread_count(store.ctx, "bob") == 0
    assert post.unread_count(store.ctx, "carol") == 1  # the broadcast is read for everybody
    assert post.receipts(store.ctx, mine["id"], 20) == []
    assert post.get_message(store.ctx, everyone["id"])["status"] == "read"
    assert post.get_message(store.ctx, other["id"])["status"] == "pending"


def test_the_queue_counts_unread_and_shows_the_delivered_among_them(store):
    store.send()
    second = store.send()
    message = store.load(second["id"])
    message.deliver("dispatcher", reactor_meta(OWNER, "run-1"), NOW)
    store.ctx.save(message)
    queue = post.queue(store.ctx, "bob", 1)
    assert (queue["agent"], queue["pending"], queue["delivered"]) == ("bob", 2, 0)
    assert len(queue["messages"]) == 1
    assert post.queue(store.ctx, "bob", 50)["delivered"] == 1


def test_threads_hold_the_message_and_its_direct_replies_oldest_first(store):
    question = store.send(body="question")
    store.later(1)
    answer = store.send(from_agent="bob", to_agent="alice", body="answer", reply_to=question["id"])
    store.send(body="unrelated")
    ids = [row["id"] for row in post.thread(store.ctx, question["id"])]
    assert ids == [question["id"], answer["id"]]


def test_a_team_inbox_shows_every_status_and_filters_by_member_and_task(store):
    general = store.send(team_id="t1", to_agent="x")
    for_m1 = store.send(team_id="t1", member_id="m1", task_id="k1", to_agent="x")
    store.send(team_id="t1", member_id="m2", to_agent="x")
    store.send(team_id="t2", to_agent="x")
    post.acknowledge(store.ctx, general["id"], "x", None)
    ids = [row["id"] for row in post.team_inbox(store.ctx, "t1", 20, "m1", None)]
    assert ids == [general["id"], for_m1["id"]]
    assert [row["id"] for row in post.team_inbox(store.ctx, "t1", 20, None, "k1")] == [for_m1["id"]]


# Expiry


def test_expiry_times_are_read_as_ts_or_iso_and_expire_the_second_after():
    assert expiry_instant("2026-12-05 03:00:00") == NOW + timedelta(seconds=1)
    assert expiry_instant("2026-12-05T05:00:00+02:00") == NOW + timedelta(seconds=1)
    assert expiry_instant("2026-12-05T03:00:00Z") == NOW + timedelta(seconds=1)
    assert expiry_instant("tomorrow") is None and expiry_instant(None) is None


def test_an_unread_message_expires_after_its_time_and_a_read_one_does_not(store):
    due = store.send(expires_at="2026-12-05 03:00:10")
    read = store.send(expires_at="2026-12-05 03:00:10")
    post.acknowledge(store.ctx, read["id"], "bob", None)
    assert not reactions.expire(store.load(due["id"]), owner=OWNER, now=NOW)
    later = NOW + timedelta(seconds=11)
    plan = reactions.expire(store.load(due["id"]), owner=OWNER, now=later)
    store.save(plan)
    assert post.get_message(store.ctx, due["id"])["status"] == "expired"
    assert not reactions.expire(store.load(read["id"]), owner=OWNER, now=later)
    acked = post.acknowledge(store.ctx, due["id"], "bob", None)
    assert acked["status"] == "expired" and acked["ack_at"] is not None


# Spawn messages (spec §21.7)


def spawn_body(**fields) -> str:
    import json

    spec = {"payload_message": "echo spawned", "session_target": "shell"}
    spec.update(fields)
    return json.dumps(spec)


def test_a_spawn_message_creates_a_job_due_a_second_ago_and_is_consumed_with_it(store):
    message = store.send(kind="spawn", body=spawn_body(schedule_cron="0 3 * * *"))
    plan = reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)
    store.save(plan)
    job = views.job(store.db(), spawned_job_id(message["id"]))
    assert job is not None
    assert job["name"] == "Spawned by alice" and job["agent_id"] == "bob"
    assert job["next_run_at"] == "2026-12-05 02:59:59"
    assert (job["delete_after_run"], job["origin"], job["run_timeout_ms"]) == (1, "system", 300000)
    assert job["delivery_opt_out_reason"] == "spawned-child"
    row = post.get_message(store.ctx, message["id"])
    assert row["status"] == "delivered" and row["delivered_at"] == "2026-12-05 03:00:00"
    assert not reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "Spawn message parse error"),
        ('{"payload_message": "  "}', "Spawn message missing payload_message"),
        ("[1]", "Spawn message missing payload_message"),
        (spawn_body(run_timeout_ms=-5), "run_timeout_ms"),
    ],
)
def test_a_spawn_message_that_makes_no_valid_job_is_consumed_once_and_says_why(store, body, reason):
    message = store.send(kind="spawn", body=body)
    plan = reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)
    assert [type(record).__name__ for record in plan.records] == ["Message"]
    assert reason in plan.notes[0]
    store.save(plan)
    assert post.get_message(store.ctx, message["id"])["status"] == "delivered"
    assert not reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)


def test_a_spawn_without_a_cron_is_a_one_shot_job_for_now(store):
    body = '{"name":"Dynamic Task","payload_message":"analyze results","run_now":true}'
    message = store.send(kind="spawn", to_agent="scheduler", body=body)
    plan = reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)
    store.save(plan)
    job = views.job(store.db(), spawned_job_id(message["id"]))
    assert job is not None and job["name"] == "Dynamic Task"
    assert (job["schedule_kind"], job["schedule_at"]) == ("at", "2026-12-05 03:00:00")
    assert (job["session_target"], job["agent_id"]) == ("isolated", "scheduler")
    assert job["next_run_at"] == "2026-12-05 02:59:59"


def test_a_spawn_from_a_jobs_message_would_be_its_child_and_is_refused_as_the_anchor_does(
    store,
):
    parent = store.add()
    message = store.send(kind="spawn", body=spawn_body(trigger_on="success"), job_id=parent["id"])
    plan = reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)
    assert [type(record).__name__ for record in plan.records] == ["Message"]
    assert "child jobs require trigger_on" in plan.notes[0]


def test_bad_spawn_targets_and_modes_fall_back_with_a_warning(store):
    body = spawn_body(schedule_cron="0 3 * * *", session_target="main", delivery_mode="loud")
    body = body.replace('"echo spawned"', '"say hi"')
    message = store.send(kind="spawn", body=body)
    plan = reactions.spawn(store.load(message["id"]), owner=OWNER, now=NOW, facts=store.facts)
    assert any('invalid session_target "main"' in note for note in plan.notes)
    assert any('invalid delivery_mode "loud"' in note for note in plan.notes)
    job = plan.records[1]
    assert job.spec.session_target == "isolated" and job.spec.delivery_mode == "none"


# Prompt injection (spec §11.3, step 6)


def test_up_to_five_pending_messages_are_injected_and_become_delivered(store):
    for i in range(6):
        store.send(body=f"note {i}", subject="s" if i == 0 else None)
    store.send(kind="decision", body="x" * 600, owner="ops")
    rows = post.inbox(store.ctx, "bob", 20, ("pending",))
    block, plan = reactions.inject(
        rows, [store.load(r["id"]) for r in rows], run_id="run-1", owner=OWNER, now=NOW
    )
    store.save(plan)
    lines = block.split("\n")
    assert lines[0] == "--- Pending Messages ---"
    assert lines[1] == "From: alice | decision | (no subject)"
    assert lines[2] == "[decision] (owner: ops) " + "x" * 500
    assert lines[3:5] == ["[... message truncated]", "---"]
    assert lines[5:8] == ["From: alice | text | s", "note 0", "---"]
    assert block.count("From: ") == 5
    assert post.unread_count(store.ctx, "bob") == 7
    assert len(post.inbox(store.ctx, "bob", 20, ("pending",))) == 2
    receipts = post.receipts(store.ctx, rows[0]["id"], 20)
    assert [(r["event_type"], r["attempt"], r["actor"]) for r in receipts] == [
        ("attempt", 1, "dispatcher")
    ]


def test_no_pending_messages_make_no_block():
    assert prompt_block([]) == ""


# The inbox consumer's texts (spec §13.3)


def test_the_body_loses_sentinels_stream_labels_blank_and_log_lines():
    body = "stdout:\n[2026-03-31 00:21:03] INFO starting\n\nresult: 3 rows\n  \nHEARTBEAT_OK"
    assert clean_body(body) == "result: 3 rows"
    assert clean_body("  NO_FLUSH ") == ""
    assert clean_body("[2026-03-31 00:21:03] ERROR kept") == "[2026-03-31 00:21:03] ERROR kept"


def test_the_consumer_text_has_the_brand_line_with_subject_and_age():
    message = {"body": "done", "subject": None, "created_at": "2026-12-05 02:58:00"}
    assert consumer_text(message, "Acme", NOW) == "Acme | Notification | 2m ago\n\ndone"
    assert consumer_text({**message, "body": "IDEMPOTENT_SKIP"}, "Acme", NOW) is None
    assert age("2026-12-04 01:00:00", NOW) == "1d ago"
    assert age("2026-12-05 01:00:00", NOW) == "2h ago"
    assert age("2026-12-05T03:00:00Z", NOW) == "0s ago"
    assert age(None, NOW) == "unknown"


# Retention (spec §26)


def test_retention_rules_go_by_kind_status_and_age():
    old = (NOW - timedelta(days=4)).isoformat(sep=" ")[:19]
    ancient = (NOW - timedelta(days=31)).isoformat(sep=" ")[:19]
    assert prune_rule({"kind": "result", "status": "pending", "created_at": old}, NOW)
    assert prune_rule({"kind": "text", "status": "delivered", "created_at": old}, NOW)
    assert prune_rule({"kind": "text", "status": "read", "created_at": old}, NOW) is None
    assert prune_rule({"kind": "text", "status": "read", "created_at": ancient}, NOW)
    assert prune_rule({"kind": "text", "status": "pending", "created_at": ancient}, NOW) is None


def test_pruning_removes_rows_and_receipts_and_unlinks_replies(store):
    store.ctx.now = NOW - timedelta(days=5)
    old = store.send(kind="result")
    post.acknowledge(store.ctx, old["id"], "bob", None)
    store.ctx.now = NOW
    reply = store.send(reply_to=old["id"])
    assert post.prune_messages(store.ctx) == 1
    assert post.get_message(store.ctx, old["id"]) is None
    assert post.receipts(store.ctx, old["id"], 20) == []
    assert post.get_message(store.ctx, reply["id"])["reply_to"] is None
    assert post.prune_messages(store.ctx) == 0


# The read model


def _tables(path: Path) -> dict[str, list]:
    with sqlite3.connect(path) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in projection.tables
        }


def test_a_rebuild_reproduces_the_message_tables_row_for_row(store):
    store.ctx.now = NOW - timedelta(days=5)
    pruned = store.send(kind="system")
    store.ctx.now = NOW
    first = store.send(kind="task", metadata={"k": 1}, expires_at="2026-12-05 03:00:05")
    store.send(to_agent="broadcast", reply_to=pruned["id"])
    post.acknowledge(store.ctx, first["id"], "op", "note")
    spawn = store.send(kind="spawn", body="{}")
    store.save(reactions.spawn(store.load(spawn["id"]), owner=OWNER, now=NOW, facts=store.facts))
    failed = store.send(to_agent="main")
    store.save(
        reactions.send_failed(store.load(failed["id"]), "boom", reactor_meta(OWNER, "x"), NOW)
    )
    post.read_all(store.ctx, "carol")
    post.prune_messages(store.ctx)
    path = Path(store.ctx.settings.database)
    live = _tables(path)
    assert len(live["messages"]) == 4 and len(live["message_receipts"]) == 3
    store.ctx.close()
    fresh = Context(settings=store.ctx.settings, actor="tester")
    try:
        rebuild(fresh.log, fresh.store, projection)
    finally:
        fresh.close()
    assert _tables(path) == live


# The inbox consumer's drain through the fake gateway, in process


def drain(store, rows, consumer, *, http_status=None):
    import asyncio

    from ocsched.adapters.gateway import GatewayClient, GatewaySettings
    from ocsched.adapters.senders import ChatSender
    from ocsched.commands.inbox_consumer import command_outlet
    from ocsched.commands.inbox_consumer import drain as drain_rows
    from ocsched.testing.fake_gateway import FakeGateway

    async def go():
        async with FakeGateway(token="t") as fake:
            fake.http_status = http_status
            settings = GatewaySettings(url=fake.url, token="t", token_source="test")
            async with GatewayClient(settings) as client:
                outlet = command_outlet(store.ctx, ChatSender(lambda: client), pause_s=0)
                done = await drain_rows(rows, consumer, outlet)
                return done, fake.messages_sent()

    return asyncio.run(go())


def test_the_consumer_sends_each_message_to_its_target_and_acknowledges_it(store):
    from ocsched.commands.deliveries import add_alias
    from ocsched.commands.inbox_consumer import Consumer

    store.ctx.now = datetime.now(UTC)  # (the consumer's clock is the real one: the ages)
    add_alias(store.ctx, "ops", "slack", "C42", None)
    plain = store.send(to_agent="main", body="stdout:\nall good\nHEARTBEAT_OK", subject="Backup")
    aliased = store.send(to_agent="main", body="to ops", delivery_to="@ops")
    empty = store.send(to_agent="main", body="NO_FLUSH")
    rows = post.inbox(store.ctx, "main", 50, ("pending",))
    done, sent = drain(store, rows, Consumer(to="telegram/77", brand="Acme"))
    assert (done.delivered, done.errors) == (3, [])
    ages = re.compile(r" \| [0-9]s ago\n")  # (created_at is whole seconds)
    assert [(m["channel"], m["target"], ages.sub(" | Ns ago\n", m["message"])) for m in sent] == [
        ("telegram", "77", "Acme | Backup | Ns ago\n\nall good"),
        ("slack", "C42", "Acme | Notification | Ns ago\n\nto ops"),
    ]
    notes = {
        row_id: post.receipts(store.ctx, row_id, 20)[0]["detail"]
        for row_id in (plain["id"], aliased["id"], empty["id"])
    }
    assert notes == {
        plain["id"]: "Delivered to telegram:telegram/77",
        aliased["id"]: "Delivered to telegram:@ops",
        empty["id"]: "Suppressed (empty after sentinel strip)",
    }
    assert post.unread_count(store.ctx, "main") == 0


def test_a_failed_send_leaves_the_message_pending_with_an_error_receipt(store):
    from ocsched.commands.inbox_consumer import Consumer

    message = store.send(to_agent="main", body="x" * 5000)
    rows = post.inbox(store.ctx, "main", 50, ("pending",))
    done, sent = drain(store, rows, Consumer(to="42"), http_status=500)
    assert done.delivered == 0 and len(done.errors) == 1 and sent == []
    row = post.get_message(store.ctx, message["id"])
    assert (row["status"], row["delivery_attempts"]) == ("pending", 1)
    assert row["last_error"] == done.errors[0]
    (receipt,) = post.receipts(store.ctx, message["id"], 20)
    assert (receipt["event_type"], receipt["attempt"]) == ("error", 1)
    done, sent = drain(store, rows, Consumer(to="42"))
    assert done.delivered == 1 and [m["message"][:6] for m in sent] == ["[1/2] ", "[2/2] "]
    assert post.get_message(store.ctx, message["id"])["delivery_attempts"] == 2


def test_a_failed_send_is_due_again_after_15_s_then_60_s_and_other_messages_are_not_held(
    store,
):
    from ocsched.projections import message_views

    failed = store.send(to_agent="main")
    waiting = store.send(to_agent="main", body="next")
    meta = reactor_meta(OWNER, "x")
    store.save(reactions.send_failed(store.load(failed["id"]), "boom", meta, NOW))
    db = store.db()
    assert message_views.next_due(db, ["main"]) == "2026-12-05 03:00:15"
    assert message_views.next_due(db, ["bob"]) is None
    due_now = message_views.sends_due(db, "main", "2026-12-05 03:00:00", 50)
    assert [row["id"] for row in due_now] == [waiting["id"]]
    due_later = message_views.sends_due(db, "main", "2026-12-05 03:00:15", 50)
    assert [row["id"] for row in due_later] == [failed["id"], waiting["id"]]
    later = NOW + timedelta(seconds=15)
    store.save(reactions.send_failed(store.load(failed["id"]), "boom", meta, later))
    assert message_views.next_due(store.db(), ["main"]) == "2026-12-05 03:01:15"
