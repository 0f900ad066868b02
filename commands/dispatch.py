"""`ocsched dispatch <sub>` (spec §31): sub-agent sessions as event-sourced labels.

Every subcommand prints 2-space JSON on stdout. Exit codes: 0 ok; 1 a hard error, a
rejected `done`, or stuck sessions found; 2 argument errors. Errors go to stderr as
`[<brand>] <message>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from ocsched.domain.dispatch_rules.brand import brand

from .context import Context
from .output import print_json

PROMPT_FLAGS = ("--message", "--message-file", "--message-env", "--message-stdin")
DEFAULT_TIMEOUT_S = 300
DEFAULT_IDLE_THRESHOLD_S = 300
DEFAULT_MONITOR_TIMEOUT_MIN = 60
DEFAULT_MONITOR_INTERVAL = "*/15 * * * *"
ALIVE_MS = 600_000
NO_SESSION = "No session found for this label"
USAGE = """\
Usage: ocsched dispatch <subcommand> [flags]

  enqueue --label L (--message T | --message-file F|- | --message-env V | --message-stdin)
          [--agent main] [--mode fresh|reuse] [--session-key K] [--model M] [--thinking T]
          [--timeout S] [--origin O] [--deliver-to T] [--deliver-channel C]
          [--delivery-mode announce|announce-always|none] [--no-monitor] [--verify-cmd C]
  status --label L | result --label L | heartbeat --label L | list [--status S] [--limit N]
  send|steer --label L (prompt source) | done --label L --checklist JSON [--summary S]
          [--sha SHA] [--force-done --reason R] [--skip-activity-check] | watcher-handoff --label L
  stuck [--threshold-min N] | sync [--dry-run] | import-labels <labels.json>"""


class DispatchError(Exception):
    """A failure with its exit code (1 hard error, 2 argument error)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# Flags and configuration (spec §31.1)


def parse_flags(args: list[str]) -> dict[str, Any]:
    """`--name value` or `--name=value`; a flag followed by nothing or by another flag is
    `True`; other tokens are ignored."""
    flags: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            if equals:
                flags[name] = value
            elif index + 1 < len(args) and not args[index + 1].startswith("--"):
                flags[name] = args[index + 1]
                index += 1
            else:
                flags[name] = True
        index += 1
    return flags


def prompt_from(flags: dict[str, Any], *, required: bool = True) -> str | None:
    """Exactly one prompt source; text used literally (spec §31.4 step 2)."""
    chosen = [flag for flag in PROMPT_FLAGS if flag[2:] in flags]
    if len(chosen) > 1:
        raise DispatchError(f"choose only one of {', '.join(chosen)} for the prompt source", 2)
    text: str | None = None
    if chosen:
        name = chosen[0]
        value = flags[name[2:]]
        if name == "--message":
            if value is True:
                raise DispatchError("--message requires a value", 2)
            text = value
        elif name == "--message-env":
            if value is True:
                raise DispatchError("--message-env requires a value", 2)
            if value not in os.environ:
                raise DispatchError(f"--message-env: environment variable {value} is not set", 2)
            text = os.environ[value]
        elif name == "--message-file" and value != "-":
            if value is True:
                raise DispatchError("--message-file requires a value", 2)
            try:
                text = Path(value).read_text()
            except OSError as error:
                reason = error.strerror
                raise DispatchError(f"--message-file: could not read file: {reason}", 2) from None
        else:
            if sys.stdin.isatty():
                raise DispatchError(
                    f"{name}{' -' if name == '--message-file' else ''} requires piped stdin", 2
                )
            text = sys.stdin.read()
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    if not text and required:
        raise DispatchError(
            "--message, --message-file, --message-env, --message-stdin, or piped stdin is required",
            2,
        )
    return text


def positive_int(flags: dict[str, Any], name: str, default: int) -> int:
    value = flags.get(name)
    if value is None:
        return default
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise DispatchError(f"--{name} must be a positive integer", 2)
    return number


def require_label(flags: dict[str, Any]) -> str:
    label = flags.get("label")
    if not label or label is True:
        raise DispatchError("--label is required", 2)
    return str(label)


# The labels read model


