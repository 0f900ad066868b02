"""Spawn messages (spec §21.7): a running job asks, through the post office, for a job to
be created and run. This module turns such a message into the job spec the anchor makes;
the spec then goes through the ordinary validation."""

from __future__ import annotations

import uuid
from typing import Any

from .dispatch_rules.values import js_truthy
from .json_text import parse_json
from .message_rules import MESSAGE_NAMESPACE

SPAWN_SESSION_TARGETS = ("isolated", "shell")
SPAWN_DELIVERY_MODES = ("none", "announce", "announce-always")
SPAWN_RUN_TIMEOUT_MS = 300_000


class SpawnRefused(Exception):
    """The message asks for no valid job; it is consumed anyway and never retried."""


def spawned_job_id(message_id: str) -> str:
    """The job a spawn message creates: derived from the message, so two daemons that
    consume it at once make one job."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"spawn/{message_id}"))


def spawn_job_spec(
    body: str, *, from_agent: str, to_agent: str | None, job_id: str | None
) -> tuple[dict[str, Any], list[str]]:
    """The job spec a spawn message's body asks for, and warnings about values replaced by
    their defaults. Raises `SpawnRefused` for a body that is not a JSON object with a
    non-blank `payload_message`."""
    try:
        spec = parse_json(body)
    except ValueError as error:
        raise SpawnRefused(f"Spawn message parse error: {error}") from None
    if not isinstance(spec, dict):
        raise SpawnRefused("Spawn message missing payload_message")
    payload = spec.get("payload_message")
    if not isinstance(payload, str) or not payload.strip():
        raise SpawnRefused("Spawn message missing payload_message")
    warnings = []
    session_target = spec.get("session_target") if js_truthy(spec.get("session_target")) else None
    session_target = session_target or "isolated"
    if session_target not in SPAWN_SESSION_TARGETS:
        warnings.append(
            f'Spawn: invalid session_target "{session_target}", defaulting to "isolated"'
        )
        session_target = "isolated"
    mode = spec.get("delivery_mode") if js_truthy(spec.get("delivery_mode")) else None
    mode = mode or "none"
    if mode not in SPAWN_DELIVERY_MODES:
        warnings.append(f'Spawn: invalid delivery_mode "{mode}", defaulting to "none"')
        mode = "none"
    opt_out = spec.get("delivery_opt_out_reason")
    if not js_truthy(opt_out):
        opt_out = "spawned-child" if mode == "none" else None
    job: dict[str, Any] = {
        "name": _given(spec, "name") or f"Spawned by {from_agent}",
        "parent_id": job_id or None,
        "schedule_cron": spec.get("schedule_cron"),
        "payload_message": payload,
        "session_target": session_target,
        "agent_id": _given(spec, "agent_id") or to_agent or "main",
        "delivery_mode": mode,
        "delivery_channel": spec.get("delivery_channel"),
        "delivery_to": spec.get("delivery_to"),
        "delivery_opt_out_reason": opt_out,
        "delete_after_run": 0 if spec.get("delete_after_run") is False else 1,
        "enabled": 1,
        "run_timeout_ms": _given(spec, "run_timeout_ms") or SPAWN_RUN_TIMEOUT_MS,
        "origin": _given(spec, "origin") or "system",
    }
    return {key: value for key, value in job.items() if value is not None}, warnings


def _given(spec: dict[str, Any], name: str) -> Any:
    value = spec.get(name)
    return value if js_truthy(value) else None
