"""JSON from outside the program nested deeper than the parser recurses: refused like any
text that is not JSON, wherever it comes in (the CLI fuzzer found a command's argument;
the same parser read messages, agents' replies, gateway frames and API bodies); and API
bodies whose strings no UTF-8 store can hold (the API fuzzer found a decision's reason)."""

from __future__ import annotations

import pytest

from ocsched.domain.dispatch_rules.humanize import humanize
from ocsched.domain.errors import ValidationError
from ocsched.domain.json_text import NotUnicodeText, parse_json, parse_json_text
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


@pytest.mark.parametrize(
    "text",
    [r'{"reason": "\ud800"}', rb'{"next": ["ok", "\uDC80"]}', r'{"\udfff": 1}'],
    ids=["value", "bytes-low-half", "key"],
)
def test_json_text_with_a_lone_surrogate_is_refused(text):
    with pytest.raises(NotUnicodeText, match="lone surrogate"):
        parse_json_text(text)
    assert parse_json(text)  # (the plain reader keeps it: agents' replies are shown)


def test_json_text_with_a_pair_or_an_escaped_backslash_is_text():
    assert parse_json_text(r'{"a": "\ud83d\ude00"}') == {"a": "\U0001f600"}
    assert parse_json_text(rb'{"a": "\\ud800"}') == {"a": "\\ud800"}


def test_a_spawn_message_nested_too_deeply_is_refused():
    with pytest.raises(SpawnRefused, match="parse error"):
        spawn_job_spec(DEEP_OBJECT, from_agent="main", to_agent="ops", job_id=None)


def test_an_agents_reply_nested_too_deeply_is_humanized_as_text():
    assert humanize("Tests pass.\n" + DEEP_OBJECT) == "Tests pass."


def test_a_job_field_of_json_nested_too_deeply_is_a_validation_error():
    with pytest.raises(ValidationError, match="is not valid JSON"):
        validate_job_spec(shell_job(evidence="[" * 20_000))  # (under the 32 KB limit)
