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


class KeepNewest(msgspec.Struct, frozen=True):
    """Delete the finished rows of one group beyond the newest `keep` (retention)."""

    table: str
    group_column: str
    group_value: str
    order_column: str
    keep: int


RowChange = Upsert | Update | Delete | KeepNewest
