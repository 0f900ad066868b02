"""Job-spec validation (spec §2, §3): normalization, every rule's message, rule order."""

from __future__ import annotations

import contextlib
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocsched.domain.errors import ValidationError
from ocsched.domain.job_spec import JobSpec, job_fields
from ocsched.domain.validation import PAYLOADS_BY_TARGET, validate_job_spec

from .conftest import shell_job

CHILD_AT_JOB = (
    'child jobs cannot use schedule_kind "at" -- use trigger_delay_s for delayed chain execution'
)
RUN_TIMEOUT_REQUIRED = (
    "run_timeout_ms is required and must be > 0 -- this prevents jobs from running indefinitely."
)
ORIGIN_REQUIRED = (
    "origin is required on job creation -- pass the chat_id or channel identifier where the "
    'job was requested from (e.g. "telegram:<your-user-id>", "telegram:<your-group-id>", '
    '"system" for automated/cron jobs).'
)
DELIVERY_TO_ON_INSERT = (
    "delivery_to is required on job insert. Set it to the origin chat_id "
    "(e.g. -1001234567890 for a group chat, or 987654321 for a personal DM)."
)
DELIVERY_TO_FOR_ANNOUNCE = (
    'delivery_to is required when delivery_mode is "announce" or "announce-always"'
)
OPT_OUT_REASON_REQUIRED = (
    'agentTurn jobs with delivery_mode "none" require delivery_opt_out_reason. '
    "Set delivery_to + delivery_channel, or pass delivery_opt_out_reason to explicitly "
    "skip delivery."
)


def agent_job(**changes: object) -> dict:
    """A valid root isolated agentTurn job that announces to a chat."""
    agent = {
        "session_target": "isolated",
        "payload_kind": "agentTurn",
        "delivery_mode": "announce",
        "delivery_to": "-100123",
    }
    return shell_job(**{**agent, **changes})


def child_job(**changes: object) -> dict:
    return shell_job(**{"parent_id": "parent-1", "trigger_on": "success", **changes})


def without(spec: dict, *keys: str) -> dict:
    return {key: value for key, value in spec.items() if key not in keys}


def stored(spec: dict) -> dict:
    """The record a job created from `spec` would have: every JobSpec field."""
    return msgspec.structs.asdict(msgspec.convert(spec, JobSpec))


def rejection(spec: object, current: dict | None = None) -> str:
    with pytest.raises(ValidationError) as raised:
        validate_job_spec(spec, current)
    return str(raised.value)


# --- the minimal job and the returned patch ------------------------------------------------


def test_a_minimal_shell_job_is_valid_and_comes_back_unchanged():
    assert validate_job_spec(shell_job()) == shell_job()


def test_the_result_holds_only_the_keys_of_the_input():
    patch = validate_job_spec({"name": "renamed"}, stored(shell_job()))

    assert patch == {"name": "renamed"}


# --- rule 1 and unknown keys ---------------------------------------------------------------


@pytest.mark.parametrize("spec", [None, [], "job", 5, True, [shell_job()]])
def test_a_spec_that_is_not_an_object_is_rejected(spec):
    assert rejection(spec) == "Job spec must be an object"


def test_an_unknown_field_is_rejected_with_the_closest_known_name():
    assert rejection(shell_job(schedule_corn="0 * * * *")) == (
        'Unknown field "schedule_corn". Did you mean "schedule_cron"?'
    )


def test_an_unknown_field_without_a_close_name_gets_no_suggestion():
    assert rejection(shell_job(xyzzy=1)) == 'Unknown field "xyzzy"'


def test_a_non_string_key_is_an_unknown_field():
    assert rejection({**shell_job(), 1: "x"}) == 'Unknown field "1"'


def test_unknown_fields_are_checked_before_any_rule():
    assert rejection({"schedule_kind": "weekly", "nmae": "x"}) == (
        'Unknown field "nmae". Did you mean "name"?'
    )


def test_id_cannot_be_updated():
    assert rejection({"id": "other"}, stored(shell_job())) == "id cannot be updated"


def test_a_job_may_bring_its_own_id_on_create():
    assert validate_job_spec(shell_job(id="job-1"))["id"] == "job-1"


