"""An openclaw-scheduler database (the anchor's `scheduler.db`), read and never written.

The file is opened through a `file:…?mode=ro` URI, so nothing here can change it (nor
create it: a missing file is an error). Rows come back as dicts of the columns the file
has; a column an older schema lacks reads as absent, so callers use `row.get`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

SUPPORTED_SCHEMA_VERSIONS = (20, 21, 22, 23)
"""The anchor's schema versions (`MAX(version)` of `schema_migrations`) whose tables this
reader knows: 20 added jobs' `origin`, 21 messages' `delivery_to`, 22 the v0.2 identity,
authorization, evidence and contract columns, 23 `child_credential_policy` (0.2.x).
Earlier databases are migrated to 23 by openclaw-scheduler itself whenever it opens them."""

TABLES = (
    "jobs",
    "runs",
    "job_dispatch_queue",
    "approvals",
    "delivery_aliases",
    "messages",
    "message_receipts",
    "agents",
    "task_tracker",
    "task_tracker_agents",
    "idempotency_ledger",
    "team_tasks",
    "team_mailbox_events",
)


class AnchorDatabaseError(Exception):
    """The file is missing, not an openclaw-scheduler database, or of a schema version
    this reader does not know; the message says which and what to do."""


def default_path(home: str | None = None) -> str:
    """Where openclaw-scheduler keeps its database: `<SCHEDULER_HOME>/scheduler.db`, the
    home being `$HOME/.openclaw/scheduler` unless given."""
    base = home or os.path.join(os.path.expanduser("~"), ".openclaw", "scheduler")
    return os.path.join(base, "scheduler.db")


class AnchorDatabase:
    """One anchor database, open read-only: its schema version, a fingerprint that names
    it across imports, and its rows."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise AnchorDatabaseError(f"No openclaw-scheduler database at {self.path}")
        uri = f"file:{quote(self.path)}?mode=ro"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.row_factory = _dict_row
            self.tables = {
                row["name"]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as error:
            raise AnchorDatabaseError(f"{self.path} is not a SQLite database ({error})") from None
        if "schema_migrations" not in self.tables or "jobs" not in self.tables:
            self.close()
            raise AnchorDatabaseError(
                f"{self.path} is not an openclaw-scheduler database (no schema_migrations table)"
            )
        migrations = self._db.execute(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
        self.version = max((row["version"] for row in migrations), default=0)
        self.fingerprint = hashlib.sha256(
            "\n".join(f"{row['version']} {row['applied_at']}" for row in migrations).encode()
        ).hexdigest()[:16]
        """Stable while the database lives (its migrations' times), different for another:
        the import's causes carry it, so rows imported before are known again."""

    def check_version(self) -> None:
        if self.version in SUPPORTED_SCHEMA_VERSIONS:
            return
        known = f"{SUPPORTED_SCHEMA_VERSIONS[0]}-{SUPPORTED_SCHEMA_VERSIONS[-1]}"
        if self.version > SUPPORTED_SCHEMA_VERSIONS[-1]:
            raise AnchorDatabaseError(
                f"{self.path} has openclaw-scheduler schema version {self.version}, newer than"
                f" this ocsched knows (supported: {known}); upgrade ocsched"
            )
        raise AnchorDatabaseError(
            f"{self.path} has openclaw-scheduler schema version {self.version} (supported:"
            f" {known}); open it once with openclaw-scheduler 0.2.x (`openclaw-scheduler"
            " status`), which migrates it, then import again"
        )

    def columns(self, table: str) -> set[str]:
        if table not in self.tables:
            return set()
        return {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def count(self, table: str) -> int:
        if table not in self.tables:
            return 0
        return self._db.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"]

    def rows(self, table: str, order: str = "rowid") -> Iterator[dict[str, Any]]:
        """Every row of `table` in `order` (a missing table has none), read as needed."""
        return self.query(f"SELECT * FROM {table} ORDER BY {order}", needs=(table,))

    def query(
        self, sql: str, parameters: tuple = (), needs: tuple[str, ...] = ()
    ) -> Iterator[dict[str, Any]]:
        """A query of the caller's over the anchor's tables (joins, filters); no rows when
        one of the tables it `needs` is missing. A file that cannot be read (damaged, a
        column missing) is an `AnchorDatabaseError`."""
        if not self.tables.issuperset(needs):
            return
        try:
            yield from self._db.execute(sql, parameters)
        except sqlite3.DatabaseError as error:
            raise AnchorDatabaseError(f"Cannot read {self.path}: {error}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AnchorDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}
