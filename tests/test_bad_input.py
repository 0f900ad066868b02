"""Bad input on the jobs commands: one line, exit status 1, and nothing written.

The tests run the real CLI's `main()` in this process (the `scheduler` fixture). The
property tests feed random job specs through it (hundreds of examples) and through a few
real processes, and check that every answer is either a stored job or a one-line refusal
that left the event log as it was.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocsched.domain.job_spec import JobSpec, job_fields

from .conftest import Result, Scheduler, shell_job

# --- the one-line error contract ----------------------------------------------------------


def assert_plain_error(result: Result) -> str:
    """Exit 1, nothing on stdout, exactly one line on stderr and no traceback."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", result
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, repr(result.stderr)
    message = result.stderr[:-1]
    assert message.strip(), repr(result.stderr)
    return message


def assert_json_error(result: Result) -> str:
    """Exit 1, nothing on stderr, and {"ok": false, "error": "<one line>"} on stdout."""
    assert result.returncode == 1, result
    assert result.stderr == "", result.stderr
    reply = json.loads(result.stdout)
    assert set(reply) == {"ok", "error"} and reply["ok"] is False, reply
    message = reply["error"]
    assert isinstance(message, str) and message.strip(), reply
    assert "\n" not in message, repr(message)
    return message


def assert_rejected(scheduler: Scheduler, *args: str) -> str:
    """Run `args` in plain and in JSON mode; both refuse with the same one-line message and
    neither records an event. Returns the message."""
    before = scheduler.event_count()
    plain = assert_plain_error(scheduler.run(*args))
    assert scheduler.event_count() == before
    as_json = assert_json_error(scheduler.run("--json", *args))
    assert scheduler.event_count() == before
    assert as_json == plain
    return plain


@pytest.fixture
def seeded(scheduler: Scheduler) -> tuple[Scheduler, str]:
    """The `scheduler` fixture holding one valid job, so "nothing written" has something to
    compare."""
    job_id = scheduler.add(shell_job())["id"]
    assert scheduler.event_count() == 1
    return scheduler, job_id


def spec_command(verb: str, job_id: str, text: str) -> list[str]:
    if verb == "update":
        return ["jobs", "update", job_id, text]
    return ["jobs", verb, text]


SPEC_VERBS = ["add", "validate", "update"]

# --- malformed JSON and JSON that is not an object ----------------------------------------

MALFORMED_JSON = ["{", "[1,", "nul", "", '{"name": "x",}', "{'name': 'x'}"]
NOT_AN_OBJECT = ["[]", "[1, 2]", '"backup"', "42", "-1.5", "null", "true"]


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("text", MALFORMED_JSON)
def test_malformed_json_is_refused_with_the_usage_and_records_nothing(seeded, verb, text):
    scheduler, job_id = seeded
    message = assert_rejected(scheduler, *spec_command(verb, job_id, text))
    assert message.startswith("Invalid JSON. Usage: jobs ")
    assert scheduler.event_count() == 1


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("text", NOT_AN_OBJECT)
def test_json_that_is_not_an_object_is_refused_and_records_nothing(seeded, verb, text):
    scheduler, job_id = seeded
    message = assert_rejected(scheduler, *spec_command(verb, job_id, text))
    assert message == "Job spec must be an object"
    assert scheduler.event_count() == 1


DEEPLY_NESTED = ["[" * 100_000, '{"name": ' + "[" * 50_000 + "]" * 50_000 + "}"]


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize("text", DEEPLY_NESTED, ids=["unclosed", "in-a-field"])
def test_deeply_nested_json_is_refused_in_one_line_and_records_nothing(seeded, verb, text):
    scheduler, job_id = seeded
    assert_rejected(scheduler, *spec_command(verb, job_id, text))
    assert scheduler.event_count() == 1


