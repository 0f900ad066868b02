"""JSON text from outside the program (arguments, files, request bodies, messages, agents'
replies) read into values."""

from __future__ import annotations

import json
from typing import Any


def parse_json(text: str | bytes | bytearray, **options: Any) -> Any:
    """`json.loads(text, **options)`, except that a value nested too deeply for the parser
    (it recurses) is refused like any other text that is not JSON: a ValueError, not a
    RecursionError that would surface as an internal error."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class NotUnicodeText(ValueError):
    """JSON text whose strings hold a lone surrogate: not text UTF-8 can hold."""


LONE_SURROGATE = "holds a lone surrogate (a \\ud800 escape without its pair)"


def parse_json_text(text: str | bytes | bytearray, **options: Any) -> Any:
    """`parse_json` for a request that will be stored or answered: a `\\ud800` escape without
    its pair decodes to a lone surrogate, which no UTF-8 store, log line or header can hold,
    so such text is refused (`NotUnicodeText`) rather than failing wherever it is written.
    (Replies and frames read from agents keep `parse_json`: their text is shown, not
    refused.)"""
    value = parse_json(text, **options)
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotUnicodeText(LONE_SURROGATE) from None
    return value