def label_row(ctx: Context, label: str) -> dict[str, Any] | None:
    connection = ctx.views()
    if connection is None:
        return None
    return connection.execute("SELECT * FROM labels WHERE label = ?", (label,)).fetchone()


def public_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A labels row in the ledger's shape (spec §31.2: camelCase keys)."""
    completion = json.loads(row["completion"]) if row["completion"] else None
    return {
        "label": row["label"],
        "sessionKey": row["session_key"],
        "runId": row["run_id"],
        "agent": row["agent"],
        "mode": row["mode"],
        "model": row["model"],
        "thinking": row["thinking"],
        "origin": row["origin"],
        "deliverTo": row["deliver_to"],
        "deliverChannel": row["deliver_channel"],
        "deliveryMode": row["delivery_mode"],
        "spawnedAt": row["spawned_at"],
        "timeoutSeconds": row["timeout_seconds"],
        "idleThresholdSeconds": row["idle_threshold_seconds"],
        "status": row["status"],
        "summary": row["summary"] or None,
        "error": row["error"] or None,
        "completion": completion,
        "sha": row["sha"],
        "retryCount": row["retry_count"],
        "lastPing": row["last_ping"],
        "updatedAt": row["updated_at"],
    }


# Gateway calls, one client per command


def gateway_settings(settings):
    """Spec §31.1: `OPENCLAW_GATEWAY_TOKEN`, else `gateway.auth.token` from
    `<OpenClaw home>/openclaw.json`, else the scheduler's token file."""
    from ocsched.adapters.gateway import GatewaySettings
    from ocsched.adapters.openclaw_files import config_token

    environment = settings.gateway_environment
    if not environment.get("OPENCLAW_GATEWAY_TOKEN"):
        token = config_token(settings.openclaw_home)
        if token:
            environment = {**environment, "OPENCLAW_GATEWAY_TOKEN": token}
    return GatewaySettings.from_environment(environment)


def gateway_call(settings, coroutine_factory):
    from ocsched.adapters.gateway import GatewayClient

    async def run():
        async with GatewayClient(gateway_settings(settings)) as client:
            return await coroutine_factory(client)

    return asyncio.run(run())


# Subcommands