def test_deeply_nested_json_is_reported_as_invalid_json(seeded):
    scheduler, _ = seeded
    assert assert_rejected(scheduler, "jobs", "add", DEEPLY_NESTED[0]).startswith("Invalid JSON")


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "add"],
        ["jobs", "validate"],
        ["jobs", "update", "<seeded>"],
        ["jobs", "get"],
        ["jobs", "delete", "<seeded>", "extra"],
        ["jobs", "add", "{}", "extra"],
        ["jobs", "get", "<seeded>", "--bogus"],
    ],
    ids=lambda args: " ".join(args),
)
def test_a_missing_or_extra_argument_is_refused_with_the_usage(seeded, args):
    scheduler, job_id = seeded
    message = assert_rejected(scheduler, *(job_id if arg == "<seeded>" else arg for arg in args))
    assert "Usage: jobs " in message
    assert scheduler.event_count() == 1


# --- wrong types, unknown fields, bad cron, bad time zone ----------------------------------

# (field, value, words the message must contain)
BAD_FIELDS: list[tuple[str, Any, tuple[str, ...]]] = [
    ("run_timeout_ms", "60000", ("run_timeout_ms", "integer")),
    ("name", 5, ("name", "string")),
    ("run_timeout_ms", True, ("run_timeout_ms", "integer")),
    ("max_retries", False, ("max_retries", "integer")),
    ("run_timeout_ms", [60000], ("run_timeout_ms", "integer")),
    ("name", {"text": "backup"}, ("name", "string")),
    ("payload_message", ["echo", "hi"], ("payload_message", "string")),
    ("enabled", "yes", ("enabled", "0 or 1")),
    ("overlap_policy", 1, ("overlap_policy", "skip")),
    ("nmae", "backup", ('"nmae"', '"name"')),
    ("schedule_corn", "0 3 * * *", ('"schedule_corn"', '"schedule_cron"')),
    ("schedule_cron", "bad cron", ("cron", "bad cron")),
    ("schedule_cron", "61 * * * *", ("cron", "61 * * * *")),
    ("schedule_cron", 5, ("schedule_cron", "string")),
    ("schedule_tz", "Mars/Olympus", ("schedule_tz", "Mars/Olympus")),
    ("schedule_tz", "America", ("schedule_tz", "America")),
    ("schedule_tz", "../../etc/passwd", ("schedule_tz",)),
    ("schedule_tz", 9, ("schedule_tz", "string")),
]
BAD_FIELD_IDS = [f"{field}={json.dumps(value)}" for field, value, _ in BAD_FIELDS]


@pytest.mark.parametrize("verb", SPEC_VERBS)
@pytest.mark.parametrize(("field", "value", "words"), BAD_FIELDS, ids=BAD_FIELD_IDS)
def test_a_bad_field_is_refused_naming_it_and_records_nothing(seeded, verb, field, value, words):
    scheduler, job_id = seeded
    document = {field: value} if verb == "update" else shell_job(**{field: value})
    message = assert_rejected(scheduler, *spec_command(verb, job_id, json.dumps(document)))
    for word in words:
        assert word in message
    assert scheduler.event_count() == 1


def test_an_unknown_field_names_itself_and_the_closest_valid_name(seeded):
    scheduler, job_id = seeded
    spec = json.dumps(shell_job(nmae="backup"))
    expected = 'Unknown field "nmae". Did you mean "name"?'
    assert assert_rejected(scheduler, "jobs", "add", spec) == expected
    patch = json.dumps({"nmae": "renamed"})
    assert assert_rejected(scheduler, "jobs", "update", job_id, patch) == expected
    assert scheduler.ok("jobs", "get", job_id).json["name"] == "backup"


def test_a_refused_update_leaves_the_stored_job_as_it_was(seeded):
    scheduler, job_id = seeded
    stored = scheduler.ok("jobs", "get", job_id).json
    patch = {"name": "renamed", "schedule_cron": "0 4 * * *", "schedule_tz": "Mars/Olympus"}
    assert_rejected(scheduler, "jobs", "update", job_id, json.dumps(patch))
    assert scheduler.ok("jobs", "get", job_id).json == stored


# --- unknown ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "get", "nope"],
        ["jobs", "enable", "nope"],
        ["jobs", "disable", "nope"],
        ["jobs", "delete", "nope"],
        ["jobs", "update", "nope", '{"name": "renamed"}'],
    ],
    ids=["get", "enable", "disable", "delete", "update"],
)
def test_an_unknown_id_is_refused_and_records_nothing(seeded, args):
    scheduler, _ = seeded
    assert assert_rejected(scheduler, *args) == "Job not found: nope"
    assert scheduler.event_count() == 1


