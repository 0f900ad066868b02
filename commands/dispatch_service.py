"""The dispatch commands that start, steer, finish or import dispatches (spec §31.4,
§31.6, §31.7): a typed request in, a typed result out (`dispatch_status` holds the others).

Each function records what the command decided (through `Label` aggregates) and returns
a result whose JSON encoding is the command's output. A failure is a `CommandError`
(exit status 2 for argument errors, spec §31.1). `warn` receives the notes the anchor
writes to stderr while it works, in the order it writes them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ocsched.domain.aggregate import EventMeta
from ocsched.domain.dispatch_rules.done_guards import DoneDecision, check_done
from ocsched.domain.dispatch_rules.hook_payloads import (
    finished_fields,
    loki_payload,
    started_fields,
    webhook_payload,
)
from ocsched.domain.dispatch_rules.task_message import task_message, with_origin_chat_id
from ocsched.domain.json_text import parse_json
from ocsched.domain.label import Label

from . import dispatch_gateway as gateway
from .context import Context
from .dispatch import argument_error
from .dispatch_gateway import Warn
from .dispatch_labels import imported_settings, json_text, known_label_row, label_row
from .output import CommandError, progress

DEFAULT_MONITOR_TIMEOUT_MIN = 60
DEFAULT_MONITOR_INTERVAL = "*/15 * * * *"
DELIVERY_MODES = ("announce", "announce-always", "none")


# enqueue (spec §31.4)


@dataclass(frozen=True)
class EnqueueRequest:
    """What `enqueue` was asked (spec §31.4 steps 1–3, 7), its arguments already checked."""

    label: str
    prompt: str
    agent: str
    timeout_s: int
    monitor_timeout_min: int
    monitor_interval: str | None
    idle_threshold_s: int
    origin: str | None
    deliver_to: str | None
    deliver_channel: str | None
    delivery_mode: str
    monitoring: bool
    payload_kind: str | None
    reuse: bool
    session_key: str | None
    model: str | None
    thinking: str | None
    verify_cmd: str | None


class DeliveryPlan(msgspec.Struct, kw_only=True):
    scheduler: bool
    gateway: bool
    target: str | None
    channel: str


class Watchdog(msgspec.Struct, kw_only=True, rename="camel"):
    enabled: bool
    job_id: str | None
    interval: str
    timeout: int


class Enqueued(msgspec.Struct, kw_only=True, rename="camel"):
    """`enqueue`'s output (spec §31.4 step 17)."""

    ok: bool = True
    label: str
    session_key: str
    run_id: str
    mode: str
    agent: str
    status: str = "accepted"
    delivery: DeliveryPlan | None
    watchdog: Watchdog | None
    message: str


@dataclass(frozen=True)
class _Target:
    """Where the result goes (§31.4 steps 4–5)."""

    origin: str | None
    deliver_to: str | None
    channel: str


def enqueue(ctx: Context, config: dict[str, Any], request: EnqueueRequest, warn: Warn) -> Enqueued:
    """Spec §31.4 steps 4–17: resolve the delivery target, start the session, record it."""
    target = _target(ctx, request, warn)
    mode = "reuse" if request.reuse else "fresh"
    session_key = _session_key(ctx, request, mode)
    text = request.prompt
    if target.deliver_to:
        text = with_origin_chat_id(text, target.deliver_to)
    dispatch_id = str(uuid.uuid4())
    accepted = gateway.spawn(
        ctx.settings,
        fresh=mode == "fresh",
        model=request.model,
        thinking=request.thinking,
        params=_agent_params(request, target, session_key, dispatch_id, text),
        warn=warn,
    )
    run_id = str(accepted.get("runId") or dispatch_id)
    dispatch = Label(
        id=dispatch_id,
        label=request.label,
        session_key=session_key,
        settings=_settings(request, target, mode, text),
        meta=ctx.meta(origin=target.origin),
        timestamp=ctx.now,
    )
    dispatch.spawned(run_id=run_id, meta=ctx.meta(origin=target.origin), timestamp=ctx.now)
    started = started_fields(
        label=request.label,
        job_id=dispatch_id,
        run_id=run_id,
        agent=request.agent,
        mode=mode,
        session_key=session_key,
    )
    ctx.save(dispatch, *hook_deliveries(ctx, "dispatch.started", started, dispatch_id))
    delivering = bool(target.deliver_to) and request.delivery_mode != "none"
    return Enqueued(
        label=request.label,
        session_key=session_key,
        run_id=run_id,
        mode=mode,
        agent=request.agent,
        delivery=DeliveryPlan(
            scheduler=delivering, gateway=False, target=target.deliver_to, channel=target.channel
        )
        if target.deliver_to
        else None,
        watchdog=Watchdog(
            enabled=True,
            job_id=None,
            interval=request.monitor_interval
            or str(config.get("watchdogIntervalCron") or DEFAULT_MONITOR_INTERVAL),
            timeout=request.monitor_timeout_min,
        )
        if request.monitoring
        else None,
        message=(
            "Session spawned. Durable delivery watcher registered."
            if delivering
            else "Session spawned, but delivery is disabled for this label."
            if target.deliver_to
            else "Session spawned. Agent is running."
        ),
    )


