"""The watchdog executor (spec §24): a watchdog job runs its check command, not its
payload, in the shell, for at most min(run_timeout_ms, 60 s); what the result means is
decided by `domain/reactions/watchdog.py` when the outcome is recorded."""

from __future__ import annotations

from ocsched.adapters.executors import OnStarted, RunExecutor, RunOrder
from ocsched.domain.reactions.outcome import Outcome
from ocsched.domain.watchdog import CHECKED, check_timeout_ms

MISSING_CHECK = "Watchdog job missing watchdog_check_cmd"


class WatchdogExecutor:
    """Runs a watchdog's check through the shell executor (its process group, its spawn
    guard, its concurrency bound), and hands the result on as a check (`CHECKED`)."""

    def __init__(self, shell: RunExecutor) -> None:
        self.shell = shell

    async def execute(self, order: RunOrder, on_started: OnStarted) -> Outcome | None:
        job = order.job
        command = job.get("watchdog_check_cmd")
        if not command:
            return Outcome("error", {"summary": MISSING_CHECK, "error_message": MISSING_CHECK})
        check = {**job, "payload_message": command, "run_timeout_ms": check_timeout_ms(job)}
        result = await self.shell.execute(RunOrder(order.run_id, check), on_started)
        if result is None or "shell_exit_code" not in result.fields:
            return result  # never began, or the shell could not start
        return Outcome(CHECKED, result.fields, result.content)
