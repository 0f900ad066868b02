"""Where ocsched keeps its data, from the environment (spec §1.2, §32)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


@dataclass(frozen=True)
class Settings:
    """SCHEDULER_DB is a SQLite path (default `$SCHEDULER_HOME/ocsched.db`) or a
    `postgresql://` URL; with PostgreSQL the read models live in a local SQLite file."""

    home: Path
    database: str

    @property
    def uses_postgres(self) -> bool:
        return self.database.startswith(POSTGRES_SCHEMES)

    @property
    def read_model_path(self) -> str:
        """The SQLite file holding read models: the event file itself when it is SQLite,
        so a read model and the events it was built from cannot drift apart."""
        if self.uses_postgres:
            return os.environ.get("OCSCHED_READ_MODEL_DB") or str(self.home / "read-models.db")
        return self.database

    @property
    def artifacts_dir(self) -> Path:
        """Offloaded run output (spec §1.3)."""
        configured = os.environ.get("SCHEDULER_ARTIFACTS_DIR")
        if configured:
            return Path(configured)
        if self.uses_postgres:
            return self.home / "artifacts"
        return Path(self.database).resolve().parent / "artifacts"

    @classmethod
    def from_environment(cls) -> Settings:
        home_dir = os.environ.get("HOME") or str(Path.home())
        home = Path(os.environ.get("SCHEDULER_HOME") or Path(home_dir) / ".openclaw" / "scheduler")
        database = os.environ.get("SCHEDULER_DB") or str(home / "ocsched.db")
        return cls(home=home, database=database)


def prepare_private_file(path: str) -> None:
    """Create the file's directory (0700) and the file itself (0600) if missing.

    SQLite gives its -wal and -shm files the mode of the database file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