def _target(ctx: Context, request: EnqueueRequest, warn: Warn) -> _Target:
    """§31.4 steps 4–5 and 8: the origin (given, derived from the target, or detected from
    the agent's active session), the target and channel; no target is rejected unless
    the session is not monitored."""
    from ocsched.adapters.openclaw_files import detect_origin

    origin, deliver_to = request.origin, request.deliver_to
    if origin is None and deliver_to:
        origin = f"{request.deliver_channel or 'telegram'}:{deliver_to}"
    elif origin is None:
        now_ms = int(ctx.now.timestamp() * 1000)
        origin = detect_origin(ctx.settings.openclaw_home, request.agent, now_ms)
        if origin:
            warn(f"auto-detected origin from active session: {origin}")
            warn(
                "note: this is a manual/local fallback; pass --origin or --deliver-to to be "
                "explicit"
            )
    origin_channel = None
    if origin and ":" in origin:
        origin_channel, origin_target = origin.split(":", 1)
        deliver_to = deliver_to or origin_target
    if request.delivery_mode not in DELIVERY_MODES:
        raise argument_error(f"--delivery-mode must be one of: {', '.join(DELIVERY_MODES)}")
    if not deliver_to and request.monitoring and request.payload_kind in (None, "agentTurn"):
        raise argument_error(
            "REJECTED: --deliver-to is required for dispatch jobs.\n"
            "Pass --deliver-to <chat id> (and --deliver-channel) so the result reaches the "
            "requester, or --no-monitor for a fire-and-forget session."
        )
    channel = request.deliver_channel or origin_channel or "telegram"
    return _Target(origin=origin, deliver_to=deliver_to, channel=channel)


def _agent_params(
    request: EnqueueRequest, target: _Target, session_key: str, dispatch_id: str, text: str
) -> dict[str, Any]:
    """§31.3: the `agent` call that starts the session, with the §31.4.2 task message."""
    params: dict[str, Any] = {
        "message": task_message(
            label=request.label,
            prompt=text,
            target=target.deliver_to,
            channel=target.channel,
            origin=target.origin,
        ),
        "sessionKey": session_key,
        "idempotencyKey": dispatch_id,
        "deliver": False,
        "lane": "subagent",
        "timeout": request.timeout_s,
        "label": request.label[:512],
    }
    if request.thinking:
        params["thinking"] = request.thinking
    if target.deliver_to:
        channel = target.channel
        params.update(channel=channel, replyTo=target.deliver_to, replyChannel=channel)
    return params


def _settings(request: EnqueueRequest, target: _Target, mode: str, text: str) -> dict[str, Any]:
    """What `Label.Enqueued` records of the request (§31.2's ledger fields)."""
    return {
        "agent": request.agent,
        "mode": mode,
        "model": request.model,
        "thinking": request.thinking,
        "origin": target.origin,
        "deliver_to": target.deliver_to,
        "deliver_channel": target.channel if target.deliver_to else None,
        "delivery_mode": request.delivery_mode,
        "verify_cmd": request.verify_cmd,
        "timeout_seconds": request.timeout_s,
        "timeout": request.timeout_s,  # the anchor stores both (§31.2)
        "idle_threshold_seconds": request.idle_threshold_s,
        "monitor_timeout_min": request.monitor_timeout_min,
        "task_prompt": text[:2000],
    }