def test_run_now_and_next_run_at_are_accepted_on_create():
    spec = shell_job(run_now=True, next_run_at="2030-01-01T00:00:00Z")

    patch = validate_job_spec(spec)

    assert patch["run_now"] is True
    assert patch["next_run_at"] == "2030-01-01 00:00:00"


def test_run_now_is_not_an_update_field():
    assert rejection({"run_now": True}, stored(shell_job())).startswith('Unknown field "run_now"')


def test_run_now_must_be_a_boolean():
    assert rejection(shell_job(run_now="yes")) == "run_now must be true or false"


def test_next_run_at_must_be_a_datetime():
    assert rejection(shell_job(next_run_at="soon")) == "next_run_at must be a valid datetime"


# --- §3.1 normalization ----------------------------------------------------------------


def test_booleans_become_one_and_zero_in_flag_fields():
    patch = validate_job_spec(shell_job(enabled=False, approval_required=True))

    assert patch["enabled"] == 0 and patch["approval_required"] == 1
    assert type(patch["enabled"]) is int


def test_blank_nullable_text_becomes_null():
    patch = validate_job_spec(shell_job(delivery_channel="  ", resource_pool="", payload_model=" "))

    assert patch["delivery_channel"] is None
    assert patch["resource_pool"] is None
    assert patch["payload_model"] is None


def test_schedule_at_with_an_offset_is_rewritten_as_utc_ts():
    spec = shell_job(schedule_kind="at", schedule_at="2030-06-01T12:00:00+02:00")

    assert validate_job_spec(spec)["schedule_at"] == "2030-06-01 10:00:00"


def test_schedule_at_already_in_ts_form_is_kept():
    spec = shell_job(schedule_kind="at", schedule_at="2030-06-01 10:00:00")

    assert validate_job_spec(spec)["schedule_at"] == "2030-06-01 10:00:00"


def test_integral_floats_become_integers():
    patch = validate_job_spec(shell_job(run_timeout_ms=5000.0, enabled=1.0))

    assert patch["run_timeout_ms"] == 5000 and type(patch["run_timeout_ms"]) is int
    assert type(patch["enabled"]) is int


# --- rule 2 ------------------------------------------------------------------------------


def test_schedule_kind_must_be_cron_or_at():
    assert rejection(shell_job(schedule_kind="weekly")) == "schedule_kind must be one of: cron, at"


# --- rules 3-5: name, payload_message, agent_id ----------------------------------------------


def test_a_missing_name_is_rejected_on_create():
    assert rejection(without(shell_job(), "name")) == "name is required"


def test_a_missing_payload_message_is_rejected_on_create():
    assert rejection(without(shell_job(), "payload_message")) == "payload_message is required"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (42, "name must be a string"),
        (None, "name must be a string"),
        ("   ", "name cannot be empty"),
        ("bad\x07name", "name contains unsupported control characters"),
        ("x" * 201, "name exceeds max length of 200"),
    ],
)
def test_a_bad_name_is_rejected(name, message):
    assert rejection(shell_job(name=name)) == message


def test_a_payload_message_may_span_several_lines():
    assert validate_job_spec(shell_job(payload_message="set -e\n\tmake\r\n"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["echo"], "payload_message must be a string"),
        ("", "payload_message cannot be empty"),
        ("echo \x1b[31m", "payload_message contains unsupported control characters"),
        ("x" * 100001, "payload_message exceeds max length of 100000"),
    ],
)
def test_a_bad_payload_message_is_rejected(payload, message):
    assert rejection(shell_job(payload_message=payload)) == message


def test_an_agent_id_longer_than_128_is_rejected():
    assert rejection(shell_job(agent_id="a" * 129)) == "agent_id exceeds max length of 128"


def test_an_agent_id_with_control_characters_is_rejected():
    assert rejection(shell_job(agent_id="ma\x00in")) == (
        "agent_id contains unsupported control characters"
    )


# --- rule 6: session_target x payload_kind (§2.2) ---------------------------------------------


def test_an_unknown_session_target_is_rejected():
    assert rejection(shell_job(session_target="cloud")) == (
        'Unknown session_target "cloud". Valid targets: main, shell, isolated'
    )


