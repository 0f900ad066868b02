"""The OpenClaw files the scheduler reads and writes (spec §11.6, §30.5, §31.1, §31.4.1).

The gateway's `agent` method takes no auth profile, so, as openclaw-scheduler does, the
profile is written into the agent's session store before the turn, and the live
credential store is copied to the agent. Best effort: a failure here never fails a run.
The dispatch CLI reads the same session store (origin detection), `openclaw.json` (the
gateway token fallback) and its own `config.json`.

Nothing here reads the environment: each function takes the OpenClaw home directory
(`Settings.openclaw_home`) or the dispatch config directory (`Settings.dispatch_config_dir`).
Every path built from an agent id is resolved and checked to stay under `<home>/agents`
(`agent_file`); the fixed names (`openclaw.json`, `credentials/…`, `config.json`) may be
links to wherever the user keeps them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ocsched.domain.json_text import parse_json


class OutsideRoot(OSError):
    """A path built from an id that would leave its root (`..`, a separator, a link that
    points elsewhere). An OSError, so the best-effort callers log it and go on."""


def within(root: Path, path: Path) -> Path:
    """`path` if, with every link and `..` resolved, it lies strictly under `root` (itself
    resolved: a home that is a link is fine); else OutsideRoot."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved == resolved_root or not resolved.is_relative_to(resolved_root):
        raise OutsideRoot(f"refusing {path}: it resolves to {resolved}, outside {resolved_root}")
    return path


def agent_file(home: Path, agent_id: str, *parts: str) -> Path:
    """`<home>/agents/<agent id>/<parts…>`, checked to stay under `<home>/agents`. Agent ids
    are validated when a job or dispatch is recorded (domain/safe_names.py); this is the
    second line, for ids recorded before that check and for links."""
    return within(home / "agents", home / "agents" / agent_id / Path(*parts))


def sessions_store(home: Path, agent_id: str) -> Path:
    return agent_file(home, agent_id, "sessions", "sessions.json")


def sync_credentials(home: Path, agent_id: str) -> None:
    """Copy `credentials/auth-profiles.json` into the agent's directory, if it exists."""
    source = home / "credentials" / "auth-profiles.json"
    if source.is_file():
        target = agent_file(home, agent_id, "agent", "auth-profiles.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def main_session_profile(home: Path, agent_id: str) -> str | None:
    """`inherit`: the profile of the agent's main session, if its store names one."""
    for key, entry in _read(sessions_store(home, agent_id)).items():
        is_main = ":main:" in key or key.endswith(":main") or key == "main"
        if is_main and isinstance(entry, dict):
            for field in ("authProfileOverride", "authProfile", "profile"):
                if entry.get(field):
                    return str(entry[field])
    return None


def set_session_auth_profile(home: Path, agent_id: str, session_key: str, profile: str) -> None:
    """Pin `profile` on the session (both its canonical key and the short one)."""
    path = sessions_store(home, agent_id)
    store = _read(path)
    short = session_key.removeprefix(f"agent:{agent_id}:")
    for key in dict.fromkeys((session_key, short)):
        entry = store.get(key)
        if not isinstance(entry, dict):
            entry = store[key] = {"updatedAt": int(time.time() * 1000)}
        entry["authProfileOverride"] = profile
        entry["authProfileOverrideSource"] = "user"
        entry.pop("authProfileOverrideCompactionCount", None)
    _write(path, store)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = parse_json(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write to a temp file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".sessions-", suffix=".json")
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(temp, path)


def detect_origin(home: Path, agent_id: str, now_ms: int) -> str | None:
    """Spec §31.4.1: the delivery target of the agent's most recent non-subagent session
    updated in the last 10 minutes, group chats first, then unknown, then direct."""
    try:
        store = _read(sessions_store(home, agent_id))
    except OutsideRoot:  # a fallback: no store to read is no origin
        return None
    candidates = []
    for key, entry in store.items():
        if not isinstance(entry, dict) or not key.startswith(f"agent:{agent_id}:"):
            continue
        target = (entry.get("deliveryContext") or {}).get("to")
        updated = entry.get("updatedAt")
        if ":subagent:" in key or not target or not isinstance(updated, (int, float)):
            continue
        if now_ms - updated > 600_000:
            continue
        kind = entry.get("chatType") or (
            "group" if ":group:" in key else "direct" if ":direct:" in key else "unknown"
        )
        rank = {"group": 0, "unknown": 1}.get(kind, 2)
        candidates.append((rank, -updated, str(target)))
    return min(candidates)[2] if candidates else None


def config_token(home: Path) -> str | None:
    """`gateway.auth.token` from `<home>/openclaw.json` (the dispatch CLI's fallback, §31.1)."""
    gateway = _read(home / "openclaw.json").get("gateway")
    auth = gateway.get("auth") if isinstance(gateway, dict) else None
    token = auth.get("token") if isinstance(auth, dict) else None
    return token.strip() if isinstance(token, str) and token.strip() else None


def dispatch_config(directory: Path) -> dict[str, Any]:
    """The dispatch CLI's `config.json` in `directory` (spec §31.1: `name`, `startupGraceMs`,
    `watchdogIntervalCron`, `watchdogTimeoutMin`, `deliverTo`, …); `{}` when it is missing
    or not JSON."""
    try:
        config = parse_json((directory / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}