@pytest.mark.parametrize("verb", ["get", "enable", "disable", "delete", "update"])
def test_a_deleted_id_is_as_unknown_as_one_never_used(seeded, verb):
    scheduler, job_id = seeded
    scheduler.ok("jobs", "delete", job_id)
    args = ["jobs", verb, job_id] + (['{"name": "renamed"}'] if verb == "update" else [])
    assert assert_rejected(scheduler, *args) == f"Job not found: {job_id}"
    assert scheduler.event_count() == 2


# --- random job specs -------------------------------------------------------------------------

FIELDS = tuple(job_fields())
CREATE_ONLY_KEYS = ("next_run_at", "run_now")
UNKNOWN_KEYS = ("nmae", "schedule", "cron", "timezone", "NAME", " name", "", "__proto__")
SEED_ID = "seed-job"

NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\t",
        "a\x00b",
        "a\x1bb",
        "a\rb",
        "é ✓ 日本",
        "x" * 201,
        "0 3 * * *",
        "*/5 * * * *",
        "0 0 31 2 *",
        "61 * * * *",
        "@reboot",
        "UTC",
        "America",
        "Mars/Olympus",
        "2030-01-01T00:00:00Z",
        "9999-12-31T23:59:59-05:00",
        "regex:(",
        "contains:ok",
        '{"presentation": 1}',
        SEED_ID,
    ]
)
HUGE_INTS = st.one_of(
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**64), max_value=-(2**63) + 2),
    st.just(10**400),
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(),  # NaN and ±Infinity too: json.dumps writes them and the CLI's parser reads them
    st.text(max_size=12),
    NASTY_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def plausible(field: str) -> st.SearchStrategy[Any]:
    """Values of roughly the right shape for a field, so that many random specs pass."""
    if field in CREATE_ONLY_KEYS:
        return st.sampled_from(["2030-01-01T00:00:00Z", "soon", True, False, 1])
    info = job_fields()[field]
    if info.enum is not None:
        return st.sampled_from([*info.enum, *([None] if info.nullable else [])])
    if info.type == "integer":
        low = info.min or 0
        return st.integers(min_value=low - 2, max_value=low + 100_000)
    if info.type == "number":
        return st.floats(min_value=-1, max_value=1e6)
    if field in ("id", "parent_id"):
        return st.sampled_from([SEED_ID, "child-1", "nope", " "])
    return st.text(min_size=1, max_size=16) | NASTY_TEXT


def field_values(field: str) -> st.SearchStrategy[Any]:
    if field in FIELDS or field in CREATE_ONLY_KEYS:
        return st.one_of(plausible(field), JSON_VALUES)
    return JSON_VALUES


BASE_SPECS = [
    shell_job(),
    shell_job(
        session_target="isolated",
        payload_kind="agentTurn",
        delivery_mode="announce",
        delivery_to="-100123",
    ),
    shell_job(session_target="main", payload_kind="systemEvent"),
    shell_job(schedule_kind="at", schedule_at="2031-01-01T00:00:00Z", schedule_cron=None),
    shell_job(parent_id=SEED_ID, trigger_on="success", schedule_cron=None),
]


def heads(draw: st.DrawFn, flips: int) -> bool:
    """True when `flips` coin flips all come up heads: one time in 2**flips, roughly.
    (Coins, not `integers() < n`: Hypothesis draws small integers far more often.)"""
    return all(draw(st.booleans()) for _ in range(flips))