def test_a_shell_job_cannot_carry_an_agent_turn():
    assert rejection(shell_job(payload_kind="agentTurn")) == (
        'Invalid payload_kind "agentTurn" for session_target "shell". Allowed: shellCommand'
    )


def test_an_isolated_job_may_be_a_system_event():
    assert validate_job_spec(agent_job(payload_kind="systemEvent"))


def test_changing_only_the_target_to_shell_on_an_agent_turn_job_is_rejected():
    current = stored(agent_job())

    assert rejection({"session_target": "shell"}, current) == (
        'Invalid payload_kind "agentTurn" for session_target "shell". Allowed: shellCommand'
    )


def test_the_matrix_covers_exactly_the_declared_targets_and_kinds():
    fields = job_fields()
    kinds = {kind for allowed in PAYLOADS_BY_TARGET.values() for kind in allowed}

    assert set(PAYLOADS_BY_TARGET) == set(fields["session_target"].enum)
    assert kinds == set(fields["payload_kind"].enum)


# --- rules 7-9: children and trigger fields ------------------------------------------------


def test_a_child_job_cannot_be_an_at_job():
    spec = child_job(schedule_kind="at", schedule_at="2030-01-01 00:00:00")

    assert rejection(spec) == CHILD_AT_JOB


def test_a_child_job_needs_trigger_on():
    assert rejection(without(child_job(), "trigger_on")) == (
        'child jobs require trigger_on ("success", "failure", or "complete")'
    )


def test_a_child_job_needs_no_origin_and_no_cron():
    assert validate_job_spec(without(child_job(), "origin", "schedule_cron"))


def test_a_parent_id_must_be_a_string():
    assert rejection(child_job(parent_id=7)) == "parent_id must be a string"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trigger_on", "success"),
        ("trigger_delay_s", 30),
        ("trigger_condition", "contains:ok"),
    ],
)
def test_trigger_fields_belong_to_child_jobs_only(field, value):
    assert rejection(shell_job(**{field: value})) == f"{field} is a child-only field"


def test_a_zero_trigger_delay_is_fine_on_a_root_job():
    assert validate_job_spec(shell_job(trigger_delay_s=0))


# --- rules 10-14: schedule ----------------------------------------------------------------


def test_a_root_cron_job_needs_a_cron_expression():
    assert rejection(without(shell_job(), "schedule_cron")) == (
        "schedule_cron is required for root cron jobs"
    )


def test_an_at_job_needs_a_time():
    assert rejection(shell_job(schedule_kind="at")) == (
        "schedule_at is required for at-jobs (use --at or --in)"
    )


def test_a_cron_expression_longer_than_128_is_rejected():
    assert rejection(shell_job(schedule_cron="0 " * 65)) == (
        "schedule_cron exceeds max length of 128"
    )


def test_a_root_cron_job_cannot_use_the_at_job_sentinel():
    assert rejection(shell_job(schedule_cron="0 0 31 2 *")) == (
        "schedule_cron cannot use the reserved at-job sentinel for root cron jobs"
    )


def test_an_at_job_may_carry_the_sentinel():
    spec = shell_job(
        schedule_kind="at", schedule_at="2030-01-01 00:00:00", schedule_cron="0 0 31 2 *"
    )

    assert validate_job_spec(spec)


def test_a_stored_sentinel_is_not_rechecked_when_the_schedule_is_untouched():
    current = {**stored(shell_job()), "schedule_cron": "0 0 31 2 *"}

    assert validate_job_spec({"name": "renamed"}, current) == {"name": "renamed"}


def test_a_bad_cron_expression_is_rejected():
    assert rejection(shell_job(schedule_cron="bad cron")).startswith(
        'Invalid cron expression "bad cron"'
    )


def test_a_cron_job_with_a_bad_zone_fails_at_the_cron_check():
    # Rule 12 runs before rule 15: the zone error wins over the bad overlap_policy.
    spec = shell_job(schedule_tz="Mars/Olympus", overlap_policy="never")

    assert rejection(spec) == 'schedule_tz "Mars/Olympus" is not a valid IANA timezone'


def test_a_cron_expression_is_checked_in_the_zone_of_an_update():
    current = stored(shell_job())

    assert rejection({"schedule_tz": "Nowhere/City"}, current) == (
        'schedule_tz "Nowhere/City" is not a valid IANA timezone'
    )


