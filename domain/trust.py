"""The v0.2 dispatch-time gates (spec §2.4, §8.3, §9.3): identity, credential handoff, the
child credential policy, trust, the authorization proof and authorization, each a pure
decision over the job's declaration (and its parent's), in the anchor's order.

ocsched loads no provider plugins: a declaration that names an identity provider, a proof
verifier or an authorization provider fails closed, as the anchor does when the plugin is
not loaded; everything else is decided structurally, as the anchor does without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .json_text import parse_json

TRUST_LEVELS = ("untrusted", "restricted", "supervised", "autonomous")
"""Lowest to highest."""
PROOF_METHODS = ("signed-jwt", "hmac", "api-key", "bearer", "mtls", "oidc", "saml", "custom")
IDENTITY_SCALARS = (
    "identity_principal",
    "identity_run_as",
    "identity_attestation",
    "identity_ref",
    "identity_subject_kind",
    "identity_subject_principal",
    "identity_trust_level",
    "identity_delegation_mode",
)
CONTRACT_FIELDS = (
    "contract_sandbox",
    "contract_network",
    "contract_allowed_paths",
    "contract_max_cost_usd",
    "contract_audit",
)
RECORD_COLUMNS = {
    "identity": "identity_resolved",
    "credential_handoff": "credential_handoff_summary",
    "trust": "trust_evaluation",
    "proof": "authorization_proof_verification",
    "authorization": "authorization_decision",
}
"""The run record's column (spec §9.3) for the detail of each gate's decision."""

HANDOFF_NOT_SHELL = "Credential handoff presentation is only supported for shell jobs"

Row = dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """One gate's decision: `decision` is permit, warn, deny or escalate; `detail` the
    anchor's record of it (what the run record shows)."""

    gate: str
    decision: str
    reason: str
    detail: dict[str, Any] | None = None


@dataclass
class Gates:
    """All decisions for one run, the refusal (the run's error) if any, and the auth
    profile the run uses when the child credential policy inherits the parent's."""

    decisions: list[Decision] = field(default_factory=list)
    refusal: str | None = None
    auth_profile: str | None = None


def compare_trust(a: str | None, b: str | None) -> int:
    """-1, 0 or 1; an unknown level is lower than every known one."""
    ai, bi = _trust_index(a), _trust_index(b)
    return 0 if ai == bi else (-1 if ai < bi else 1)


def declares_identity(job: Row) -> bool:
    return job.get("identity") is not None or any(job.get(k) is not None for k in IDENTITY_SCALARS)


def applies(job: Row, parent: Row | None) -> bool:
    """Whether any gate has something to decide: an identity, a trust requirement, an
    authorization or a proof, a contract, or a child credential policy that was chosen."""
    policy_chosen = parent is not None and bool(
        job.get("child_credential_policy") or parent.get("child_credential_policy")
    )
    return (
        policy_chosen
        or declares_identity(job)
        or any(job.get(k) is not None for k in CONTRACT_FIELDS)
        or any(
            job.get(k) is not None
            for k in (
                "contract_required_trust_level",
                "authorization",
                "authorization_ref",
                "authorization_proof",
                "authorization_proof_ref",
            )
        )
    )


