"""Spec §31.1: the dispatch CLI's brand (`name` in its `config.json`) and the line every
error is written as."""

from __future__ import annotations

from typing import Any

DEFAULT_BRAND = "dispatch"


def brand(config: dict[str, Any]) -> str:
    """The configured `name`, else `dispatch`."""
    return str(config.get("name") or DEFAULT_BRAND)


def brand_line(brand: str, message: str) -> str:
    """`[<brand>] <message>`: how errors and warnings are written to stderr."""
    return f"[{brand}] {message}"