def test_an_unparseable_schedule_at_is_rejected():
    spec = shell_job(schedule_kind="at", schedule_at="next tuesday")

    assert rejection(spec) == "schedule_at must be a valid datetime"


def test_a_schedule_at_that_is_not_a_string_is_rejected():
    spec = shell_job(schedule_kind="at", schedule_at=1767225600)

    assert rejection(spec) == "schedule_at must be a string"


@pytest.mark.parametrize("tz", ["Mars/Olympus", "America", ""])
def test_an_at_job_with_a_bad_zone_is_rejected(tz):
    spec = shell_job(schedule_kind="at", schedule_at="2030-01-01 00:00:00", schedule_tz=tz)

    assert rejection(spec) == f'schedule_tz "{tz}" is not a valid IANA timezone'


# --- rules 15-18: delivery -------------------------------------------------------------


def test_overlap_policy_must_be_a_known_policy():
    assert rejection(shell_job(overlap_policy="never")) == (
        "overlap_policy must be one of: skip, allow, queue"
    )


def test_delivery_mode_must_be_a_known_mode():
    assert rejection(shell_job(delivery_mode="email")) == (
        "delivery_mode must be one of: announce, announce-always, none"
    )


def test_a_new_job_without_delivery_mode_or_target_is_rejected():
    assert rejection(without(shell_job(), "delivery_mode")) == DELIVERY_TO_ON_INSERT


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "watchdog:disk"},
        {"session_target": "main", "payload_kind": "systemEvent"},
        {"job_type": "watchdog", "watchdog_check_cmd": "df -h"},
    ],
)
def test_some_new_jobs_need_no_delivery_target(changes):
    assert validate_job_spec(without(shell_job(**changes), "delivery_mode"))


def test_switching_an_update_to_announce_needs_a_target():
    current = stored(shell_job())

    assert rejection({"delivery_mode": "announce"}, current) == DELIVERY_TO_FOR_ANNOUNCE


def test_clearing_the_target_of_an_announcing_job_is_rejected():
    current = stored(agent_job())

    assert rejection({"delivery_to": " "}, current) == DELIVERY_TO_FOR_ANNOUNCE


def test_an_update_that_leaves_delivery_alone_is_not_held_to_the_insert_rule():
    legacy = {**stored(shell_job()), "delivery_mode": "announce", "delivery_to": None}

    assert validate_job_spec({"name": "renamed"}, legacy) == {"name": "renamed"}


def test_a_silent_agent_turn_job_needs_an_opt_out_reason():
    spec = agent_job(delivery_mode="none", delivery_to=None)

    assert rejection(spec) == OPT_OUT_REASON_REQUIRED


def test_a_silent_agent_turn_job_with_a_reason_is_valid():
    spec = agent_job(delivery_mode="none", delivery_to=None, delivery_opt_out_reason="log only")

    assert validate_job_spec(spec)


def test_a_silent_agent_turn_child_needs_no_opt_out_reason():
    spec = child_job(session_target="isolated", payload_kind="agentTurn")

    assert validate_job_spec(spec)


# --- rule 19: enums and trigger_condition ----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("payload_scope", "payload_scope must be one of: own, global"),
        ("delivery_guarantee", "delivery_guarantee must be one of: at-most-once, at-least-once"),
        ("job_class", "job_class must be one of: standard, pre_compaction_flush"),
        ("approval_auto", "approval_auto must be one of: approve, reject"),
        ("context_retrieval", "context_retrieval must be one of: none, recent, hybrid"),
        ("job_type", "job_type must be one of: standard, watchdog"),
        ("execution_intent", "execution_intent must be one of: execute, plan"),
    ],
)
def test_an_enum_field_rejects_unknown_values(field, message):
    assert rejection(shell_job(**{field: "bogus"})) == message


def test_an_enum_field_rejects_a_value_of_the_wrong_type():
    assert rejection(shell_job(job_type=["standard"])) == (
        "job_type must be one of: standard, watchdog"
    )