def evaluate(job: Row, parent: Row | None) -> Gates:
    """Spec §8.3, in order; the first refusal ends the evaluation."""
    gates = Gates()
    identity = None
    required = job.get("contract_required_trust_level")
    needs_authorization = bool(job.get("authorization") or job.get("authorization_ref"))
    if declares_identity(job) or required or needs_authorization:
        identity = resolve_identity(job)
        if identity is not None and identity.get("source") != "provider-error":
            reason = "identity resolved from the declaration"
            gates.decisions.append(Decision("identity", "permit", reason, identity))
    handoff = credential_handoff(job) if declares_identity(job) else None
    if handoff is not None:
        declared = handoff.get("mode") is not None or handoff.get("bindings_count", 0) > 0
        if declared and job.get("session_target") != "shell":
            return _refuse(gates, "credential_handoff", HANDOFF_NOT_SHELL, handoff)
        gates.decisions.append(Decision("credential_handoff", "permit", "declared", handoff))
    if parent is not None:
        identity, refusal = _child_policy(gates, job, parent, identity)
        if refusal:
            return _refuse(gates, "child_credentials", refusal)
    if identity is not None and identity.get("source") == "provider-error":
        return _refuse(
            gates, "identity", f"Identity resolution failed: {identity.get('error')}", identity
        )
    trust = None
    if declares_identity(job) or required or identity is not None:
        trust = evaluate_trust(job, identity)
        gates.decisions.append(Decision("trust", trust["decision"], trust["reason"], trust))
        if trust["decision"] == "deny":
            return _refuse(gates, None, f"Trust enforcement blocked dispatch: {trust['reason']}")
    if job.get("authorization_proof") is not None or job.get("authorization_proof_ref") is not None:
        proof = verify_proof(job)
        verified = proof.get("verified") is True
        reason = (
            "proof verified" if verified else proof.get("error") or "verification returned false"
        )
        gates.decisions.append(Decision("proof", "permit" if verified else "deny", reason, proof))
        if not verified:
            return _refuse(gates, None, f"Authorization proof verification failed: {reason}")
    if needs_authorization:
        verdict = evaluate_authorization(job, identity, trust)
        gates.decisions.append(
            Decision("authorization", verdict["decision"], verdict["reason"], verdict)
        )
        if verdict["decision"] == "deny":
            return _refuse(gates, None, f"Authorization denied: {verdict['reason']}")
        if verdict["decision"] == "escalate":
            return _refuse(gates, None, f"Authorization requires escalation: {verdict['reason']}")
    contracts = {k: job.get(k) for k in CONTRACT_FIELDS if job.get(k) is not None}
    if contracts:
        note = (
            "recorded with the run; the scheduler does not enforce them (neither does the anchor)"
        )
        gates.decisions.append(Decision("contracts", "permit", note, contracts))
    return gates


def _refuse(gates: Gates, gate: str | None, reason: str, detail: Any = None) -> Gates:
    if gate is not None:
        gates.decisions.append(Decision(gate, "deny", reason, detail))
    gates.refusal = reason
    return gates


