"""JSON from outside the program nested deeper than the parser recurses: refused like any
text that is not JSON, wherever it comes in (the CLI fuzzer found a command's argument;
the same parser read messages, agents' replies, gateway frames and API bodies)."""

from __future__ import annotations

import pytest

from ocsched.domain.dispatch_rules.humanize import humanize
from ocsched.domain.errors import ValidationError
from ocsched.domain.json_text import parse_json
from ocsched.domain.message_spawn import SpawnRefused, spawn_job_spec
from ocsched.domain.validation import validate_job_spec

from .conftest import shell_job

DEEP_ARRAY = "[" * 100_000
DEEP_OBJECT = '{"a":' * 100_000


@pytest.mark.parametrize("text", [DEEP_ARRAY, DEEP_OBJECT, DEEP_ARRAY.encode()])
def test_json_nested_too_deeply_is_a_value_error(text):
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json(text)


def test_json_as_deep_as_the_parser_goes_still_parses():
    assert parse_json("[" * 500 + "]" * 500) is not None


def test_a_spawn_message_nested_too_deeply_is_refused():
    with pytest.raises(SpawnRefused, match="parse error"):
        spawn_job_spec(DEEP_OBJECT, from_agent="main", to_agent="ops", job_id=None)


def test_an_agents_reply_nested_too_deeply_is_humanized_as_text():
    assert humanize("Tests pass.\n" + DEEP_OBJECT) == "Tests pass."


def test_a_job_field_of_json_nested_too_deeply_is_a_validation_error():
    with pytest.raises(ValidationError, match="is not valid JSON"):
        validate_job_spec(shell_job(evidence="[" * 20_000))  # (under the 32 KB limit)
