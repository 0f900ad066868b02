"""The daemon's answers to `Facts`: its read models, its repository, its runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from ocsched.domain.reactions.plan import Row
from ocsched.projections import views


class DaemonFacts:
    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        load: Callable[[str], Any],
        own_runs: Mapping[str, Row],
    ) -> None:
        self._db = db
        self._load = load
        self._own_runs = own_runs

    def job(self, job_id: str) -> Row | None:
        return views.job(self._db(), job_id)

    def children(self, job_id: str) -> list[Row]:
        return views.children(self._db(), job_id)

    def dispatch_backlog(self, job_id: str) -> int:
        return views.dispatch_backlog(self._db(), job_id)

    def alias(self, name: str) -> Row | None:
        return views.alias(self._db(), name)

    def pending_approvals(self, job_id: str) -> int:
        return len(views.pending_approvals(self._db(), job_id))

    def queued_runs(self, job_id: str) -> list[Row]:
        return views.queued_runs(self._db(), job_id)

    def active_runs_of(self, job_id: str, pool: str | None) -> list[Row]:
        return views.active_runs_of(self._db(), job_id, pool)

    def own_runs(self) -> Mapping[str, Row]:
        return self._own_runs

    def load(self, aggregate_id: str) -> Any:
        return self._load(aggregate_id)