def test_trigger_on_must_be_a_known_outcome():
    assert rejection(child_job(trigger_on="always")) == (
        "trigger_on must be one of: success, failure, complete"
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("ok", 'trigger_condition must start with "contains:" or "regex:"'),
        ("contains:", "trigger_condition contains: pattern cannot be empty"),
        ("regex:", "trigger_condition regex pattern cannot be empty"),
    ],
)
def test_a_bad_trigger_condition_is_rejected(condition, message):
    assert rejection(child_job(trigger_condition=condition)) == message


def test_an_uncompilable_trigger_regex_is_rejected():
    message = rejection(child_job(trigger_condition="regex:(unclosed"))

    assert message.startswith("Invalid trigger_condition regex: ")


def test_a_child_may_use_a_trigger_condition():
    assert validate_job_spec(child_job(trigger_condition="regex:^OK\\b", trigger_delay_s=10))


# --- rule 20: string limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("delivery_channel", 64),
        ("delivery_to", 256),
        ("resource_pool", 128),
        ("preferred_session_key", 512),
        ("payload_model", 256),
        ("payload_thinking", 64),
        ("auth_profile", 256),
    ],
)
def test_a_text_field_longer_than_its_limit_is_rejected(field, limit):
    assert rejection(shell_job(**{field: "x" * (limit + 1)})) == (
        f"{field} exceeds max length of {limit}"
    )


def test_a_text_field_of_the_wrong_type_is_rejected():
    assert rejection(shell_job(delivery_channel=12)) == "delivery_channel must be a string"


def test_auth_profile_must_be_a_string_or_null():
    assert rejection(shell_job(auth_profile=5)) == "auth_profile must be a string or null"


# --- rule 21: origin -------------------------------------------------------------------


def test_a_new_root_job_needs_an_origin():
    assert rejection(without(shell_job(), "origin")) == ORIGIN_REQUIRED


def test_a_blank_origin_counts_as_missing():
    assert rejection(shell_job(origin="  ")) == ORIGIN_REQUIRED


def test_turning_a_child_into_a_root_needs_an_origin():
    current = stored(without(child_job(), "origin"))

    assert rejection({"parent_id": None, "trigger_on": None}, current) == ORIGIN_REQUIRED


def test_turning_a_child_into_a_root_reports_its_trigger_on_before_the_origin():
    current = stored(without(child_job(), "origin"))

    assert rejection({"parent_id": None}, current) == "trigger_on is a child-only field"


def test_an_origin_longer_than_256_is_rejected():
    assert rejection(shell_job(origin="o" * 257)) == "origin exceeds max length of 256"


# --- rule 22: v0.2 identity / trust / contract fields ------------------------------------------


def test_a_trust_level_must_be_a_known_level():
    assert rejection(shell_job(identity_trust_level="god")) == (
        "identity_trust_level must be one of: untrusted, restricted, supervised, autonomous"
    )


def test_a_json_blob_must_parse():
    assert rejection(shell_job(identity="{not json")).startswith("identity is not valid JSON: ")


def test_a_json_blob_may_not_use_nan():
    assert rejection(shell_job(evidence="NaN")).startswith("evidence is not valid JSON: ")


def test_a_json_blob_over_32768_bytes_is_rejected():
    blob = '"' + "é" * 16384 + '"'

    assert rejection(shell_job(evidence=blob)) == "evidence exceeds 32768 byte limit"


def test_a_json_blob_must_be_text():
    assert rejection(shell_job(authorization={"allow": True})) == "authorization must be a string"


def test_a_credential_handoff_is_only_for_shell_jobs():
    spec = agent_job(identity='{"presentation": {"kind": "env"}}')

    assert rejection(spec) == (
        'identity presentation / credential_handoff is only supported for session_target "shell"'
    )


def test_a_shell_job_may_declare_a_credential_handoff():
    assert validate_job_spec(shell_job(identity='{"credential_handoff": {"env": "TOKEN"}}'))


@pytest.mark.parametrize("cost", [-1, math.nan, math.inf, "5", True, 10**400])
def test_a_cost_cap_must_be_a_non_negative_finite_number(cost):
    assert rejection(shell_job(contract_max_cost_usd=cost)) == (
        "contract_max_cost_usd must be a non-negative finite number"
    )


def test_a_cost_cap_may_be_a_fraction():
    assert validate_job_spec(shell_job(contract_max_cost_usd=0.25))["contract_max_cost_usd"] == 0.25


