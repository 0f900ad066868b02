"""Row changes: what a projection asks of its tables for one event."""

from __future__ import annotations

from typing import Any

import msgspec


class Upsert(msgspec.Struct, frozen=True):
    table: str
    row: dict[str, Any]
    pk: str = "id"


class Update(msgspec.Struct, frozen=True):
    table: str
    key: str
    values: dict[str, Any]
    pk: str = "id"


class Delete(msgspec.Struct, frozen=True):
    table: str
    key: str
    pk: str = "id"


RowChange = Upsert | Update | Delete