def enqueue(ctx: Context, flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    from ocsched.adapters.gateway import GatewayError

    label = require_label(flags)
    prompt = prompt_from(flags)
    from ocsched.domain.dispatch_rules.hook_payloads import started_fields
    from ocsched.domain.dispatch_rules.task_message import task_message, with_origin_chat_id
    from ocsched.domain.label import Label

    agent = str(flags.get("agent") or "main")
    if "timeout" not in flags:
        print(
            f"WARNING: --timeout not specified, defaulting to {DEFAULT_TIMEOUT_S}s.",
            file=sys.stderr,
        )
    timeout_s = positive_int(flags, "timeout", DEFAULT_TIMEOUT_S)
    monitor_timeout = positive_int(
        flags, "monitor-timeout", int(config.get("watchdogTimeoutMin") or 60)
    )
    origin = flags.get("origin") if isinstance(flags.get("origin"), str) else None
    deliver_to = flags.get("deliver-to") if isinstance(flags.get("deliver-to"), str) else None
    channel_flag = flags.get("deliver-channel")
    if origin is None and deliver_to:
        origin = f"{channel_flag if isinstance(channel_flag, str) else 'telegram'}:{deliver_to}"
    elif origin is None:
        from ocsched.adapters.openclaw_files import detect_origin

        origin = detect_origin(ctx.settings.openclaw_home, agent, int(ctx.now.timestamp() * 1000))
        if origin:
            print(f"auto-detected origin from active session: {origin}", file=sys.stderr)
            print(
                "note: this is a manual/local fallback; pass --origin or --deliver-to to be "
                "explicit",
                file=sys.stderr,
            )
    origin_channel = None
    if origin and ":" in origin:
        origin_channel, origin_target = origin.split(":", 1)
        deliver_to = deliver_to or origin_target
    channel = channel_flag if isinstance(channel_flag, str) else origin_channel or "telegram"
    delivery_mode = str(flags.get("delivery-mode") or "announce")
    if delivery_mode not in ("announce", "announce-always", "none"):
        raise DispatchError("--delivery-mode must be one of: announce, announce-always, none", 2)
    monitoring = "no-monitor" not in flags and str(flags.get("monitor", "")).lower() != "false"
    payload_kind = flags.get("payload-kind")
    if not deliver_to and monitoring and (payload_kind in (None, True, "agentTurn")):
        raise DispatchError(
            "REJECTED: --deliver-to is required for dispatch jobs.\n"
            "Pass --deliver-to <chat id> (and --deliver-channel) so the result reaches the "
            "requester, or --no-monitor for a fire-and-forget session.",
            2,
        )
    mode = "reuse" if flags.get("session-key") or flags.get("mode") == "reuse" else "fresh"
    if isinstance(flags.get("session-key"), str):
        session_key = flags["session-key"]
    elif mode == "reuse":
        previous = label_row(ctx, label)
        if previous is None or not previous["session_key"]:
            raise DispatchError(
                f'mode=reuse: no prior session found for label "{label}". Use --mode fresh.'
            )
        session_key = previous["session_key"]
    else:
        session_key = f"agent:{agent}:subagent:{uuid.uuid4()}"
    model = flags.get("model") if isinstance(flags.get("model"), str) else None
    thinking = flags.get("thinking") if isinstance(flags.get("thinking"), str) else None
    text = with_origin_chat_id(prompt, deliver_to) if deliver_to else prompt
    dispatch_id = str(uuid.uuid4())
    message = task_message(
        label=label,
        prompt=text,
        target=deliver_to,
        channel=channel,
        origin=origin,
        brand=brand(config),
    )

    async def spawn(client) -> dict:
        if mode == "fresh":
            await _fatal(client.sessions_patch(session_key, spawnDepth=1), "spawnDepth")
            if model:
                await _fatal(client.sessions_patch(session_key, model=model), "model")
            if thinking:
                try:
                    level = None if thinking == "off" else thinking
                    await client.sessions_patch(session_key, thinkingLevel=level)
                except GatewayError as error:
                    print(f"WARNING: sessions.patch (thinking) failed: {error}", file=sys.stderr)
        params = {
            "message": message,
            "sessionKey": session_key,
            "idempotencyKey": dispatch_id,
            "deliver": False,
            "lane": "subagent",
            "timeout": timeout_s,
            "label": label[:512],
        }
        if thinking:
            params["thinking"] = thinking
        if deliver_to:
            params.update(channel=channel, replyTo=deliver_to, replyChannel=channel)
        try:
            return await client.call("agent", params, timeout_s=15, resend_on_drop=True)
        except GatewayError as error:
            raise DispatchError(f"gateway agent call failed: {error}") from None

    accepted = gateway_call(ctx.settings, spawn)
    run_id = str(accepted.get("runId") or dispatch_id)
    settings = {
        "agent": agent,
        "mode": mode,
        "model": model,
        "thinking": thinking,
        "origin": origin,
        "deliver_to": deliver_to,
        "deliver_channel": channel if deliver_to else None,
        "delivery_mode": delivery_mode,
        "verify_cmd": flags.get("verify-cmd") if isinstance(flags.get("verify-cmd"), str) else None,
        "timeout_seconds": timeout_s,
        "idle_threshold_seconds": positive_int(flags, "idle-threshold", DEFAULT_IDLE_THRESHOLD_S),
        "monitor_timeout_min": monitor_timeout,
        "task_prompt": text[:2000],
    }
    dispatch = Label(
        id=dispatch_id,
        label=label,
        session_key=session_key,
        settings=settings,
        meta=ctx.meta(origin=origin),
        timestamp=ctx.now,
    )
    dispatch.spawned(run_id=run_id, meta=ctx.meta(origin=origin), timestamp=ctx.now)
    started = started_fields(
        label=label,
        job_id=dispatch_id,
        run_id=run_id,
        agent=agent,
        mode=mode,
        session_key=session_key,
    )
    ctx.save(dispatch, *hook_deliveries(ctx, "dispatch.started", started, dispatch_id))
    delivering = bool(deliver_to) and delivery_mode != "none"
    return {
        "ok": True,
        "label": label,
        "sessionKey": session_key,
        "runId": run_id,
        "mode": mode,
        "agent": agent,
        "status": "accepted",
        "delivery": {
            "scheduler": delivering,
            "gateway": False,
            "target": deliver_to,
            "channel": channel,
        }
        if deliver_to
        else None,
        "watchdog": {
            "enabled": monitoring,
            "jobId": None,
            "interval": str(config.get("watchdogIntervalCron") or DEFAULT_MONITOR_INTERVAL),
            "timeout": monitor_timeout,
        }
        if monitoring
        else None,
        "message": (
            "Session spawned. Durable delivery watcher registered."
            if delivering
            else "Session spawned, but delivery is disabled for this label."
            if deliver_to
            else "Session spawned. Agent is running."
        ),
    }


async def _fatal(call, what: str) -> None:
    from ocsched.adapters.gateway import GatewayError

    try:
        await call
    except GatewayError as error:
        raise DispatchError(f"sessions.patch ({what}) failed: {error}") from None


def status(ctx: Context, flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    label = require_label(flags)
    row = label_row(ctx, label)
    if row is None:
        return {
            "ok": True,
            "label": label,
            "found": False,
            "message": NO_SESSION,
        }
    sync_action = None
    if row["status"] == "running" and not row["imported"]:
        sessions = _sessions_by_key(ctx.settings)
        if sessions is not None:
            change = _resolve(ctx, row, sessions, config, write=True, cause="status")
            if change:
                sync_action = f"auto-resolved as {change['to']}: {change['reason']}"
                row = label_row(ctx, label)
    entry = public_entry(row)
    liveness = _liveness(ctx.settings, row["session_key"]) if row["session_key"] else None
    result = {
        "ok": True,
        **{
            k: entry[k]
            for k in (
                "label",
                "sessionKey",
                "runId",
                "agent",
                "mode",
                "status",
                "spawnedAt",
                "updatedAt",
                "summary",
                "completion",
                "error",
            )
        },
        "liveness": liveness,
    }
    if sync_action:
        result["syncAction"] = sync_action
    return result


def _liveness(settings, session_key: str) -> dict[str, Any]:
    """What the gateway knows of the session (`sessions.list`)."""
    from ocsched.adapters.gateway import GatewayError

    try:
        answer = gateway_call(settings, lambda client: client.sessions_list(activeMinutes=1440))
    except (GatewayError, OSError):
        return {"error": "sessions store unavailable"}
    for session in answer.get("sessions") or []:
        if session.get("key") == session_key:
            updated = session.get("updatedAt")
            age = _now_ms() - updated if isinstance(updated, (int, float)) else None
            return {
                "updatedAt": updated,
                "ageMs": age,
                "sessionId": session.get("sessionId"),
                "model": session.get("model"),
                "tokens": session.get("totalTokens"),
            }
    return {"error": "session not found in sessions store"}


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def result(ctx: Context, flags: dict[str, Any]) -> dict[str, Any]:
    from ocsched.adapters.gateway import GatewayError

    label = require_label(flags)
    row = label_row(ctx, label)
    if row is None:
        return {"ok": False, "label": label, "message": NO_SESSION}
    reply = None
    try:
        history = gateway_call(ctx.settings, lambda client: client.chat_history(row["session_key"]))
        reply = last_assistant_reply(history.get("messages") or [])
    except GatewayError as error:
        print(f"WARNING: chat.history failed: {error}", file=sys.stderr)
    entry = public_entry(row)
    summary = entry["summary"] or (reply[:500] if reply else None)
    return {
        "ok": True,
        "label": label,
        "sessionKey": entry["sessionKey"],
        "status": entry["status"],
        "spawnedAt": entry["spawnedAt"],
        "summary": summary,
        "completion": entry["completion"],
        "lastReply": reply,
        "error": entry["error"],
    }


def last_assistant_reply(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        return json.dumps(content)
    return None


def send(ctx: Context, flags: dict[str, Any], kind: str) -> dict[str, Any]:
    from ocsched.adapters.gateway import GatewayError

    prompt = prompt_from(flags)
    label = flags.get("label") if isinstance(flags.get("label"), str) else None
    session_key = flags.get("session-key") if isinstance(flags.get("session-key"), str) else None
    if not label and not session_key:
        raise DispatchError("--label or --session-key is required", 2)
    row = None
    if label:
        row = label_row(ctx, label)
        if row is None:
            raise DispatchError(f'No session found for label "{label}"')
        session_key = session_key or row["session_key"]
    key = str(uuid.uuid4())
    params = {
        "message": prompt,
        "sessionKey": session_key,
        "idempotencyKey": key,
        "deliver": False,
        "lane": "nested",
    }
    try:
        accepted = gateway_call(
            ctx.settings,
            lambda client: client.call("agent", params, timeout_s=15, resend_on_drop=True),
        )
    except GatewayError as error:
        raise DispatchError(f"Failed to send message: {error}") from None
    if row is not None:
        from ocsched.domain.label import Label

        dispatch: Label = ctx.log.repository.get(row["dispatch_id"])
        dispatch.send(kind, key, prompt, ctx.meta(), ctx.now)
        ctx.save(dispatch)
    return {
        "ok": True,
        "label": label,
        "sessionKey": session_key,
        "runId": accepted.get("runId") or key,
        "status": "sent",
        "message": "Message sent to session.",
    }


def heartbeat(ctx: Context, flags: dict[str, Any]) -> dict[str, Any]:
    label = flags.get("label") if isinstance(flags.get("label"), str) else None
    session_key = flags.get("session-key") if isinstance(flags.get("session-key"), str) else None
    if not label and not session_key:
        raise DispatchError("--label or --session-key is required", 2)
    if label and not session_key:
        row = label_row(ctx, label)
        if row is None:
            raise DispatchError(f'No session found for label "{label}"')
        session_key = row["session_key"]
    liveness = _liveness(ctx.settings, session_key)
    if "error" in liveness:
        message = (
            "Sessions store unavailable"
            if liveness["error"] == "sessions store unavailable"
            else "Session not found in sessions store"
        )
        return {"ok": False, "sessionKey": session_key, "alive": False, "message": message}
    age = liveness["ageMs"]
    return {
        "ok": True,
        "sessionKey": session_key,
        "label": label,
        "alive": age is not None and age < ALIVE_MS,
        "ageMs": age,
        "updatedAt": liveness["updatedAt"],
        "sessionId": liveness["sessionId"],
        "model": liveness["model"],
    }


def list_labels(ctx: Context, flags: dict[str, Any]) -> dict[str, Any]:
    connection = ctx.views()
    limit = positive_int(flags, "limit", 20)
    rows = []
    if connection is not None:
        wanted = flags.get("status") if isinstance(flags.get("status"), str) else None
        where, values = ("WHERE status = ?", [wanted]) if wanted else ("", [])
        rows = connection.execute(
            f"SELECT * FROM labels {where} ORDER BY updated_at DESC LIMIT ?", [*values, limit]
        ).fetchall()
    labels = [public_entry(row) for row in rows]
    return {"ok": True, "count": len(labels), "labels": labels}


def import_labels(ctx: Context, args: list[str]) -> dict[str, Any]:
    """Turn an existing `labels.json` ledger into events, once: each entry becomes a
    dispatch whose id is derived from (label, session, spawn time), so importing the same
    file again records nothing."""
    from eventsourcing.persistence import IntegrityError

    from ocsched.domain.label import Label
    from ocsched.domain.run import RUN_NAMESPACE

    paths = [a for a in args if not a.startswith("--")]
    if len(paths) != 1:
        raise DispatchError("Usage: ocsched dispatch import-labels <labels.json>", 2)
    try:
        ledger = json.loads(Path(paths[0]).read_text())
    except OSError as error:
        raise DispatchError(f"Cannot read {paths[0]}: {error.strerror}") from None
    except ValueError:
        raise DispatchError(f"{paths[0]} is not valid JSON") from None
    if not isinstance(ledger, dict):
        raise DispatchError(f"{paths[0]} is not a labels ledger (a JSON object)")
    imported, skipped = [], []
    meta = ctx.meta(origin="import")
    for label, entry in ledger.items():
        if not isinstance(entry, dict):
            skipped.append(label)
            continue
        key = f"import/{label}/{entry.get('sessionKey')}/{entry.get('spawnedAt')}"
        dispatch = Label(
            id=str(uuid.uuid5(RUN_NAMESPACE, key)),
            label=label,
            session_key=str(entry.get("sessionKey") or ""),
            settings=_imported_settings(entry),
            meta=meta,
            timestamp=ctx.now,
        )
        try:
            ctx.log.save(dispatch)
        except IntegrityError:
            skipped.append(label)
            continue
        imported.append(label)
    ctx.catch_up()
    return {"ok": True, "imported": len(imported), "skipped": len(skipped), "labels": imported}


def _imported_settings(entry: dict[str, Any]) -> dict[str, Any]:
    names = {
        "agent": "agent",
        "mode": "mode",
        "model": "model",
        "thinking": "thinking",
        "origin": "origin",
        "deliverTo": "deliver_to",
        "deliverChannel": "deliver_channel",
        "deliveryMode": "delivery_mode",
        "verifyCmd": "verify_cmd",
        "timeoutSeconds": "timeout_seconds",
        "idleThresholdSeconds": "idle_threshold_seconds",
        "taskPrompt": "task_prompt",
        "spawnedAt": "spawned_at",
        "status": "status",
        "summary": "summary",
        "error": "error",
    }
    settings = {ours: entry.get(theirs) for theirs, ours in names.items()}
    settings["imported"] = True  # history: never announced, delivered or followed again
    if settings["status"] not in ("running", "done", "error", "interrupted"):
        settings["status"] = "error" if settings["status"] else "running"
    return settings


def _sessions_by_key(settings) -> dict[str, dict] | None:
    """The gateway's sessions by key, or None when it cannot be asked."""
    from ocsched.adapters.gateway import GatewayError

    try:
        answer = gateway_call(settings, lambda client: client.sessions_list(activeMinutes=1440))
    except (GatewayError, OSError):
        return None
    return {s.get("key"): s for s in answer.get("sessions") or []}


def _running(ctx: Context) -> list[dict[str, Any]]:
    connection = ctx.views()
    if connection is None:
        return []
    return connection.execute(
        "SELECT * FROM labels WHERE status = 'running' AND imported = 0 ORDER BY spawned_at"
    ).fetchall()


def _spawned_ms(row: dict[str, Any]) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(row["spawned_at"]).timestamp() * 1000)


def stuck(ctx: Context, flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Running dispatches silent for longer than max(their timeout, --threshold-min)."""
    try:
        threshold_min = float(flags.get("threshold-min", 15))
    except ValueError:
        raise DispatchError("--threshold-min must be a number", 2) from None
    grace_ms = int(config.get("startupGraceMs", 300_000))
    sessions = _sessions_by_key(ctx.settings)
    now_ms = _now_ms()
    found, resolved = [], []
    for row in _running(ctx):
        age = now_ms - _spawned_ms(row)
        threshold_ms = max((row["timeout_seconds"] or 0) * 1000, threshold_min * 60_000)
        if age < threshold_ms or age < grace_ms:
            continue
        if sessions is not None:
            change = _resolve(ctx, row, sessions, config, write=True, cause="stuck")
            if change:
                resolved.append({"label": change["label"], "reason": change["reason"]})
                print(f"auto-resolved: [ok] {change['label']}: {change['reason']}", file=sys.stderr)
                continue
        updated = ((sessions or {}).get(row["session_key"]) or {}).get("updatedAt")
        silent = now_ms - updated if isinstance(updated, (int, float)) else age
        if silent >= threshold_ms:
            found.append(
                {
                    "label": row["label"],
                    "age_min": age // 60000,
                    "silent_min": int(silent // 60000),
                    "run_id": row["session_key"],
                    "job_name": row["label"],
                    "started_at": row["spawned_at"],
                    "age_s": age // 1000,
                }
            )
    if found:
        from ocsched.domain.dispatch_rules.hook_payloads import stuck_fields

        hooks = hook_deliveries(ctx, "dispatch.stuck", stuck_fields(found), str(uuid.uuid4()))
        if hooks:
            ctx.save(*hooks)
        noun = "session" if len(found) == 1 else "sessions"
        lines = [f"⚠️ {brand(config)}: {len(found)} stuck {noun}:"]
        lines += [
            f"* {s['label']} (running {s['age_min']}min, silent {s['silent_min']}min)"
            for s in found
        ]
        print("\n".join(lines))
        sys.exit(1)
    return {
        "ok": True,
        "stuck_count": 0,
        "stuck_sessions": [],
        "auto_resolved_count": len(resolved),
        "auto_resolved": resolved,
        "watcher_skipped": [],
        "threshold_min": threshold_min,
    }


def sync(ctx: Context, flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Resolve every running dispatch whose session says it ended (never as done)."""
    dry_run = bool(flags.get("dry-run"))
    sessions = _sessions_by_key(ctx.settings)
    if sessions is None:
        raise DispatchError("the gateway did not answer sessions.list; nothing was changed")
    details = [
        change
        for row in _running(ctx)
        if (change := _resolve(ctx, row, sessions, config, write=not dry_run, cause="sync"))
    ]
    return {"ok": True, "dryRun": dry_run, "changes": len(details), "details": details}


def _resolve(ctx, row, sessions, config, *, write: bool, cause: str) -> dict | None:
    """Apply `resolution` to one running dispatch; the change made (or that would be)."""
    from ocsched.domain.label import Label, resolution

    ending = resolution(
        spawned_ms=_spawned_ms(row),
        timeout_s=row["timeout_seconds"],
        monitor_timeout_min=row["monitor_timeout_min"],
        session=sessions.get(row["session_key"]),
        now_ms=_now_ms(),
        grace_ms=int(config.get("startupGraceMs", 300_000)),
    )
    if ending is None:
        return None
    if write:
        dispatch: Label = ctx.log.repository.get(row["dispatch_id"])
        if dispatch.status != "running":
            return None
        dispatch.fail(*ending, ctx.meta(cause=cause), ctx.now)
        ctx.save(dispatch)
    reason = ending[2].rsplit("(", 1)[-1].rstrip(")") if ending[0] == "interrupted" else ending[1]
    return {"label": row["label"], "from": "running", "to": ending[0], "reason": reason}


def hook_deliveries(ctx: Context, event: str, fields: dict[str, Any], source_id: str) -> list:
    """Deliveries that carry a lifecycle hook to each configured target (spec §31.12); the
    daemon sends them, retrying in the background, so the command never waits."""
    from ocsched.domain.delivery import Delivery, delivery_id

    host = ctx.settings.hook_host
    deliveries = []
    for channel, url in ctx.settings.hook_targets:
        body = _hook_body(channel, event, fields, host, ctx.now)
        deliveries.append(
            Delivery(
                id=delivery_id(source_id, f"hook:{event}:{channel}"),
                run_id=source_id,
                job_id=fields.get("label") or "",
                purpose=f"hook:{event}",
                channel=channel,
                target=url,
                chunks=[body],
                meta=ctx.meta(),
                timestamp=ctx.now,
            )
        )
    return deliveries


def _hook_body(channel: str, event: str, fields: dict[str, Any], host: str, now) -> str:
    from ocsched.domain.dispatch_rules.hook_payloads import loki_payload, webhook_payload

    if channel == "loki":
        payload = loki_payload(event, fields, host=host, now_ns=int(now.timestamp() * 1e9))
    else:
        payload = webhook_payload(event, fields, host=host, now_ms=int(now.timestamp() * 1000))
    return json.dumps(payload)


def done(ctx: Context, flags: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The agent's completion signal (spec §31.7): guards, then the label is done."""
    from ocsched.domain.dispatch_rules.done_guards import check_done, done_output
    from ocsched.domain.dispatch_rules.hook_payloads import finished_fields
    from ocsched.domain.label import Label

    label = require_label(flags)
    row = label_row(ctx, label)
    sha = flags.get("sha") if isinstance(flags.get("sha"), str) else None
    force = "force-done" in flags
    skip_activity = "skip-activity-check" in flags
    activity, activity_error = None, None
    if row and row["session_key"] and not (force or skip_activity):
        activity, activity_error = _session_activity(ctx.settings, row["session_key"])
    decision = check_done(
        entry=_rules_entry(row),
        summary=flags.get("summary") if isinstance(flags.get("summary"), str) else None,
        checklist_text=flags.get("checklist") if isinstance(flags.get("checklist"), str) else None,
        sha=sha,
        force=force,
        reason=flags.get("reason") if isinstance(flags.get("reason"), str) else None,
        now_ms=int(ctx.now.timestamp() * 1000),
        sha_exists=_commit_exists(sha) if sha else None,
        activity=activity,
        skip_activity_check=skip_activity,
        activity_error=activity_error,
        label=label,
    )
    for warning in decision.warnings:
        print(f"[{brand(config)}] {warning}", file=sys.stderr)
    if not decision.accepted:
        raise DispatchError(decision.error or "REJECTED", decision.exit_code or 1)
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
        from datetime import datetime

        duration = int((ctx.now - datetime.fromisoformat(spawned)).total_seconds() * 1000)
    fields = finished_fields(
        label=label,
        run_id=row["run_id"] if row else None,
        agent=row["agent"] if row else None,
        duration_ms=duration,
        session_key=row["session_key"] if row else None,
    )
    ctx.save(dispatch, *hook_deliveries(ctx, "dispatch.finished", fields, dispatch.id))
    return done_output(label, decision)


def _rules_entry(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {**row, "spawnedAt": row["spawned_at"]}


def _session_activity(settings, session_key: str) -> tuple[dict | None, str | None]:
    """`GET /sessions/<key>`; the check fails open when the gateway does not answer."""
    from ocsched.adapters.gateway import GatewayError

    try:
        return gateway_call(settings, lambda client: client.session(session_key)), None
    except (GatewayError, OSError) as error:
        return None, str(error)


def _commit_exists(sha: str) -> bool:
    """Whether `sha` names a commit in the git repository of the current directory."""
    import subprocess

    try:
        found = subprocess.run(
            ["git", "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


def watcher_handoff(ctx: Context, flags: dict[str, Any]) -> dict[str, Any]:
    """Kept for scripts written for openclaw-scheduler: there are no watcher jobs to hand
    over; the daemon follows every running dispatch."""
    label = require_label(flags)
    row = label_row(ctx, label)
    if row is None:
        return {
            "ok": False,
            "scheduled": False,
            "label": label,
            "message": NO_SESSION,
        }
    reason = "the daemon follows every running dispatch"
    return {"ok": True, "scheduled": False, "label": label, "reason": reason}


SUBCOMMANDS = {
    "watcher-handoff": lambda ctx, flags, args, config: watcher_handoff(ctx, flags),
    "done": lambda ctx, flags, args, config: done(ctx, flags, config),
    "stuck": lambda ctx, flags, args, config: stuck(ctx, flags, config),
    "sync": lambda ctx, flags, args, config: sync(ctx, flags, config),
    "enqueue": lambda ctx, flags, args, config: enqueue(ctx, flags, config),
    "status": lambda ctx, flags, args, config: status(ctx, flags, config),
    "result": lambda ctx, flags, args, config: result(ctx, flags),
    "send": lambda ctx, flags, args, config: send(ctx, flags, "send"),
    "steer": lambda ctx, flags, args, config: send(ctx, flags, "steer"),
    "heartbeat": lambda ctx, flags, args, config: heartbeat(ctx, flags),
    "list": lambda ctx, flags, args, config: list_labels(ctx, flags),
    "import-labels": lambda ctx, flags, args, config: import_labels(ctx, args),
}


def cli_dispatch(ctx: Context, args: list[str]) -> None:
    from ocsched.adapters.openclaw_files import dispatch_config

    config = dispatch_config(ctx.settings.dispatch_config_dir)
    if not args or args[0] not in SUBCOMMANDS:
        print(USAGE)
        sys.exit(2)
    sub, rest = args[0], args[1:]
    try:
        output = SUBCOMMANDS[sub](ctx, parse_flags(rest), rest, config)
    except DispatchError as error:
        print(f"[{brand(config)}] {error}", file=sys.stderr)
        sys.exit(error.code)
    print_json(output)