def test_an_identity_principal_longer_than_512_is_rejected():
    assert rejection(shell_job(identity_principal="p" * 513)) == (
        "identity_principal exceeds max length of 512"
    )


# --- rule 23: watchdogs ------------------------------------------------------------------


def test_a_watchdog_job_needs_a_check_command():
    assert rejection(shell_job(job_type="watchdog")) == (
        "watchdog_check_cmd is required for watchdog jobs"
    )


def test_a_watchdog_timeout_must_be_at_least_one_minute():
    spec = shell_job(job_type="watchdog", watchdog_check_cmd="true", watchdog_timeout_min=0)

    assert rejection(spec) == "watchdog_timeout_min must be an integer >= 1"


def test_a_watchdog_check_command_has_a_length_limit():
    spec = shell_job(job_type="watchdog", watchdog_check_cmd="x" * 4097)

    assert rejection(spec) == "watchdog_check_cmd exceeds max length of 4096"


# --- rule 24: flags and integer bounds -----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "minimum"),
    [
        ("payload_timeout_seconds", 1),
        ("run_timeout_ms", 1),
        ("trigger_delay_s", 0),
        ("max_retries", 0),
        ("approval_timeout_s", 1),
        ("context_retrieval_limit", 1),
        ("max_queued_dispatches", 1),
        ("max_pending_approvals", 1),
        ("max_trigger_fanout", 1),
        ("output_store_limit_bytes", 128),
        ("output_excerpt_limit_bytes", 64),
        ("output_summary_limit_bytes", 64),
        ("output_offload_threshold_bytes", 128),
        ("ttl_hours", 1),
    ],
)
def test_an_integer_below_its_minimum_is_rejected(field, minimum):
    spec = child_job(**{field: minimum - 1})

    assert rejection(spec) == f"{field} must be an integer >= {minimum}"


@pytest.mark.parametrize("value", ["5", 2.5, True, None, [5], math.nan])
def test_run_timeout_must_be_a_real_integer(value):
    spec = shell_job(run_timeout_ms=value)

    expected = RUN_TIMEOUT_REQUIRED if value is None else "run_timeout_ms must be an integer >= 1"
    assert rejection(spec) == expected


def test_an_integer_beyond_64_bits_is_rejected():
    assert rejection(shell_job(max_retries=2**63)) == (
        "max_retries must be an integer <= 9223372036854775807"
    )


@pytest.mark.parametrize("value", ["yes", 2, -1, None, 0.5])
def test_a_flag_accepts_only_booleans_zero_and_one(value):
    assert rejection(shell_job(enabled=value)) == "enabled must be 0 or 1"


# --- rule 25: output limits ----------------------------------------------------------------


def test_the_excerpt_limit_cannot_exceed_the_store_limit():
    spec = shell_job(output_store_limit_bytes=1000, output_excerpt_limit_bytes=2000)

    assert rejection(spec) == "output_excerpt_limit_bytes cannot exceed output_store_limit_bytes"


def test_the_summary_limit_cannot_be_below_the_excerpt_limit():
    spec = shell_job(output_excerpt_limit_bytes=3000, output_summary_limit_bytes=2500)

    assert rejection(spec) == (
        "output_summary_limit_bytes cannot be smaller than output_excerpt_limit_bytes"
    )


def test_output_limits_are_compared_in_the_merged_record():
    current = stored(shell_job(output_store_limit_bytes=4096))

    assert rejection({"output_excerpt_limit_bytes": 5000}, current) == (
        "output_excerpt_limit_bytes cannot exceed output_store_limit_bytes"
    )


# --- rule 26: run_timeout_ms ------------------------------------------------------------


def test_a_new_job_needs_a_run_timeout():
    assert rejection(without(shell_job(), "run_timeout_ms")) == RUN_TIMEOUT_REQUIRED


def test_a_zero_run_timeout_fails_the_integer_bound_first():
    assert rejection(shell_job(run_timeout_ms=0)) == "run_timeout_ms must be an integer >= 1"


def test_an_update_cannot_remove_the_run_timeout():
    assert rejection({"run_timeout_ms": None}, stored(shell_job())) == RUN_TIMEOUT_REQUIRED


