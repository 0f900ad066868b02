"""Row changes: what a projection asks of its tables for one event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Upsert:
    table: str
    row: dict[str, Any]
    pk: str = "id"


@dataclass(frozen=True)
class Update:
    table: str
    key: str
    values: dict[str, Any]
    pk: str = "id"


@dataclass(frozen=True)
class Delete:
    table: str
    key: str
    pk: str = "id"


RowChange = Upsert | Update | Delete
