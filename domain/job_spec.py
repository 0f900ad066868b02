"""The job model of spec §2: every field, its type, default, bounds and allowed values.

`JobSpec` is the single definition of the fields. Validation reads bounds and enums from
it, `ocsched schema jobs` prints it, and the Created event stores an instance of it.
"""

# No `from __future__ import annotations`: JobSpec's annotations are made once, as the class
# is, instead of compiled from text by every reader (`job_fields`, msgspec's first convert:
# ~3 ms each on every `jobs add`).

import types
import typing
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

AT_JOB_SENTINEL_CRON = "0 0 31 2 *"

Flag = Literal[0, 1]


def text(max_length: int) -> Meta:
    return Meta(max_length=max_length)


def at_least(minimum: int) -> Meta:
    return Meta(ge=minimum)


TrustLevel = Literal["untrusted", "restricted", "supervised", "autonomous"]
PayloadKind = Literal["systemEvent", "agentTurn", "shellCommand"]


class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=False):
    """A job as the user specifies it, after normalization and defaults."""

    id: str | None = None
    name: Annotated[str, text(200)]
    enabled: Flag = 1
    schedule_kind: Literal["cron", "at"] = "cron"
    schedule_cron: Annotated[str, text(128)] | None = None
    schedule_at: str | None = None
    schedule_tz: Annotated[str, text(128)] = "UTC"
    session_target: Literal["main", "isolated", "shell"] = "isolated"
    agent_id: Annotated[str, text(128)] = "main"
    payload_kind: PayloadKind | None = None
    payload_message: Annotated[str, text(100000)]
    payload_model: Annotated[str, text(256)] | None = None
    payload_thinking: Annotated[str, text(64)] | None = None
    payload_timeout_seconds: Annotated[int, at_least(1)] = 120
    execution_intent: Literal["execute", "plan"] = "execute"
    execution_read_only: Flag = 0
    overlap_policy: Literal["skip", "allow", "queue"] = "skip"
    run_timeout_ms: Annotated[int, at_least(1)]
    max_queued_dispatches: Annotated[int, at_least(1)] = 25
    max_pending_approvals: Annotated[int, at_least(1)] = 10
    max_trigger_fanout: Annotated[int, at_least(1)] = 25
    delivery_mode: Literal["announce", "announce-always", "none"] = "announce"
    delivery_channel: Annotated[str, text(64)] | None = None
    delivery_to: Annotated[str, text(256)] | None = None
    delivery_opt_out_reason: str | None = None
    delivery_guarantee: Literal["at-most-once", "at-least-once"] = "at-most-once"
    delete_after_run: Flag = 0
    ttl_hours: Annotated[int, at_least(1)] | None = None
    parent_id: str | None = None
    trigger_on: Literal["success", "failure", "complete"] | None = None
    trigger_delay_s: Annotated[int, at_least(0)] = 0
    trigger_condition: Annotated[str, text(1024)] | None = None
    max_retries: Annotated[int, at_least(0)] = 0
    payload_scope: Literal["own", "global"] = "own"
    resource_pool: Annotated[str, text(128)] | None = None
    job_class: Literal["standard", "pre_compaction_flush"] = "standard"
    approval_required: Flag = 0
    approval_timeout_s: Annotated[int, at_least(1)] = 3600
    approval_auto: Literal["approve", "reject"] = "reject"
    context_retrieval: Literal["none", "recent", "hybrid"] = "none"
    context_retrieval_limit: Annotated[int, at_least(1)] = 5
    output_store_limit_bytes: Annotated[int, at_least(128)] = 65536
    output_excerpt_limit_bytes: Annotated[int, at_least(64)] = 2000
    output_summary_limit_bytes: Annotated[int, at_least(64)] = 5000
    output_offload_threshold_bytes: Annotated[int, at_least(128)] = 65536
    preferred_session_key: Annotated[str, text(512)] | None = None
    auth_profile: Annotated[str, text(256)] | None = None
    origin: Annotated[str, text(256)] | None = None
    job_type: Literal["standard", "watchdog"] = "standard"
    watchdog_target_label: Annotated[str, text(256)] | None = None
    watchdog_check_cmd: Annotated[str, text(4096)] | None = None
    watchdog_timeout_min: Annotated[int, at_least(1)] | None = None
    watchdog_alert_channel: Annotated[str, text(64)] | None = None
    watchdog_alert_target: Annotated[str, text(256)] | None = None
    watchdog_self_destruct: Flag = 1
    watchdog_started_at: str | None = None
    # v0.2 identity / trust / authorization fields (spec §2.4)
    identity_principal: Annotated[str, text(512)] | None = None
    identity_run_as: Annotated[str, text(256)] | None = None
    identity_attestation: Annotated[str, text(256)] | None = None
    identity_ref: Annotated[str, text(256)] | None = None
    identity_subject_kind: (
        Literal["agent", "service", "workload", "user", "composite", "delegated-agent", "unknown"]
        | None
    ) = None
    identity_subject_principal: Annotated[str, text(512)] | None = None
    identity_trust_level: TrustLevel | None = None
    identity_delegation_mode: Literal["none", "on-behalf-of", "impersonation"] | None = None
    identity: str | None = None
    authorization_proof_ref: Annotated[str, text(256)] | None = None
    authorization_proof: str | None = None
    authorization_ref: Annotated[str, text(256)] | None = None
    authorization: str | None = None
    evidence_ref: Annotated[str, text(256)] | None = None
    evidence: str | None = None
    contract_required_trust_level: TrustLevel | None = None
    contract_trust_enforcement: Literal["none", "warn", "block", "advisory", "strict"] | None = None
    contract_sandbox: Annotated[str, text(128)] | None = None
    contract_network: Annotated[str, text(128)] | None = None
    contract_audit: Annotated[str, text(128)] | None = None
    contract_allowed_paths: str | None = None
    contract_max_cost_usd: float | None = None
    child_credential_policy: Literal["none", "inherit", "downscope", "independent"] | None = None


