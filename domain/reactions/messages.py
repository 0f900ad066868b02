"""The post office's decisions (spec §21, §13.3, §11.3): consuming a spawn request,
expiring a message, injecting an inbox into a prompt, what a consumer's send records,
and message retention."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.chain import check_parent
from ocsched.domain.delivery import normalize_target, split_message
from ocsched.domain.errors import DomainError
from ocsched.domain.message import Message
from ocsched.domain.message_rules import prune_rule
from ocsched.domain.message_spawn import SpawnRefused, spawn_job_spec, spawned_job_id
from ocsched.domain.message_texts import (
    CONSUMER_ACTOR,
    PROMPT_MESSAGE_LIMIT,
    SUPPRESSED_NOTE,
    consumer_text,
    prompt_block,
)
from ocsched.domain.schedule import to_ts

from .facts import Facts
from .plan import Plan, Row, reactor_meta

PROMPT_ACTOR = "dispatcher"


def spawn(message: Message, *, owner: str, now: datetime, facts: Facts) -> Plan:
    """Spec §21.7: a spawn request becomes a job due a second ago (so the daemon runs it at
    once), saved with the message marked consumed and delivered; a request that makes no
    valid job is consumed all the same, its reason logged."""
    meta = reactor_meta(owner, f"spawn/{message.id}")
    job_id = spawned_job_id(message.id)
    try:
        spec, warnings = spawn_job_spec(
            message.body,
            from_agent=message.from_agent,
            to_agent=message.to_agent,
            job_id=message.job_id,
        )
        job = _spawned_job(spec, job_id, meta, now, facts)
    except (SpawnRefused, DomainError) as error:
        if not message.handle_spawn(None, str(error), meta, now):
            return Plan()
        return Plan([message], notes=[f"spawn message {message.id}: {error}"])
    if not message.handle_spawn(job_id, None, meta, now):
        return Plan()
    notes = [f"message {message.id}: {warning}" for warning in warnings]
    notes.append(f"spawned job {job_id} ({spec['name']}) from message {message.id}")
    return Plan([message, job], notes=notes)


def _spawned_job(spec: dict, job_id: str, meta: EventMeta, now: datetime, facts: Facts):
    from ocsched.domain.job import new_job
    from ocsched.domain.validation import validate_job_spec

    if "parent_id" not in spec and "schedule_cron" not in spec:
        # The anchor's own example (no cron) is refused there as a root without a cron:
        # here it is a one-shot job for now.
        spec = {**spec, "schedule_kind": "at", "schedule_at": to_ts(now)}
    normalized = validate_job_spec(spec)
    if normalized.get("parent_id"):

        def parent_of(candidate: str) -> str | None:
            row = facts.job(candidate)
            if row is None:
                raise KeyError(candidate)
            return row["parent_id"]

        check_parent(job_id, normalized["parent_id"], parent_of)
    normalized["next_run_at"] = to_ts(now - timedelta(seconds=1))
    return new_job(normalized, job_id, meta, now)


def expire(message: Message, *, owner: str, now: datetime) -> Plan:
    """Spec §21.5: an unread message past its `expires_at` becomes `expired`."""
    if not message.expire(reactor_meta(owner, f"expire/{message.id}"), now):
        return Plan()
    return Plan([message])


def inject(
    rows: list[Row], messages: list[Message], *, run_id: str, owner: str, now: datetime
) -> tuple[str, Plan]:
    """Spec §11.3 step 6: up to 5 pending messages (inbox order) as the prompt's block,
    each marked delivered by the run that reads them. `rows` and `messages` are the same
    messages (read model rows, aggregates); only those still pending are injected."""
    meta = reactor_meta(owner, run_id)
    injected: list[Row] = []
    records: list[Message] = []
    for row, message in zip(rows, messages, strict=True):
        if len(injected) >= PROMPT_MESSAGE_LIMIT:
            break
        if message.deliver(PROMPT_ACTOR, meta, now):
            injected.append(row)
            records.append(message)
    return prompt_block(injected), Plan(records)


# The inbox consumer (spec §13.3)


def consumer_target(
    message: Row, channel: str | None, target: str, alias_of: Callable[[str], Row | None]
) -> tuple[str | None, str]:
    """Where a message goes: its own `channel`/`delivery_to`, else the consumer's; the
    target's channel prefix read (spec §13.4), then an alias applied."""
    chosen_channel, chosen = normalize_target(
        message.get("channel") or channel, message.get("delivery_to") or target
    )
    found = alias_of(chosen.removeprefix("@"))
    if found is not None:
        return found["channel"], found["target"]
    return chosen_channel, chosen


def consumer_chunks(message: Row, channel: str | None, brand: str, now: datetime) -> list[str]:
    """The texts a message is sent as (split for telegram); none when nothing is left
    after the cleanup."""
    text = consumer_text(message, brand, now)
    return [] if text is None else split_message(text, channel)


def suppressed(message: Message, meta: EventMeta, now: datetime) -> Plan:
    """Empty after the cleanup: acknowledged without a send."""
    message.acknowledge(CONSUMER_ACTOR, SUPPRESSED_NOTE, meta, now)
    return Plan([message])


def sent(message: Message, where: str, meta: EventMeta, now: datetime) -> Plan:
    """Every chunk went out: an `attempt` receipt, then acknowledged (read)."""
    message.record_attempt(CONSUMER_ACTOR, None, meta, now)
    message.acknowledge(CONSUMER_ACTOR, f"Delivered to {where}", meta, now)
    return Plan([message])


def send_failed(message: Message, error: str, meta: EventMeta, now: datetime) -> Plan:
    """An `error` receipt; the message stays pending for the next try."""
    message.record_attempt(CONSUMER_ACTOR, error or "delivery failed", meta, now)
    return Plan([message])


def prune(
    rows: list[Row],
    *,
    owner: str,
    now: datetime,
    load: Callable[[str], Any],
    meta: EventMeta | None = None,
) -> Plan:
    """Spec §26's message retention, one plan for all (a message's prune changes nothing
    but the read model). `meta`: a command's, else the reactor's."""
    records = []
    for row in rows:
        rule = prune_rule(row, now)
        if rule is None:
            continue
        message: Message = load(row["id"])
        if message.prune(rule, meta or reactor_meta(owner, f"prune/message/{row['id']}"), now):
            records.append(message)
    notes = [f"pruned {len(records)} message(s)"] if records else []
    return Plan(records, notes=notes)