@st.composite
def job_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with up to three fields set to random values; one time in four a field
    is dropped, one time in eight an unknown field is added."""
    spec = dict(draw(st.sampled_from(BASE_SPECS)))
    if heads(draw, 2):
        del spec[draw(st.sampled_from(sorted(spec)))]
    keys = st.sampled_from(FIELDS + CREATE_ONLY_KEYS)
    for key in draw(st.lists(keys, max_size=3, unique=True)):
        spec[key] = draw(field_values(key))
    if heads(draw, 3):
        spec[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(JSON_VALUES)
    return spec


@st.composite
def job_patches(draw: st.DrawFn) -> dict[str, Any]:
    """Up to three fields (`id` and `run_now` among them: not updatable) with random values;
    one time in eight an unknown field too."""
    keys = st.sampled_from(FIELDS + CREATE_ONLY_KEYS)
    patch = {key: draw(field_values(key)) for key in draw(st.lists(keys, max_size=3, unique=True))}
    if heads(draw, 3):
        patch[draw(st.sampled_from(UNKNOWN_KEYS))] = draw(JSON_VALUES)
    return patch


@pytest.fixture
def cli(scheduler: Scheduler) -> Scheduler:
    """The in-process CLI (one home for all of a property test's examples), holding a job
    to update."""
    scheduler.add(shell_job(id=SEED_ID))
    return scheduler


def stored(cli: Scheduler, job_id: str) -> dict[str, Any]:
    return cli.ok("--json", "jobs", "get", job_id).json


def assert_refused(result: Result) -> None:
    """A refusal by a rule, not by the CLI's catch-all for exceptions nobody expected."""
    message = assert_json_error(result)
    assert not message.startswith(("Internal error", "Storage error")), message


def assert_is_a_valid_job(record: dict[str, Any]) -> None:
    """The stored record still converts to the job model."""
    msgspec.convert({name: record[name] for name in FIELDS}, JobSpec)


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(spec=job_specs())
def test_a_random_spec_is_either_stored_whole_or_refused_in_one_line(cli, spec):
    before = cli.event_count()
    result = cli.run("--json", "jobs", "add", json.dumps(spec))
    event(f"exit status {result.returncode}")
    assert result.returncode in (0, 1), result
    if result.returncode == 1:
        assert_refused(result)
        assert cli.event_count() == before
        return
    assert result.stderr == ""
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert cli.event_count() == before + 1
    assert stored(cli, reply["job"]["id"]) == reply["job"]
    assert_is_a_valid_job(reply["job"])


@PROPERTY_SETTINGS
@given(patch=job_patches())
def test_a_random_update_is_either_applied_whole_or_refused_in_one_line(cli, patch):
    before_update = stored(cli, SEED_ID)
    before = cli.event_count()
    result = cli.run("--json", "jobs", "update", SEED_ID, json.dumps(patch))
    event(f"exit status {result.returncode}")
    assert result.returncode in (0, 1), result
    if result.returncode == 1:
        assert_refused(result)
        assert cli.event_count() == before
        assert stored(cli, SEED_ID) == before_update
        return
    assert result.stderr == ""
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert cli.event_count() in (before, before + 1)
    assert stored(cli, SEED_ID) == reply["job"]
    assert_is_a_valid_job(reply["job"])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=job_specs(), json_mode=st.booleans())
def test_no_random_spec_makes_a_real_process_print_a_traceback(scheduler, spec, json_mode):
    before = scheduler.event_count()
    args = ["jobs", "add", json.dumps(spec)]
    result = scheduler.process(*(["--json", *args] if json_mode else args))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (0, 1), result
    if result.returncode == 1:
        message = (assert_json_error if json_mode else assert_plain_error)(result)
        assert not message.startswith(("Internal error", "Storage error")), message
        assert scheduler.event_count() == before
    else:
        assert result.stderr == ""
        assert scheduler.event_count() == before + 1


# --- lone surrogates (never drawn by st.text() above) ---


@pytest.mark.parametrize(
    "spec",
    [{"\ud800": 1}, shell_job(schedule_tz="\udc80")],
    ids=["unknown-key", "time-zone"],
)
def test_a_lone_surrogate_in_a_message_is_still_a_json_error(seeded, spec):
    scheduler, _ = seeded
    assert_rejected(scheduler, "jobs", "add", json.dumps(spec))
    assert scheduler.event_count() == 1


def test_a_lone_surrogate_in_a_text_field_is_refused_naming_the_field(seeded):
    scheduler, _ = seeded
    message = assert_rejected(scheduler, "jobs", "add", json.dumps(shell_job(name="a\ud800")))
    assert "name" in message and "Internal error" not in message
