"""Executors: how a run is carried out, behind one small interface (APScheduler's
`JobExecutor` in spirit). The daemon picks one by the job's `session_target`, hands it a
`RunOrder`, hears `on_started` when the run has begun, and gets an `Outcome` back; what
the outcome means for the job is the domain's business (`domain/reactions/outcome.py`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ocsched.domain.agent_turn import classify_reply
from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.shell_output import (
    OutputLimits,
    ShellOutcome,
    ShellResult,
    context_summary,
    process_shell_output,
    stream_texts,
)

from . import openclaw_files, shell

log = logging.getLogger("ocsched")

AGENT_GRACE_S = 30
"""How long past the turn's own timeout the daemon waits for the gateway's answer."""


@dataclass(frozen=True)
class Started:
    """The run has begun: a process (`process_group`), or an accepted agent turn."""

    process_id: int | None = None
    process_group: int | None = None
    session_key: str | None = None


@dataclass(frozen=True)
class RunOrder:
    """One run to carry out. `prompt` and `session_key` are set for agent turns."""

    run_id: str
    job: dict[str, Any]
    prompt: str = ""
    session_key: str | None = None


OnStarted = Callable[[Started], None]


class RunExecutor(Protocol):
    async def execute(self, order: RunOrder, on_started: OnStarted) -> Outcome | None:
        """Carry the run out; None when it never began (the daemon is stopping)."""
        ...


class ShellExecutor:
    """`<shell> -c <payload_message>` in a process group of its own, at most `limit` at
    once; output classified, truncated and offloaded per spec §10. The run's shell gets
    `environment` with the run's id added (`OCSCHED_RUN_ID`), and `guard()` (the daemon's
    watchdog) knows its group before the command starts."""

    def __init__(
        self,
        *,
        shell_path: str,
        artifacts_dir: Path,
        limit: int,
        stopping: asyncio.Event,
        guard: Callable[[], shell.SpawnGuard | None] = lambda: None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.shell_path = shell_path
        self.artifacts_dir = artifacts_dir
        self.slots = asyncio.Semaphore(limit)
        self.stopping = stopping
        self.guard = guard
        self.environment = environment

    async def execute(self, order: RunOrder, on_started: OnStarted) -> Outcome | None:
        job = order.job
        async with self.slots:
            if self.stopping.is_set():
                return None
            try:
                result = await shell.run_shell(
                    job["payload_message"],
                    timeout_ms=job["run_timeout_ms"],
                    shell=self.shell_path,
                    on_start=lambda pid: on_started(Started(pid, pid)),
                    env=self._environment(order.run_id),
                    guard=self.guard(),
                )
            except OSError as error:
                return Outcome("error", {"error_message": str(error)})
        paths = self.artifact_paths(order.run_id)
        outcome = process_shell_output(result, _limits(job), paths)
        if outcome.offload_stdout or outcome.offload_stderr:
            await asyncio.to_thread(_offload, result, outcome, paths)
        return Outcome(outcome.status, _shell_fields(outcome, paths), outcome.preview)

    def _environment(self, run_id: str) -> dict[str, str] | None:
        if self.environment is None:
            return None
        return {**self.environment, shell.RUN_ID_ENV: run_id}

    def artifact_paths(self, run_id: str) -> tuple[str, str]:
        base = f"{self.artifacts_dir}/runs/{run_id}"  # os.path.join, a third of the time
        return f"{base}/stdout.txt", f"{base}/stderr.txt"


class AgentTurnExecutor:
    """One agent turn through the gateway's `agent` method (spec §11, §12). The run id is
    the turn's idempotency key: a retried or resumed call never starts a second turn, it
    gets the first one's result. An absolute timeout and an activity watchdog (§11.5)."""

    def __init__(
        self,
        gateway: Callable[[], Any],
        *,
        openclaw_home: Path,
        limit: int,
        activity_poll_s: float,
    ) -> None:
        self.gateway = gateway
        self.openclaw_home = openclaw_home
        self.slots = asyncio.Semaphore(limit)
        self.activity_poll_s = activity_poll_s

    async def execute(self, order: RunOrder, on_started: OnStarted) -> Outcome | None:
        from .gateway import GatewayError

        job, key = order.job, order.session_key or ""
        started = False

        def accepted(_: dict | None = None) -> None:
            nonlocal started
            if not started:
                started = True
                on_started(Started(session_key=key))

        timeout_s = max(1, -(-(job["run_timeout_ms"] or 300000) // 1000))
        if job["auth_profile"]:
            await asyncio.to_thread(_apply_auth_profile, self.openclaw_home, job, key)
        error: str | None = None
        final: dict = {}
        async with self.slots:
            turn = asyncio.ensure_future(
                asyncio.wait_for(
                    self.gateway().agent(
                        order.prompt,
                        idempotency_key=order.run_id,
                        session_key=key,
                        agent_id=job["agent_id"],
                        model=job["payload_model"],
                        thinking=job["payload_thinking"],
                        timeout_s=timeout_s,
                        on_accepted=accepted,
                        wait_s=timeout_s + AGENT_GRACE_S,
                    ),
                    # A backstop: by its own deadline the client has the outcome, a
                    # definite failure, or an error saying the outcome is unknown.
                    timeout_s + AGENT_GRACE_S + 5,
                )
            )
            idle_limit_s = 2 * (job["payload_timeout_seconds"] or 120)
            watchdog = asyncio.ensure_future(self._watch_activity(key, idle_limit_s))
            done, _ = await asyncio.wait({turn, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            watchdog.cancel()
            if turn in done:
                try:
                    final = turn.result()
                except TimeoutError:
                    error = f"Exceeded absolute timeout of {timeout_s}s"
                except GatewayError as failure:
                    error = str(failure)
            else:
                turn.cancel()
                error = f"Session idle for {idle_limit_s}s -- aborted (activity-based timeout)"
        accepted()  # an idempotent replay answers at once, without an accepted frame
        fields: dict[str, Any] = {"session_key": key, **_usage(final)}
        if error is None and final.get("status") not in (None, "ok"):
            error = final.get("summary") or f"Agent turn ended with status {final.get('status')}"
        if error is not None:
            fields["error_message"] = error
            return Outcome("error", fields, error, exception=True)
        reply = _reply_text(final)
        status, message, deliverable = classify_reply(reply)
        fields.update(summary=reply[:5000], error_message=message)
        return Outcome(status, fields, reply, deliverable=deliverable)

    async def _watch_activity(self, session_key: str, idle_limit_s: float) -> None:
        """Spec §11.5: returns when the session shows no activity (its `updatedAt` in
        `sessions.list`) for `idle_limit_s`; listing failures are ignored."""
        from .gateway import GatewayError

        last_activity, last_seen = time.monotonic(), None
        while True:
            await asyncio.sleep(self.activity_poll_s)
            try:
                answer = await self.gateway().sessions_list(activeMinutes=60)
            except GatewayError:
                continue
            for session in answer.get("sessions") or []:
                if session.get("key") == session_key and session.get("updatedAt") != last_seen:
                    last_seen, last_activity = session.get("updatedAt"), time.monotonic()
            if time.monotonic() - last_activity >= idle_limit_s:
                return


def _shell_fields(outcome: ShellOutcome, paths: tuple[str, str]) -> dict[str, Any]:
    stdout_path = paths[0] if outcome.offload_stdout else None
    stderr_path = paths[1] if outcome.offload_stderr else None
    return {
        "summary": outcome.summary,
        "error_message": outcome.error_message,
        "shell_exit_code": outcome.shell_exit_code,
        "shell_signal": outcome.shell_signal,
        "shell_timed_out": outcome.shell_timed_out,
        "shell_stdout": outcome.shell_stdout,
        "shell_stderr": outcome.shell_stderr,
        "shell_stdout_path": stdout_path,
        "shell_stderr_path": stderr_path,
        "shell_stdout_bytes": outcome.shell_stdout_bytes,
        "shell_stderr_bytes": outcome.shell_stderr_bytes,
        "context_summary": context_summary(outcome, stdout_path, stderr_path),
    }


def _offload(result: ShellResult, outcome: ShellOutcome, paths: tuple[str, str]) -> None:
    """Write streams too large to keep in the run record to the artifacts directory."""
    from .settings import write_artifact

    stdout, stderr, _ = stream_texts(result)
    for wanted, text, path in (
        (outcome.offload_stdout, stdout, paths[0]),
        (outcome.offload_stderr, stderr, paths[1]),
    ):
        if wanted:
            write_artifact(path, text)  # folders 0700, file 0600, whatever the umask


def _limits(job: dict[str, Any]) -> OutputLimits:
    return OutputLimits(
        store=job["output_store_limit_bytes"],
        excerpt=job["output_excerpt_limit_bytes"],
        summary=job["output_summary_limit_bytes"],
        offload_threshold=job["output_offload_threshold_bytes"],
    )


def _apply_auth_profile(openclaw_home: Path, job: dict[str, Any], session_key: str) -> None:
    """Spec §11.6, best effort: refresh the agent's credentials, then pin the job's profile
    (`inherit`: the main session's) on the turn's session."""
    agent = job["agent_id"] or "main"
    try:
        openclaw_files.sync_credentials(openclaw_home, agent)
        profile = job["auth_profile"]
        if profile == "inherit":
            profile = openclaw_files.main_session_profile(openclaw_home, agent)
        if profile and profile != "inherit":
            openclaw_files.set_session_auth_profile(openclaw_home, agent, session_key, profile)
    except OSError as error:
        log.warning("auth profile for job %s not applied: %s", job["id"], error)


def _reply_text(final: dict) -> str:
    payloads = ((final.get("result") or {}).get("payloads")) or []
    return "\n".join(p.get("text") or "" for p in payloads if isinstance(p, dict)).strip()


def _usage(final: dict) -> dict[str, int | None]:
    meta = (final.get("result") or {}).get("meta") or {}
    usage = (meta.get("agentMeta") or {}).get("usage") or {}
    return {
        "input_tokens": usage.get("input"),
        "output_tokens": usage.get("output"),
        "total_tokens": usage.get("total"),
    }