def _session_key(ctx: Context, request: EnqueueRequest, mode: str) -> str:
    """§31.4 step 9: `--session-key`, else the label's previous session (reuse), else new."""
    if request.session_key is not None:
        return request.session_key
    if mode == "reuse":
        previous = label_row(ctx, request.label)
        if previous is None or not previous["session_key"]:
            raise CommandError(
                f'mode=reuse: no prior session found for label "{request.label}". Use --mode fresh.'
            )
        return previous["session_key"]
    return f"agent:{request.agent}:subagent:{uuid.uuid4()}"


# send, steer (spec §31.6)


@dataclass(frozen=True)
class SessionTarget:
    """`--label L | --session-key K` (send, steer, heartbeat)."""

    label: str | None
    session_key: str | None


class Sent(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    label: str | None
    session_key: str | None
    run_id: str
    status: str = "sent"
    message: str = "Message sent to session."


def send(ctx: Context, target: SessionTarget, prompt: str, kind: str) -> Sent:
    """`send` / `steer`: a message to the label's (or the key's) session, recorded on the
    label's dispatch."""
    row = known_label_row(ctx, target.label) if target.label else None
    session_key = target.session_key or (row["session_key"] if row else None)
    key = str(uuid.uuid4())
    params = {
        "message": prompt,
        "sessionKey": session_key,
        "idempotencyKey": key,
        "deliver": False,
        "lane": "nested",
    }
    accepted = gateway.send(ctx.settings, params)
    if row is not None:
        dispatch: Label = ctx.log.repository.get(row["dispatch_id"])
        dispatch.send(kind, key, prompt, ctx.meta(), ctx.now)
        ctx.save(dispatch)
    return Sent(
        label=target.label,
        session_key=session_key,
        run_id=accepted.get("runId") or key,
    )


# import-labels


class Imported(msgspec.Struct, kw_only=True, rename="camel"):
    ok: bool = True
    imported: int
    skipped: int
    labels: list[str]


def import_labels(ctx: Context, path: str) -> Imported:
    """Turn an existing `labels.json` ledger into events, once: each entry becomes a
    dispatch whose id is derived from (label, session, spawn time), so importing the same
    file again records nothing. A progress bar on a terminal."""
    try:
        ledger = parse_json(Path(path).read_bytes())
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror}") from None
    except ValueError:  # not JSON, not UTF-8, nested too deeply, or a NUL in the path
        raise CommandError(f"{path} is not valid JSON") from None
    if not isinstance(ledger, dict):
        raise CommandError(f"{path} is not a labels ledger (a JSON object)")
    new: list[Label] = []
    meta = ctx.meta(origin="import")
    with progress(ctx.json, len(ledger), "labels.json entries") as advance:
        for done, (label, entry) in enumerate(ledger.items(), 1):
            dispatch = _imported_dispatch(ctx, label, entry, meta)
            if dispatch is not None:
                new.append(dispatch)
            if advance is not None:
                advance(done)
    if new:
        ctx.save(*new)  # one transaction: the whole ledger or, on a failure, nothing
    skipped = len(ledger) - len(new)
    labels = [dispatch.label for dispatch in new]
    return Imported(imported=len(labels), skipped=skipped, labels=labels)


def _imported_dispatch(ctx: Context, label: str, entry: Any, meta: EventMeta) -> Label | None:
    """A ledger entry as a new dispatch; None for what is not an entry, a label no store
    can hold (a lone surrogate), or an entry imported before."""
    from eventsourcing.application import AggregateNotFoundError

    from ocsched.domain.run import RUN_NAMESPACE

    if not isinstance(entry, dict) or json_text(label) != label:
        return None
    key = f"import/{label}/{entry.get('sessionKey')}/{entry.get('spawnedAt')}"
    dispatch_id = str(uuid.uuid5(RUN_NAMESPACE, key.encode("utf-8", "replace").decode()))
    try:
        ctx.log.repository.get(dispatch_id)
    except AggregateNotFoundError:
        return Label(
            id=dispatch_id,
            label=label,
            session_key=json_text(entry.get("sessionKey")) or "",
            settings=imported_settings(entry),
            meta=meta,
            timestamp=ctx.now,
        )
    return None