def _child_policy(
    gates: Gates, job: Row, parent: Row, identity: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The child credential policy (the child's, else its parent's, else none): none drops
    the identity; inherit takes the parent's auth profile; downscope needs a provider's
    handoff (none is loaded: it fails closed); independent may not exceed the parent's
    trust. Returns the identity the later gates see, and a refusal."""
    policy = job.get("child_credential_policy") or parent.get("child_credential_policy") or "none"
    chosen = bool(job.get("child_credential_policy") or parent.get("child_credential_policy"))
    detail: dict[str, Any] = {"policy": policy, "parent_job_id": parent.get("id")}
    if policy == "none":
        if chosen or identity is not None:
            reason = (
                "the parent's credentials are not passed on; the child runs without an identity"
            )
            gates.decisions.append(Decision("child_credentials", "permit", reason, detail))
        return None, None
    if policy == "inherit":
        profile = parent.get("auth_profile")
        if profile:
            gates.auth_profile = profile
        reason = (
            f"inherits the parent's auth profile {profile}"
            if profile
            else "the parent has no auth profile"
        )
        gates.decisions.append(
            Decision("child_credentials", "permit", reason, {**detail, "auth_profile": profile})
        )
        return identity, None
    if policy == "downscope":
        blob = _object(parent.get("identity")) or {}
        provider = blob.get("provider") or (_object(blob.get("auth")) or {}).get("provider")
        missing = f"identity provider {provider or '(none)'} not loaded"
        return identity, f"Downscope credential policy failed: {missing}"
    parent_level = job_trust_level(parent)
    child_level = (identity or {}).get("trust_level")
    if parent_level and child_level and compare_trust(child_level, parent_level) > 0:
        return identity, (
            f'Independent child trust level "{child_level}" exceeds parent trust level '
            f'"{parent_level}"'
        )
    reason = "the child's own identity, within the parent's trust"
    gates.decisions.append(
        Decision(
            "child_credentials", "permit", reason, {**detail, "parent_trust_level": parent_level}
        )
    )
    return identity, None


def resolve_identity(job: Row) -> dict[str, Any] | None:
    """The job's identity: from its `identity` blob, else its scalar fields; a blob naming
    a provider fails closed (no provider is loaded)."""
    raw = job.get("identity")
    blob, error = _parse(raw)
    if isinstance(blob, dict):
        provider = blob.get("provider") or (_object(blob.get("auth")) or {}).get("provider")
        if provider:
            return {
                "provider": provider,
                "error": f"identity provider not loaded: {provider}",
                "transient": False,
                "source": "provider-error",
            }
        return {
            "subject_kind": _first(blob, job, "subject_kind", "identity_subject_kind") or "unknown",
            "principal": _first(blob, job, "principal", "identity_principal"),
            "trust_level": _first(blob, job, "trust_level", "identity_trust_level"),
            "delegation_mode": _first(blob, job, "delegation_mode", "identity_delegation_mode"),
            "raw": blob,
        }
    scalars = _identity_from_scalars(job)
    if error is not None and raw not in (None, ""):
        failed = {"error": f"identity JSON parse failed: {error}"}
        if scalars is None:
            scalars = {
                "subject_kind": "unknown",
                "principal": None,
                "trust_level": None,
                "delegation_mode": None,
            }
        return {**scalars, "raw": failed}
    return scalars


def _identity_from_scalars(job: Row) -> dict[str, Any] | None:
    if not any(job.get(k) is not None for k in IDENTITY_SCALARS):
        return None
    return {
        "subject_kind": job.get("identity_subject_kind") or "unknown",
        "principal": job.get("identity_principal") or job.get("identity_subject_principal") or None,
        "trust_level": job.get("identity_trust_level") or None,
        "delegation_mode": job.get("identity_delegation_mode") or None,
        "raw": None,
    }


def credential_handoff(job: Row) -> dict[str, Any] | None:
    """The handoff plan in the identity blob's `presentation` (or `credential_handoff`)."""
    raw = job.get("identity")
    blob, error = _parse(raw)
    if error is not None and raw not in (None, ""):
        return {
            "mode": None,
            "bindings_count": 0,
            "cleanup_required": False,
            "error": f"identity JSON parse failed: {error}",
        }
    if not isinstance(blob, dict):
        return None
    presentation = _object(blob.get("presentation") or blob.get("credential_handoff"))
    if presentation is None:
        return None
    bindings = presentation.get("bindings")
    bindings = bindings if isinstance(bindings, list) else []
    mode = presentation.get("mode") or None
    if not mode and not bindings:
        return None
    cleanup = (
        presentation.get("cleanup") is True
        or presentation.get("cleanup_required") is True
        or any(isinstance(b, dict) and b.get("cleanup") is True for b in bindings)
    )
    return {"mode": mode, "bindings_count": len(bindings), "cleanup_required": cleanup}


def evaluate_trust(job: Row, identity: dict[str, Any] | None) -> dict[str, Any]:
    """The effective trust level against `contract_required_trust_level`, under
    `contract_trust_enforcement` (advisory = warn, strict = block; none only notes)."""
    required = job.get("contract_required_trust_level") or None
    effective = (identity or {}).get("trust_level") or None
    if not required:
        return _trust(effective, None, "permit", "no trust requirement declared")
    effective = effective or job.get("identity_trust_level") or None
    if _trust_index(required) < 0:
        return _trust(
            effective, required, "permit", f"unrecognized required trust level: {required}"
        )
    enforcement = job.get("contract_trust_enforcement") or "none"
    enforcement = {"advisory": "warn", "strict": "block"}.get(enforcement, enforcement)
    on_failure = {"block": "deny", "warn": "warn"}.get(enforcement, "permit")
    if effective is None:
        return _trust(
            None, required, on_failure, f"no trust level declared; enforcement is {enforcement}"
        )
    if _trust_index(effective) < 0:
        return _trust(
            effective, required, on_failure, f"unrecognized effective trust level: {effective}"
        )
    if _trust_index(effective) >= _trust_index(required):
        return _trust(effective, required, "permit", "trust level meets or exceeds requirement")
    reason = f"trust level {effective} is below required {required}"
    if on_failure == "permit":
        reason += "; enforcement is none"
    return _trust(effective, required, on_failure, reason)


def _trust(effective: Any, required: Any, decision: str, reason: str) -> dict[str, Any]:
    return {
        "effective_level": effective,
        "required_level": required,
        "decision": decision,
        "reason": reason,
    }


def verify_proof(job: Row) -> dict[str, Any]:
    """Structural proof verification: a JSON object with a known `method`; a proof that
    names a verifier fails closed."""
    raw, ref = job.get("authorization_proof"), job.get("authorization_proof_ref") or None
    if raw in (None, ""):
        return _proof(False, None, ref, "authorization_proof is empty; only ref provided")
    blob, error = _parse(raw)
    if error is not None:
        return _proof(False, None, ref, f"authorization_proof JSON parse failed: {error}")
    if not isinstance(blob, dict):
        return _proof(False, None, ref, "authorization_proof must be a JSON object")
    method, ref = blob.get("method") or None, blob.get("ref") or ref
    verifier = blob.get("verifier") or blob.get("provider")
    if verifier:
        failed = _proof(False, method, ref, f"proof verifier not loaded: {verifier}")
        return {**failed, "source": "provider-error", "provider": verifier}
    if not method:
        return _proof(False, None, ref, 'authorization_proof missing required "method" field')
    if method not in PROOF_METHODS:
        return _proof(False, method, ref, f"unrecognized proof method: {method}")
    return _proof(True, method, ref, None)


def _proof(verified: bool, method: Any, ref: Any, error: str | None) -> dict[str, Any]:
    result = {"verified": verified, "method": method, "ref": ref}
    return result if error is None else {**result, "error": error}


def evaluate_authorization(
    job: Row, identity: dict[str, Any] | None, trust: dict[str, Any] | None
) -> dict[str, Any]:
    """The inline authorization policy, structurally: an explicit decision, a trust denial
    it depends on (by default), a required identity; a reference alone, or a policy that
    names a provider, denies (nothing resolves them)."""
    raw, ref = job.get("authorization"), job.get("authorization_ref") or None
    if raw in (None, ""):
        return _authorization(
            "deny",
            "authorization_ref present but external policy resolution is not yet implemented; "
            "provide an inline authorization blob or remove authorization_ref",
            ref,
        )
    blob, error = _parse(raw)
    if error is not None:
        return _authorization("deny", f"authorization JSON parse failed: {error}", ref)
    if not isinstance(blob, dict):
        return _authorization("deny", "authorization must be a JSON object", ref)
    ref = blob.get("ref") or ref
    provider = blob.get("provider") or blob.get("authorization_provider")
    if provider:
        denied = _authorization("deny", f"authorization provider not loaded: {provider}", ref)
        return {**denied, "source": "provider-error", "provider": provider}
    if blob.get("decision") in ("deny", "escalate"):
        default = f"explicit {blob['decision']} in authorization policy"
        return _authorization(blob["decision"], blob.get("reason") or default, ref)
    if blob.get("depends_on_trust") is not False and trust and trust.get("decision") == "deny":
        return _authorization("deny", f"trust evaluation denied: {trust.get('reason')}", ref)
    if blob.get("requires_identity") and identity is None:
        return _authorization("deny", "authorization requires identity but none was resolved", ref)
    reason = blob.get("reason") or "authorization policy permits (structural check only)"
    return _authorization("permit", reason, ref)


def _authorization(decision: str, reason: str, ref: Any) -> dict[str, Any]:
    return {"decision": decision, "reason": reason, "ref": ref}


def evidence_record(
    job: Row, run_id: str, status: str, gates: list[str], now: datetime
) -> dict[str, Any] | None:
    """The evidence envelope written with a permitted run's outcome: metadata only, no
    hash (`integrity: none`), as the anchor writes it (`created_at` in its ISO form)."""
    raw, ref = job.get("evidence"), job.get("evidence_ref") or None
    if raw is None and ref is None:
        return None
    created_at = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    blob, error = _parse(raw) if raw not in (None, "") else (None, None)
    if error is not None:
        summary: dict[str, Any] = {"error": f"evidence JSON parse failed: {error}"}
        return {
            "evidence_ref": ref,
            "created_at": created_at,
            "hash": None,
            "payload_summary": summary,
        }
    summary = {}
    if isinstance(blob, dict):
        summary.update((k, blob[k]) for k in ("collect", "retention", "format") if blob.get(k))
        ref = blob.get("ref") or ref
    summary.update(
        run_id=run_id,
        run_status=status,
        outcome_fields_present=[RECORD_COLUMNS[g] for g in gates if g in RECORD_COLUMNS],
    )
    return {
        "evidence_ref": ref,
        "created_at": created_at,
        "hash": None,
        "integrity": "none",
        "payload_summary": summary,
    }


def job_trust_level(job: Row) -> str | None:
    """A job's declared trust: its identity blob's (`trust_level`, `trust.effective_level`,
    `trust.level`), else `identity_trust_level`."""
    blob = _object(job.get("identity")) or {}
    trust = _object(blob.get("trust")) or {}
    return (
        blob.get("trust_level")
        or trust.get("effective_level")
        or trust.get("level")
        or job.get("identity_trust_level")
        or None
    )


def _trust_index(level: str | None) -> int:
    return TRUST_LEVELS.index(level) if level in TRUST_LEVELS else -1


def _first(blob: dict[str, Any], job: Row, key: str, scalar: str) -> Any:
    return blob.get(key) or blob.get(scalar) or job.get(scalar) or None


def _parse(raw: Any) -> tuple[Any, str | None]:
    """(value, None), or (None, the parser's message); nothing to parse is (None, None)."""
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str):
        return raw, None
    try:
        return parse_json(raw), None
    except ValueError as error:
        return None, str(error)


def _object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value, _ = _parse(value)
    return value if isinstance(value, dict) else None
