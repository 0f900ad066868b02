"""What a reaction may look up: the read models and the log, read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .plan import Row


class Facts(Protocol):
    """Read-only lookups a reaction needs beyond its arguments. The daemon answers them
    from its read models, its repository and the runs it is executing."""

    def job(self, job_id: str) -> Row | None: ...

    def current_job(self, row: Row) -> Row | None:
        """The job's row now, given a row of it read earlier (the same row when nothing
        could have changed it since)."""
        ...

    def children(self, job_id: str) -> list[Row]: ...

    def dispatch_backlog(self, job_id: str) -> int: ...

    def alias(self, name: str) -> Row | None: ...

    def pending_approvals(self, job_id: str) -> int: ...

    def queued_runs(self, job_id: str) -> list[Row]:
        """The job's queued runs, oldest first."""
        ...

    def queued_runs_in_pool(self, pool: str) -> list[Row]:
        """Queued runs of the jobs in the resource pool, oldest first."""
        ...

    def active_runs_of(self, job_id: str, pool: str | None) -> list[Row]:
        """Runs of this job or pool that the read models show active (any daemon)."""
        ...

    def own_runs(self) -> Mapping[str, Row]:
        """This daemon's admitted, unfinished runs: run id -> job row."""
        ...

    def own_run_of(self, job_id: str) -> str | None:
        """One of this daemon's admitted, unfinished runs of the job, if any."""
        ...

    def own_run_in_pool(self, pool: str) -> str | None:
        """One of this daemon's admitted, unfinished runs in the resource pool, if any."""
        ...

    def job_version(self, job_id: str) -> int | None:
        """The job aggregate's version in the log; None once it is deleted."""
        ...

    def load(self, aggregate_id: str) -> Any:
        """An aggregate from the log, as of now."""
        ...