# done (spec §31.7)


@dataclass(frozen=True)
class DoneRequest:
    label: str
    summary: str | None
    checklist: str | None
    sha: str | None
    force: bool
    reason: str | None
    skip_activity_check: bool


def done(ctx: Context, config: dict[str, Any], request: DoneRequest, warn: Warn) -> DoneDecision:
    """The agent's completion signal: the guards, then the label is done. Each guard's
    warning goes to `warn`; a rejection is a `CommandError` and records nothing."""
    label, sha = request.label, request.sha
    row = label_row(ctx, label)
    activity, activity_error = None, None
    if row and row["session_key"] and not (request.force or request.skip_activity_check):
        activity, activity_error = gateway.session_activity(ctx.settings, row["session_key"])
    decision = check_done(
        entry=None if row is None else {**row, "spawnedAt": row["spawned_at"]},
        summary=request.summary,
        checklist_text=request.checklist,
        sha=sha,
        force=request.force,
        reason=request.reason,
        now_ms=int(ctx.now.timestamp() * 1000),
        sha_exists=_commit_exists(sha) if sha else None,
        activity=activity,
        skip_activity_check=request.skip_activity_check,
        activity_error=activity_error,
        label=label,
    )
    for warning in decision.warnings:
        warn(warning)
    if not decision.accepted:
        raise CommandError(decision.error or "REJECTED", decision.exit_code or 1)
    meta = ctx.meta(cause=f"done/{label}")
    if row is None:
        dispatch = Label(
            id=str(uuid.uuid4()),
            label=label,
            session_key="",
            settings={
                "deliver_to": config.get("deliverTo"),
                "deliver_channel": config.get("deliveryChannel"),
            },
            meta=meta,
            timestamp=ctx.now,
        )
    else:
        dispatch = ctx.log.repository.get(row["dispatch_id"])
    dispatch.done(
        decision.summary or "",
        decision.checklist,
        sha,
        decision.completion or {},
        meta,
        ctx.now,
        forced=decision.forced,
        reason=decision.reason,
    )
    spawned = row["spawned_at"] if row else None
    duration = None
    if spawned:
        duration = int((ctx.now - datetime.fromisoformat(spawned)).total_seconds() * 1000)
    fields = finished_fields(
        label=label,
        run_id=row["run_id"] if row else None,
        agent=row["agent"] if row else None,
        duration_ms=duration,
        session_key=row["session_key"] if row else None,
    )
    ctx.save(dispatch, *hook_deliveries(ctx, "dispatch.finished", fields, dispatch.id))
    return decision


def _commit_exists(sha: str) -> bool:
    """Whether `sha` names a commit in the git repository of the current directory (git
    is asked only about text of the SHA's form)."""
    import subprocess

    from ocsched.domain.dispatch_rules.git_sha import SHA_PATTERN

    if not SHA_PATTERN.fullmatch(sha):
        return False
    try:
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


# lifecycle hooks (spec §31.12)


def hook_deliveries(ctx: Context, event: str, fields: dict[str, Any], source_id: str) -> list:
    """Deliveries that carry a lifecycle hook to each configured target (spec §31.12); the
    daemon sends them, retrying in the background, so the command never waits."""
    from ocsched.domain.delivery import Delivery, delivery_id

    host = ctx.settings.hook_host
    now = ctx.now
    deliveries = []
    for channel, url in ctx.settings.hook_targets:
        if channel == "loki":
            payload = loki_payload(event, fields, host=host, now_ns=int(now.timestamp() * 1e9))
        else:
            payload = webhook_payload(event, fields, host=host, now_ms=int(now.timestamp() * 1000))
        deliveries.append(
            Delivery(
                id=delivery_id(source_id, f"hook:{event}:{channel}"),
                run_id=source_id,
                job_id=fields.get("label") or "",
                purpose=f"hook:{event}",
                channel=channel,
                target=url,
                chunks=[json.dumps(payload)],
                meta=ctx.meta(),
                timestamp=now,
            )
        )
    return deliveries
