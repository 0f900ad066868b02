"""Job-spec validation (spec §3): normalize the input, then apply the rules in order.

`validate_job_spec` is used by `jobs add`, `jobs update`, `jobs validate` and `--dry-run`.
The first failing rule raises ValidationError with the anchor's message. Field types,
defaults, enums, bounds and max lengths are read from `JobSpec` through `job_fields()`;
this module only knows the rules, their order and their wording.

Pure: no I/O, no clock. Parent existence, cycles and chain depth are checked elsewhere.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable
from functools import cache
from typing import TypeGuard

import msgspec

from .errors import ValidationError, unknown_field
from .job_spec import (
    AT_JOB_SENTINEL_CRON,
    JSON_BLOB_FIELDS,
    JSON_BLOB_MAX_BYTES,
    JobSpec,
    flag_fields,
    job_fields,
)
from .json_text import parse_json
from .policies import compile_condition_regex
from .safe_names import check_path_segment
from .schedule import check_cron, parse_datetime, to_ts, zone

# Keys a spec may carry besides the JobSpec fields (spec §4.5); they are not stored.
CREATE_ONLY_KEYS = ("next_run_at", "run_now")
UPDATE_EXTRA_KEYS = ("next_run_at",)

# §2.2, in the anchor's order: its message lists the targets as "main, shell, isolated".
PAYLOADS_BY_TARGET = {
    "main": ("systemEvent",),
    "shell": ("shellCommand",),
    "isolated": ("systemEvent", "agentTurn"),
}

INT64_MAX = 2**63 - 1  # what SQLite and PostgreSQL can store

# The anchor rejects C0 controls and DEL but keeps tab, newline and carriage return.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_TRIGGER_FIELDS = ("trigger_on", "trigger_delay_s", "trigger_condition")
_RULE_19_ENUMS = (
    "payload_scope",
    "delivery_guarantee",
    "job_class",
    "approval_auto",
    "context_retrieval",
    "job_type",
    "execution_intent",
)
_RULE_20_TEXTS = (
    "delivery_channel",
    "delivery_to",
    "resource_pool",
    "preferred_session_key",
    "payload_model",
    "payload_thinking",
    "auth_profile",
)
_WATCHDOG_TEXTS = (
    "watchdog_target_label",
    "watchdog_check_cmd",
    "watchdog_alert_channel",
    "watchdog_alert_target",
)
_V02_PREFIXES = ("identity", "authorization", "evidence", "contract_", "child_credential_")
_HANDOFF_KEYS = ("presentation", "credential_handoff")

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
ORIGIN_REQUIRED = (
    "origin is required on job creation -- pass the chat_id or channel identifier where the "
    'job was requested from (e.g. "telegram:<your-user-id>", "telegram:<your-group-id>", '
    '"system" for automated/cron jobs).'
)
RUN_TIMEOUT_REQUIRED = (
    "run_timeout_ms is required and must be > 0 -- this prevents jobs from running indefinitely."
)
CHILD_AT_JOB = (
    'child jobs cannot use schedule_kind "at" -- use trigger_delay_s for delayed chain execution'
)
CREDENTIAL_HANDOFF_NOT_SHELL = (
    'identity presentation / credential_handoff is only supported for session_target "shell"'
)
CHILD_TRIGGER_ON = 'child jobs require trigger_on ("success", "failure", or "complete")'


def validate_job_spec(spec: object, current: dict | None = None) -> dict:
    """Validate a job spec for create (current is None) or an update patch (current is the
    stored job record, a dict with every JobSpec field). Returns the normalized patch:
    only the keys that were in the input, after the §3.1 normalizations (booleans -> 1/0,
    blank nullable text -> None, schedule_at -> TS text, integral floats like 5.0 -> 5).
    Raises ValidationError(message) with the first failing rule, in the §3.2 order."""
    if not isinstance(spec, dict):
        raise ValidationError("Job spec must be an object")
    creating = current is None
    _reject_unknown_keys(spec, creating)
    _reject_unencodable_text(spec)
    patch = {key: _normalize(key, value) for key, value in spec.items()}
    check = _Check(patch, _merge(patch, current), current or {}, creating)
    for rule in _RULES:
        rule(check)
    _check_converts(check.record)
    return patch


def _reject_unencodable_text(spec: dict) -> None:
    """A JSON `\\ud800` escape decodes to a lone surrogate, which no UTF-8 store can hold
    (UTF-8 encodes every other code point)."""
    for key, value in spec.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(
                    f"{key} contains an invalid character (a lone surrogate)"
                ) from None


class _Check(msgspec.Struct, frozen=True):
    """What every rule looks at: the normalized patch and the merged record. (A Struct:
    made at import ~30 times faster than a frozen dataclass.)"""

    patch: dict
    record: dict
    current: dict  # empty on create
    creating: bool

    def touched(self, field: str) -> bool:
        # On create every field is touched, except a required one the spec left out:
        # the rule for that field reports it as missing.
        return field in self.patch or (self.creating and field in self.record)

    def __getitem__(self, field: str) -> object:
        return self.record.get(field)

    @property
    def is_child(self) -> bool:
        return _is_set(self["parent_id"])


# --- keys and normalization (§3.1) ---------------------------------------------------


def _reject_unknown_keys(spec: dict, creating: bool) -> None:
    allowed = _allowed_keys(creating)
    for key in spec:
        if key in allowed:
            continue
        if key == "id":
            raise ValidationError("id cannot be updated")
        if not isinstance(key, str):
            raise ValidationError(f'Unknown field "{_show(key)}"')
        raise ValidationError(unknown_field(key, allowed))


@cache
def _allowed_keys(creating: bool) -> tuple[str, ...]:
    if creating:
        return (*job_fields(), *CREATE_ONLY_KEYS)
    return (*(name for name in job_fields() if name != "id"), *UPDATE_EXTRA_KEYS)


def _normalize(key: str, value: object) -> object:
    if key in ("schedule_at", "next_run_at"):
        return _normalize_datetime(key, value)
    if key == "run_now":
        return bool(value) if _is_int(value) and value in (0, 1) else value
    info = job_fields()[key]
    if isinstance(value, bool) and key in flag_fields():
        return int(value)
    if info.type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if _is_free_text(key) and info.nullable and isinstance(value, str) and not value.strip():
        return None
    return value


def _normalize_datetime(field: str, value: object) -> object:
    """The TS text when it parses; otherwise the raw value, which rule 13 then reports."""
    if isinstance(value, str) and not value.strip():
        return None
    try:
        return _to_ts(field, value)
    except ValidationError:
        return value


def _to_ts(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    try:
        return to_ts(parse_datetime(value))
    except (ValidationError, ValueError, OverflowError):  # OverflowError: year 1 or 9999 + offset
        raise ValidationError(f"{field} must be a valid datetime") from None


def _merge(patch: dict, current: dict | None) -> dict:
    record = {**_default_record(), **(current or {})}
    record.update((key, value) for key, value in patch.items() if key in job_fields())
    return record


def _default_record() -> dict:
    """Every JobSpec field that has a default, with that default."""
    return {name: info.default for name, info in job_fields().items() if not info.required}


# --- rules 2-26 (§3.2), in order -------------------------------------------------------


def _rule_schedule_kind(c: _Check) -> None:
    if c.touched("schedule_kind"):
        _check_enum("schedule_kind", c["schedule_kind"])


def _rule_name(c: _Check) -> None:
    _check_required_text(c, "name")


def _rule_payload_message(c: _Check) -> None:
    _check_required_text(c, "payload_message")


def _check_required_text(c: _Check, field: str) -> None:
    # Spec §3.3: the anchor lets a missing name / payload_message through to the insert.
    if c.creating and field not in c.patch:
        raise ValidationError(f"{field} is required")
    if c.touched(field):
        _check_text(field, c[field])


def _rule_agent_id(c: _Check) -> None:
    """The anchor's text rules, then one of ours: the id names a folder in the OpenClaw
    home, so it must be a safe path segment (safe_names)."""
    if c.touched("agent_id"):
        check_path_segment("agent_id", _text("agent_id", c["agent_id"]))


def _rule_target_and_payload(c: _Check) -> None:
    if not (c.touched("session_target") or c.touched("payload_kind")):
        return
    target, kind = c["session_target"], c["payload_kind"]
    allowed = PAYLOADS_BY_TARGET.get(target) if isinstance(target, str) else None
    if allowed is None:
        targets = ", ".join(PAYLOADS_BY_TARGET)
        raise ValidationError(f'Unknown session_target "{_show(target)}". Valid targets: {targets}')
    if kind is not None and not (isinstance(kind, str) and kind in allowed):
        raise ValidationError(
            f'Invalid payload_kind "{_show(kind)}" for session_target "{target}". '
            f"Allowed: {', '.join(allowed)}"
        )


def _rule_child_at_job(c: _Check) -> None:
    # A parent_id of the wrong type would otherwise be taken for a child by rules 7-9.
    if c.touched("parent_id"):
        _check_text("parent_id", c["parent_id"])
    if c.is_child and c["schedule_kind"] == "at":
        raise ValidationError(CHILD_AT_JOB)


def _rule_child_trigger_on(c: _Check) -> None:
    if c.is_child and not _is_set(c["trigger_on"]):
        raise ValidationError(CHILD_TRIGGER_ON)


def _rule_root_trigger_fields(c: _Check) -> None:
    # A patch setting parent_id counts as touching them: a child turned root keeps its
    # trigger_on, which this rule reports first (rule 21 asks for the origin later).
    touched = (*_TRIGGER_FIELDS, "parent_id")
    if c.is_child or not any(c.touched(field) for field in touched):
        return
    if _is_set(c["trigger_on"]):
        raise ValidationError("trigger_on is a child-only field")
    delay = c["trigger_delay_s"]
    if _is_number(delay) and delay > 0:
        raise ValidationError("trigger_delay_s is a child-only field")
    if _is_set(c["trigger_condition"]):
        raise ValidationError("trigger_condition is a child-only field")


def _rule_root_cron_needs_cron(c: _Check) -> None:
    if not c.is_child and c["schedule_kind"] != "at" and not _is_set(c["schedule_cron"]):
        raise ValidationError("schedule_cron is required for root cron jobs")


def _rule_at_job_needs_time(c: _Check) -> None:
    if c["schedule_kind"] == "at" and not _is_set(c["schedule_at"]):
        raise ValidationError("schedule_at is required for at-jobs (use --at or --in)")


def _rule_cron_expression(c: _Check) -> None:
    cron = c["schedule_cron"]
    if not _is_set(cron):
        return
    cron = _text("schedule_cron", cron)
    if " ".join(cron.split()) == AT_JOB_SENTINEL_CRON:
        being_set = any(c.touched(f) for f in ("schedule_cron", "schedule_kind", "parent_id"))
        if not c.is_child and c["schedule_kind"] != "at" and being_set:
            raise ValidationError(
                "schedule_cron cannot use the reserved at-job sentinel for root cron jobs"
            )
        return
    # The job's zone is part of the cron check: a bad zone fails here, not at rule 14.
    tz = _check_timezone(c["schedule_tz"])
    _parse_cron(cron, tz)


def _rule_schedule_at(c: _Check) -> None:
    if c.touched("schedule_at"):
        _to_ts("schedule_at", c["schedule_at"])


def _rule_timezone(c: _Check) -> None:
    if c.touched("schedule_tz"):
        _check_timezone(c["schedule_tz"])


def _rule_overlap_and_delivery_mode(c: _Check) -> None:
    _check_enum("overlap_policy", c["overlap_policy"])
    _check_enum("delivery_mode", c["delivery_mode"])


def _rule_delivery_target_on_insert(c: _Check) -> None:
    if not c.creating or _delivery_exempt(c) or c["delivery_mode"] == "none":
        return
    if not _is_set(c["delivery_to"]):
        raise ValidationError(DELIVERY_TO_ON_INSERT)


def _rule_announce_target(c: _Check) -> None:
    if c["delivery_mode"] not in ("announce", "announce-always") or _delivery_exempt(c):
        return
    changing = c.touched("delivery_mode") or c.touched("delivery_to")
    if changing and not _is_set(c["delivery_to"]):
        raise ValidationError(DELIVERY_TO_FOR_ANNOUNCE)


def _delivery_exempt(c: _Check) -> bool:
    name = c["name"]
    return (
        c["job_type"] == "watchdog"
        or (isinstance(name, str) and name.startswith("watchdog:"))
        or c["session_target"] == "main"
    )


def _rule_agent_turn_opt_out(c: _Check) -> None:
    kind = c["payload_kind"]
    agent_turn = kind == "agentTurn" or (kind is None and c["session_target"] == "isolated")
    if c.is_child or not agent_turn or c["delivery_mode"] != "none":
        return
    if not _is_set(c["delivery_opt_out_reason"]):
        raise ValidationError(OPT_OUT_REASON_REQUIRED)


def _rule_enums_and_trigger_condition(c: _Check) -> None:
    for field in _RULE_19_ENUMS:
        _check_enum(field, c[field])
    _check_enum("trigger_on", c["trigger_on"])
    _check_trigger_condition(c["trigger_condition"])


def _rule_string_limits(c: _Check) -> None:
    for field in _RULE_20_TEXTS:
        if not c.touched(field):
            continue
        if field == "auth_profile" and not isinstance(c[field], str | None):
            raise ValidationError("auth_profile must be a string or null")
        _check_text(field, c[field])


def _rule_origin(c: _Check) -> None:
    becoming_root = (
        "parent_id" in c.patch and _is_set(c.current.get("parent_id")) and not c.is_child
    )
    if ((c.creating and not c.is_child) or becoming_root) and not _is_set(c["origin"]):
        raise ValidationError(ORIGIN_REQUIRED)
    if c.touched("origin"):
        _check_text("origin", c["origin"])


def _rule_v02_fields(c: _Check) -> None:
    for field in _v02_fields():
        if c.touched(field):
            _check_v02_field(field, c[field])
    if c.touched("identity") or c.touched("session_target"):
        _check_credential_handoff(c["identity"], c["session_target"])


def _check_v02_field(field: str, value: object) -> None:
    info = job_fields()[field]
    if info.enum is not None:
        _check_enum(field, value)
    elif field in JSON_BLOB_FIELDS:
        _check_json_blob(field, value)
    elif info.type == "number":
        _check_non_negative_number(field, value)
    else:
        _check_text(field, value)


def _check_credential_handoff(identity: object, target: object) -> None:
    if target == "shell" or not isinstance(identity, str):
        return
    try:
        parsed = _load_json(identity)
    except ValueError:
        return
    if isinstance(parsed, dict) and any(parsed.get(key) is not None for key in _HANDOFF_KEYS):
        raise ValidationError(CREDENTIAL_HANDOFF_NOT_SHELL)


def _rule_watchdog(c: _Check) -> None:
    if c["job_type"] != "watchdog":
        return
    if not _is_set(c["watchdog_check_cmd"]):
        raise ValidationError("watchdog_check_cmd is required for watchdog jobs")
    for field in _WATCHDOG_TEXTS:
        _check_text(field, c[field])
    _check_integer("watchdog_timeout_min", c["watchdog_timeout_min"])


def _rule_flags_and_integer_bounds(c: _Check) -> None:
    for field in flag_fields():
        if c.touched(field) and not (_is_int(c[field]) and c[field] in (0, 1)):
            raise ValidationError(f"{field} must be 0 or 1")
    for field, info in job_fields().items():
        if field == "run_timeout_ms" and c[field] is None:
            continue  # rule 26 reports it with its own message
        if info.type == "integer" and info.enum is None and c.touched(field):
            _check_integer(field, c[field])


def _rule_output_limits(c: _Check) -> None:
    store = c["output_store_limit_bytes"]
    excerpt = c["output_excerpt_limit_bytes"]
    summary = c["output_summary_limit_bytes"]
    if _is_int(store) and _is_int(excerpt) and excerpt > store:
        raise ValidationError("output_excerpt_limit_bytes cannot exceed output_store_limit_bytes")
    if _is_int(excerpt) and _is_int(summary) and summary < excerpt:
        raise ValidationError(
            "output_summary_limit_bytes cannot be smaller than output_excerpt_limit_bytes"
        )


def _rule_run_timeout_required(c: _Check) -> None:
    # Also on an update that sets it to null: that would let the job run forever.
    if (c.creating or "run_timeout_ms" in c.patch) and c["run_timeout_ms"] is None:
        raise ValidationError(RUN_TIMEOUT_REQUIRED)


def _rule_remaining_text_fields(c: _Check) -> None:
    """Type and length of the text fields no numbered rule covers (id, parent_id, ...)."""
    for field in job_fields():
        if _is_free_text(field) and field not in JSON_BLOB_FIELDS and c.touched(field):
            _check_text(field, c[field])


def _rule_scheduling_keys(c: _Check) -> None:
    if "next_run_at" in c.patch:
        _to_ts("next_run_at", c.patch["next_run_at"])
    if "run_now" in c.patch and not isinstance(c.patch["run_now"], bool):
        raise ValidationError("run_now must be true or false")


_RULES: tuple[Callable[[_Check], None], ...] = (
    _rule_schedule_kind,  # 2
    _rule_name,  # 3
    _rule_payload_message,  # 4
    _rule_agent_id,  # 5
    _rule_target_and_payload,  # 6
    _rule_child_at_job,  # 7
    _rule_child_trigger_on,  # 8
    _rule_root_trigger_fields,  # 9
    _rule_root_cron_needs_cron,  # 10
    _rule_at_job_needs_time,  # 11
    _rule_cron_expression,  # 12
    _rule_schedule_at,  # 13
    _rule_timezone,  # 14
    _rule_overlap_and_delivery_mode,  # 15
    _rule_delivery_target_on_insert,  # 16
    _rule_announce_target,  # 17
    _rule_agent_turn_opt_out,  # 18
    _rule_enums_and_trigger_condition,  # 19
    _rule_string_limits,  # 20
    _rule_origin,  # 21
    _rule_v02_fields,  # 22
    _rule_watchdog,  # 23
    _rule_flags_and_integer_bounds,  # 24
    _rule_output_limits,  # 25
    _rule_run_timeout_required,  # 26
    _rule_remaining_text_fields,
    _rule_scheduling_keys,
)


def _check_converts(record: dict) -> None:
    """Safety net: the merged record must be a valid JobSpec whatever the rules missed."""
    fields = {name: record[name] for name in job_fields() if name in record}
    try:
        msgspec.convert(fields, JobSpec)
    except msgspec.ValidationError as error:
        raise ValidationError(" ".join(f"Invalid job spec: {error}".split())) from None


# --- value checks ------------------------------------------------------------------------


def _check_text(field: str, value: object) -> None:
    if value is None and job_fields()[field].nullable:
        return
    _text(field, value)


def _text(field: str, value: object) -> str:
    """The value of a text field that must be given, checked; returned as the text it is."""
    info = job_fields()[field]
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    if not value.strip():
        raise ValidationError(f"{field} cannot be empty")
    if _CONTROL_CHARS.search(value):
        raise ValidationError(f"{field} contains unsupported control characters")
    if info.maxLength is not None and len(value) > info.maxLength:
        raise ValidationError(f"{field} exceeds max length of {info.maxLength}")
    return value


def _check_enum(field: str, value: object) -> None:
    info = job_fields()[field]
    if value is None and info.nullable:
        return
    assert info.enum is not None, f"{field} is not an enum field"
    if not (isinstance(value, str) and value in info.enum):
        raise ValidationError(f"{field} must be one of: {', '.join(info.enum)}")


def _check_integer(field: str, value: object) -> None:
    info = job_fields()[field]
    if value is None and info.nullable:
        return
    if not _is_int(value) or (info.min is not None and value < info.min):
        bound = f" >= {info.min}" if info.min is not None else ""
        raise ValidationError(f"{field} must be an integer{bound}")
    if value > INT64_MAX:
        raise ValidationError(f"{field} must be an integer <= {INT64_MAX}")


def _check_non_negative_number(field: str, value: object) -> None:
    if value is None:
        return
    try:
        valid = _is_number(value) and math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        valid = False
    if not valid:
        raise ValidationError(f"{field} must be a non-negative finite number")


def _check_json_blob(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > JSON_BLOB_MAX_BYTES:
        raise ValidationError(f"{field} exceeds {JSON_BLOB_MAX_BYTES} byte limit")
    try:
        _load_json(value)
    except ValueError as error:
        raise ValidationError(f"{field} is not valid JSON: {error}") from None


def _load_json(text: str) -> object:
    """Strict JSON like the anchor's JSON.parse (no NaN/Infinity); raises ValueError."""
    return parse_json(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> object:
    raise ValueError(f"unexpected token {name}")


def _check_trigger_condition(condition: object) -> None:
    if condition is None:
        return
    condition = _text("trigger_condition", condition)
    if condition.startswith("contains:"):
        if not condition.removeprefix("contains:"):
            raise ValidationError("trigger_condition contains: pattern cannot be empty")
        return
    if not condition.startswith("regex:"):
        raise ValidationError('trigger_condition must start with "contains:" or "regex:"')
    pattern = condition.removeprefix("regex:")
    if not pattern:
        raise ValidationError("trigger_condition regex pattern cannot be empty")
    try:  # by the engine the daemon evaluates it with (policies.trigger_matches)
        compile_condition_regex(pattern)
    except ValueError as error:
        raise ValidationError(f"Invalid trigger_condition regex: {error}") from None


def _check_timezone(tz: object) -> str:
    if not isinstance(tz, str):
        raise ValidationError("schedule_tz must be a string")
    try:
        zone(tz)
    except OSError:  # zone() lets IsADirectoryError through for names like "America"
        raise ValidationError(f'schedule_tz "{tz}" is not a valid IANA timezone') from None
    return tz


def _parse_cron(expression: str, tz: str) -> None:
    try:
        check_cron(expression, tz)
    except ValidationError:
        raise
    except Exception as error:  # the cron library raises assorted types on odd input
        raise ValidationError(f'Invalid cron expression "{expression}": {error}') from None


# --- small helpers -----------------------------------------------------------------------


@cache
def _v02_fields() -> tuple[str, ...]:
    return tuple(name for name in job_fields() if name.startswith(_V02_PREFIXES))


@cache
def _is_free_text(field: str) -> bool:
    """A text field without an enum: where blank means "not set" (§3.1)."""
    info = job_fields().get(field)
    return info is not None and info.type == "string" and info.enum is None


def _is_set(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: object) -> str:
    """A value as it appears in a message: JSON spelling for null/true/false, short repr."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    try:
        return reprlib.repr(value)
    except ValueError:  # an int with more digits than Python will print
        return f"<{type(value).__name__}>"