def test_an_update_need_not_repeat_the_run_timeout():
    assert validate_job_spec({"max_retries": 3}, stored(shell_job())) == {"max_retries": 3}


# --- fields no numbered rule covers -------------------------------------------------------


def test_an_id_must_be_a_string():
    assert rejection(shell_job(id=12)) == "id must be a string"


def test_an_opt_out_reason_must_be_a_string():
    assert rejection(shell_job(delivery_opt_out_reason=["x"])) == (
        "delivery_opt_out_reason must be a string"
    )


# --- rule order ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "removed", "message"),
    [
        ({"schedule_kind": "weekly", "name": ""}, (), "schedule_kind must be one of: cron, at"),
        ({"name": ""}, ("origin",), "name cannot be empty"),
        ({}, ("name", "run_timeout_ms"), "name is required"),
        ({"payload_message": 5}, ("schedule_cron",), "payload_message must be a string"),
        (
            {"session_target": "cloud", "trigger_on": "success"},
            (),
            'Unknown session_target "cloud". Valid targets: main, shell, isolated',
        ),
        ({"trigger_on": "success"}, ("schedule_cron",), "trigger_on is a child-only field"),
        (
            {"delivery_mode": "email"},
            ("origin",),
            "delivery_mode must be one of: announce, announce-always, none",
        ),
        ({"origin": None, "max_retries": -1}, (), ORIGIN_REQUIRED),
        ({"max_retries": -1}, ("run_timeout_ms",), "max_retries must be an integer >= 0"),
    ],
)
def test_the_earlier_rule_wins_when_a_spec_breaks_two(changes, removed, message):
    assert rejection(without(shell_job(**changes), *removed)) == message


# --- update semantics ------------------------------------------------------------------


def test_an_update_is_checked_against_the_merged_record():
    current = stored(child_job())

    patch = {"schedule_kind": "at", "schedule_at": "2030-01-01"}

    assert rejection(patch, current) == CHILD_AT_JOB


def test_an_update_only_rechecks_the_fields_it_touches():
    legacy = {**stored(shell_job()), "origin": None}

    assert validate_job_spec({"enabled": False}, legacy) == {"enabled": 0}


def test_an_update_may_blank_a_nullable_field():
    current = stored(shell_job(resource_pool="gpu"))

    assert validate_job_spec({"resource_pool": ""}, current) == {"resource_pool": None}


def test_an_update_may_make_a_job_an_at_job():
    patch = {"schedule_kind": "at", "schedule_at": "2030-01-01T00:00:00Z"}

    assert validate_job_spec(patch, stored(shell_job())) == {
        "schedule_kind": "at",
        "schedule_at": "2030-01-01 00:00:00",
    }


# --- robustness: only ValidationError, whatever the JSON ---------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "0 0 31 2 *", "regex:(", "contains:", "America", "@reboot"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
field_names = st.sampled_from([*job_fields(), "next_run_at", "run_now"])


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(field_names, json_values, max_size=4))
def test_any_json_spec_is_accepted_or_rejected_with_a_validation_error(changes):
    with contextlib.suppress(ValidationError):
        validate_job_spec(shell_job(**changes))


@settings(max_examples=300, deadline=None)
@given(patch=st.dictionaries(field_names.filter(lambda name: name != "run_now"), json_values))
def test_any_json_patch_is_accepted_or_rejected_with_a_validation_error(patch):
    with contextlib.suppress(ValidationError):
        validate_job_spec(patch, stored(agent_job()))


@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**5000), math.nan, -math.inf, "[" * 5000, [[[[[[[[[[[]]]]]]]]]]], {1: 2}],
    ids=["huge-int", "huge-negative", "nan", "-inf", "deep-text", "deep-list", "int-keys"],
)
@pytest.mark.parametrize("field", ["session_target", "payload_kind", "schedule_tz", "identity"])
def test_hostile_values_end_in_a_validation_error(field, value):
    rejection(shell_job(**{field: value}))


def test_a_deeply_nested_json_blob_is_reported_as_invalid_json():
    assert rejection(shell_job(evidence="[" * 5000 + "]" * 5000)).startswith(
        "evidence is not valid JSON: "
    )