JSON_BLOB_FIELDS = (
    "identity",
    "authorization_proof",
    "authorization",
    "evidence",
    "contract_allowed_paths",
)
JSON_BLOB_MAX_BYTES = 32768


class FieldInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What `schema jobs` says about one field, read off JobSpec."""

    type: str
    nullable: bool = False
    default: object = None
    enum: list | None = None
    min: int | float | None = None
    maxLength: int | None = None  # noqa: N815 - the anchor's schema key
    required: bool = False


@cache
def job_fields() -> dict[str, FieldInfo]:
    """Each JobSpec field's type, default, enum and bounds, read from the Struct itself.

    Walks the type hints directly: msgspec.inspect would do the same at several times
    the cost, and this runs on every `jobs add`.
    """
    hints = typing.get_type_hints(JobSpec, include_extras=True)
    defaults = dict(
        zip(
            JobSpec.__struct_fields__[-len(JobSpec.__struct_defaults__) :],
            JobSpec.__struct_defaults__,
            strict=True,
        )
    )
    return {
        name: _describe(hints[name], defaults.get(name, msgspec.NODEFAULT))
        for name in JobSpec.__struct_fields__
    }


def _describe(hint: object, default: object) -> FieldInfo:
    field = FieldInfo(type="string", required=default is msgspec.NODEFAULT)
    field.default = None if field.required else default
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if is_union else (hint,)
    kinds = [member for member in members if member is not type(None)]
    field.nullable = len(kinds) < len(members)
    kind = kinds[0]
    metadata: Sequence[Meta] = ()
    if typing.get_origin(kind) is typing.Annotated:
        kind, *metadata = typing.get_args(kind)
    if typing.get_origin(kind) is Literal:
        field.enum = list(typing.get_args(kind))
        field.type = "integer" if isinstance(field.enum[0], int) else "string"
    elif kind is int:
        field.type = "integer"
    elif kind is float:
        field.type = "number"
    for meta in metadata:
        field.min = meta.ge if meta.ge is not None else field.min
        field.maxLength = meta.max_length if meta.max_length is not None else field.maxLength
    return field


def flag_fields() -> tuple[str, ...]:
    return tuple(name for name, info in job_fields().items() if info.enum == [0, 1])


def required_fields() -> tuple[str, ...]:
    """Fields a new job must carry: those without a default (spec §3.3, §3.2 rule 26)."""
    return tuple(name for name, info in job_fields().items() if info.required)
