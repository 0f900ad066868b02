"""The post office in a real daemon: a spawn message creates and runs a job, the inbox
consumer sends through the (fake) gateway with telegram splitting, and an agent turn's
prompt carries the agent's pending messages."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time

from ocsched.adapters.settings import Settings
from ocsched.commands import messages as post
from ocsched.commands.context import Context
from ocsched.domain.message_spawn import spawned_job_id

from .conftest import wait_until
from .test_agent_jobs import agent_job
from .test_daemon import finished_runs


def send(scheduler, from_agent: str, to_agent: str, body: str, **fields) -> dict:
    ctx = Context(settings=Settings.from_environment(scheduler.env), actor="tester")
    try:
        return post.send_message(ctx, from_agent, to_agent, body, **fields)
    finally:
        ctx.close()


def query(scheduler, sql: str, *values) -> list[dict]:
    with contextlib.closing(sqlite3.connect(scheduler.db_path)) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(sql, values).fetchall()]


def test_spawn_messages_create_jobs_that_run_at_once(scheduler, daemons, tmp_path):
    daemons.start()
    messages = []
    for name, cron in (("with cron", {"schedule_cron": "0 3 * * *"}), ("one-shot", {})):
        marker = tmp_path / f"{name}.txt"
        spec = {
            "name": name,
            "session_target": "shell",
            "payload_message": f"echo ran > '{marker}'",
        }
        messages.append(
            (send(scheduler, "worker", "main", json.dumps({**spec, **cron}), kind="spawn"), marker)
        )
    for message, marker in messages:
        job_id = spawned_job_id(message["id"])
        runs = wait_until(
            lambda job_id=job_id: query(
                scheduler, "SELECT * FROM runs WHERE job_id = ? AND status = 'ok'", job_id
            ),
            what="the spawned job's run",
        )
        assert len(runs) == 1 and marker.read_text() == "ran\n"
        sql = "SELECT status, delivered_at FROM messages WHERE id = ?"
        (row,) = query(scheduler, sql, message["id"])
        assert row["status"] == "delivered" and row["delivered_at"]
        # delete_after_run: the job is gone after its successful run
        wait_until(
            lambda job_id=job_id: not query(scheduler, "SELECT id FROM jobs WHERE id = ?", job_id)
        )


def test_the_daemon_sends_an_agents_inbox_split_for_telegram(scheduler, daemons, gateway):
    scheduler.env.update(INBOX_DELIVERY_TO="telegram:4242", INBOX_BRAND="Acme")
    daemons.start()
    long_body = "\n".join(f"line {i} " + "é" * 40 for i in range(120))  # > 4096 bytes
    message = send(scheduler, "worker", "main", long_body, subject="Report")
    sent = wait_until(lambda: len(gateway.messages_sent()) == 3 and gateway.messages_sent())
    assert [m["message"][:6] for m in sent] == ["[1/3] ", "[2/3] ", "[3/3] "]
    assert [m["idempotencyKey"] for m in sent] == [f"{message['id']}:{i}" for i in range(3)]
    assert all(m["channel"] == "telegram" and m["target"] == "4242" for m in sent)
    assert all(len(m["message"].encode()) <= 4096 for m in sent)
    assert sent[0]["message"].startswith(f"[1/{len(sent)}] Acme | Report | ")
    row = wait_until(
        lambda: query(
            scheduler, "SELECT * FROM messages WHERE id = ? AND status = 'read'", message["id"]
        )
    )[0]
    assert row["delivery_attempts"] == 1
    receipts = query(
        scheduler,
        "SELECT event_type, actor, detail FROM message_receipts WHERE message_id = ?"
        " ORDER BY rowid",
        message["id"],
    )
    assert receipts == [
        {"event_type": "attempt", "actor": "inbox-consumer", "detail": None},
        {
            "event_type": "ack",
            "actor": "inbox-consumer",
            "detail": "Delivered to telegram:telegram:4242",
        },
    ]


def test_an_agent_turn_reads_its_pending_messages_and_they_become_delivered(
    scheduler, daemons, gateway
):
    note = send(scheduler, "lead", "bob", "Use the staging database", kind="constraint")
    send(scheduler, "lead", "carol", "not for bob")
    job = scheduler.add(agent_job(agent_id="bob", delivery_mode="none"), "--in", "1s")
    daemons.start()
    finished_runs(scheduler, job["id"])
    (turn,) = gateway.calls_of("agent")
    assert (
        "\n\n--- Pending Messages ---\nFrom: lead | constraint | (no subject)\n"
        "[constraint] Use the staging database\n---\n\nSummarize the news"
    ) in turn["message"]
    assert "not for bob" not in turn["message"]
    (row,) = query(scheduler, "SELECT status FROM messages WHERE id = ?", note["id"])
    assert row["status"] == "delivered"


def test_the_daemon_expires_a_message_the_second_after_its_time(scheduler, daemons):
    from datetime import UTC, datetime, timedelta

    from ocsched.domain.schedule import to_ts

    daemons.start()
    soon = to_ts(datetime.now(UTC) + timedelta(seconds=2))
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message = send(scheduler, "lead", "bob", "only for now", expires_at=soon)
    kept = send(scheduler, "lead", "bob", "for the hour", expires_at=later)
    wait_until(
        lambda: query(
            scheduler, "SELECT id FROM messages WHERE id = ? AND status = 'expired'", message["id"]
        ),
        timeout=10,
        what="the message to expire",
    )
    expired_at = datetime.now(UTC)
    assert expired_at >= datetime.fromisoformat(soon).replace(tzinfo=UTC) + timedelta(seconds=1)
    (row,) = query(scheduler, "SELECT status FROM messages WHERE id = ?", kept["id"])
    assert row["status"] == "pending"


def test_the_watching_inbox_consumer_sends_what_arrives_and_stops_on_sigterm(scheduler, gateway):
    import signal
    import subprocess

    from .conftest import OCSCHED

    scheduler.home.mkdir(parents=True, exist_ok=True)
    scheduler.ok("msg", "unread", "main")  # the store exists before the watch starts
    log = scheduler.home.parent / "consumer.log"
    with open(log, "w") as output:
        consumer = subprocess.Popen(
            [*OCSCHED, "inbox-consumer", "--to", "42", "--brand", "Acme", "--watch"],
            env=scheduler.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "poll fallback enabled" in log.read_text(), what="the watch")
            message = send(scheduler, "worker", "main", "first result")
            (sent,) = wait_until(gateway.messages_sent, what="the send")
            assert sent["message"].endswith("\n\nfirst result")
            assert sent["idempotencyKey"] == f"{message['id']}:0"
            send(scheduler, "worker", "main", "second result")
            wait_until(lambda: len(gateway.messages_sent()) == 2, what="the second send")
        finally:
            consumer.send_signal(signal.SIGTERM)
            status = consumer.wait(timeout=15)
    assert status == 0
    text = log.read_text()
    assert "[inbox-consumer] delivered 1 message(s)" in text
    assert text.rstrip().endswith("[inbox-consumer] SIGTERM; exiting")


def test_the_daemon_sends_the_inbox_of_an_agent_registered_with_a_delivery_target(
    scheduler, daemons, gateway
):
    daemons.start()
    scheduler.ok(
        "agents", "register", "ops", "--delivery-to", "123", "--delivery-channel", "telegram"
    )
    message = send(scheduler, "worker", "ops", "disk at 91%", subject="Alert")
    (sent,) = wait_until(gateway.messages_sent, what="the send to ops' target")
    assert (sent["channel"], sent["target"]) == ("telegram", "123")
    assert sent["message"].startswith("Scheduler | Alert | ")
    assert sent["message"].endswith("\n\ndisk at 91%")
    assert sent["idempotencyKey"] == f"{message['id']}:0"
    wait_until(
        lambda: query(
            scheduler, "SELECT id FROM messages WHERE id = ? AND status = 'read'", message["id"]
        ),
        what="the message read",
    )
    # --no-delivery stops it: ops' next message stays pending while qa's goes out
    scheduler.ok("agents", "register", "ops", "--no-delivery")
    scheduler.ok("agents", "register", "qa", "--delivery-to", "456")
    kept = send(scheduler, "worker", "ops", "not sent")
    send(scheduler, "worker", "qa", "sent")
    wait_until(lambda: len(gateway.messages_sent()) == 2, what="the send to qa's target")
    time.sleep(1.0)  # (a send to ops would have gone out with qa's)
    assert [m["target"] for m in gateway.messages_sent()] == ["123", "456"]
    # an agent's own brand heads its messages
    scheduler.ok("agents", "register", "qa", "--brand", "QA Desk")
    send(scheduler, "worker", "qa", "branded", subject="Note")
    wait_until(lambda: len(gateway.messages_sent()) == 3, what="the branded send")
    assert gateway.messages_sent()[2]["message"].startswith("QA Desk | Note | ")
    (row,) = query(scheduler, "SELECT status FROM messages WHERE id = ?", kept["id"])
    assert row["status"] == "pending"
