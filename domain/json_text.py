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
