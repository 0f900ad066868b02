"""The v0.2 dispatch-time gates (spec §8.3): the pure decisions, admission on a real store,
and a real daemon that never runs a refused job and records why."""

from __future__ import annotations

import json

import pytest

from ocsched.domain import trust
from ocsched.domain.reactions import firing
from ocsched.domain.reactions.plan import StartRun
from ocsched.domain.run import Run

from .conftest import shell_job
from .test_daemon import finished_runs
from .test_reactions import NOW, OWNER, Store, conclude, due_job, fire, started


def blob(**fields) -> str:
    return json.dumps(fields)


# Trust


@pytest.mark.parametrize(
    ("enforcement", "decision"),
    [("block", "deny"), ("strict", "deny"), ("warn", "warn"), ("advisory", "warn")],
)
def test_a_trust_level_below_the_requirement_follows_the_enforcement(enforcement, decision):
    job = {
        "identity_trust_level": "restricted",
        "contract_required_trust_level": "supervised",
        "contract_trust_enforcement": enforcement,
    }
    result = trust.evaluate_trust(job, trust.resolve_identity(job))
    assert result == {
        "effective_level": "restricted",
        "required_level": "supervised",
        "decision": decision,
        "reason": "trust level restricted is below required supervised",
    }


def test_without_enforcement_a_low_trust_level_is_only_noted():
    job = {"identity_trust_level": "untrusted", "contract_required_trust_level": "autonomous"}
    result = trust.evaluate_trust(job, trust.resolve_identity(job))
    assert result["decision"] == "permit"
    assert result["reason"].endswith("; enforcement is none")


def test_meeting_the_requirement_or_declaring_none_permits():
    job = {"identity_trust_level": "autonomous", "contract_required_trust_level": "supervised"}
    assert trust.evaluate_trust(job, None)["reason"] == "trust level meets or exceeds requirement"
    free = trust.evaluate_trust({"identity_trust_level": "untrusted"}, None)
    assert (free["decision"], free["reason"]) == ("permit", "no trust requirement declared")


def test_no_trust_level_under_block_is_denied():
    job = {"contract_required_trust_level": "restricted", "contract_trust_enforcement": "block"}
    result = trust.evaluate_trust(job, None)
    assert (result["decision"], result["reason"]) == (
        "deny",
        "no trust level declared; enforcement is block",
    )


def test_trust_levels_are_ordered_and_unknown_is_lowest():
    assert trust.compare_trust("supervised", "restricted") == 1
    assert trust.compare_trust("untrusted", "autonomous") == -1
    assert trust.compare_trust("bogus", "untrusted") == -1


# Identity, proofs, authorization


def test_identity_comes_from_the_blob_then_the_scalars():
    job = {
        "identity": blob(principal="svc:backup", trust_level="supervised"),
        "identity_subject_kind": "service",
    }
    assert trust.resolve_identity(job) == {
        "subject_kind": "service",
        "principal": "svc:backup",
        "trust_level": "supervised",
        "delegation_mode": None,
        "raw": {"principal": "svc:backup", "trust_level": "supervised"},
    }
    scalars = trust.resolve_identity({"identity_subject_principal": "alice"})
    assert scalars is not None and scalars["principal"] == "alice"
    assert trust.resolve_identity({}) is None


def test_a_provider_backed_identity_fails_closed():
    resolved = trust.resolve_identity({"identity": blob(provider="vault")})
    assert resolved == {
        "provider": "vault",
        "error": "identity provider not loaded: vault",
        "transient": False,
        "source": "provider-error",
    }
    gates = trust.evaluate({"identity": blob(auth={"provider": "vault"})}, None)
    assert gates.refusal == "Identity resolution failed: identity provider not loaded: vault"


def test_proofs_are_checked_structurally():
    assert trust.verify_proof({"authorization_proof": blob(method="hmac", ref="k1")}) == {
        "verified": True,
        "method": "hmac",
        "ref": "k1",
    }
    assert trust.verify_proof({"authorization_proof": blob(method="smoke")})["error"] == (
        "unrecognized proof method: smoke"
    )
    assert trust.verify_proof({"authorization_proof_ref": "r"})["error"] == (
        "authorization_proof is empty; only ref provided"
    )
    named = trust.verify_proof({"authorization_proof": blob(method="hmac", verifier="hsm")})
    assert (named["verified"], named["error"]) == (False, "proof verifier not loaded: hsm")


def test_authorization_decides_structurally_and_a_bare_reference_denies():
    assert trust.evaluate_authorization({"authorization_ref": "opa:x"}, None, None)["decision"] == (
        "deny"
    )
    escalate = {"authorization": blob(decision="escalate", reason="needs a human")}
    assert trust.evaluate_authorization(escalate, None, None) == {
        "decision": "escalate",
        "reason": "needs a human",
        "ref": None,
    }
    needs_identity = {"authorization": blob(requires_identity=True)}
    assert trust.evaluate_authorization(needs_identity, None, None)["reason"] == (
        "authorization requires identity but none was resolved"
    )
    denied_trust = {"decision": "deny", "reason": "too low"}
    assert trust.evaluate_authorization({"authorization": "{}"}, None, denied_trust) == {
        "decision": "deny",
        "reason": "trust evaluation denied: too low",
        "ref": None,
    }


def test_a_credential_handoff_is_summarized_and_refused_outside_the_shell():
    identity = blob(presentation={"mode": "env", "bindings": [{"cleanup": True}, {}]})
    summary = trust.credential_handoff({"identity": identity})
    assert summary == {"mode": "env", "bindings_count": 2, "cleanup_required": True}
    refused = trust.evaluate({"identity": identity, "session_target": "isolated"}, None)
    assert refused.refusal == "Credential handoff presentation is only supported for shell jobs"
    allowed = trust.evaluate({"identity": identity, "session_target": "shell"}, None)
    assert allowed.refusal is None
    assert [d.gate for d in allowed.decisions] == ["identity", "credential_handoff", "trust"]


# Child credential policies


def test_none_drops_the_childs_identity_before_trust_is_evaluated():
    child = {"identity_trust_level": "autonomous", "child_credential_policy": "none"}
    gates = trust.evaluate(child, {"id": "p"})
    assert [(d.gate, d.decision) for d in gates.decisions] == [
        ("identity", "permit"),
        ("child_credentials", "permit"),
        ("trust", "permit"),
    ]


def test_inherit_takes_the_parents_auth_profile():
    gates = trust.evaluate(
        {"child_credential_policy": "inherit"}, {"id": "p", "auth_profile": "anthropic:work"}
    )
    assert (gates.refusal, gates.auth_profile) == (None, "anthropic:work")


def test_downscope_fails_closed_without_a_provider():
    parent = {"id": "p", "identity": blob(provider="vault"), "child_credential_policy": "downscope"}
    gates = trust.evaluate({}, parent)
    assert gates.refusal == (
        "Downscope credential policy failed: identity provider vault not loaded"
    )


def test_an_independent_child_may_not_exceed_its_parents_trust():
    parent = {"id": "p", "identity": blob(trust={"level": "restricted"})}
    child = {"child_credential_policy": "independent", "identity_trust_level": "autonomous"}
    assert trust.evaluate(child, parent).refusal == (
        'Independent child trust level "autonomous" exceeds parent trust level "restricted"'
    )
    lower = {**child, "identity_trust_level": "untrusted"}
    assert trust.evaluate(lower, parent).refusal is None


def test_a_job_without_declarations_passes_no_gate():
    assert not trust.applies({"name": "plain"}, None)
    assert not trust.applies({"name": "child"}, {"id": "p"})
    assert trust.applies({"contract_network": "none"}, None)


# Admission on a real store


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    yield store
    store.ctx.close()


BLOCKED = {
    "identity": blob(principal="svc:reports", trust_level="restricted"),
    "contract_required_trust_level": "supervised",
    "contract_trust_enforcement": "block",
    "max_retries": 2,
}


def test_a_refused_run_never_starts_and_its_refusal_is_recorded(store):
    job = due_job(store, **BLOCKED)
    plan = fire(store, job)
    assert not [e for e in plan.effects if isinstance(e, StartRun)]
    store.save(plan)
    (run,) = [r for r in plan.records if isinstance(r, Run)]
    record = store.run(run.id)
    reason = (
        "Trust enforcement blocked dispatch: trust level restricted is below required supervised"
    )
    assert (record["status"], record["summary"], record["error_message"]) == (
        "error",
        reason,
        reason,
    )
    assert json.loads(record["trust_evaluation"])["decision"] == "deny"
    events = store.ctx.log.events.get(run.id)
    gated = [(e.gate, e.decision, e.reason) for e in events if type(e).__name__ == "Gated"]
    assert gated == [
        ("identity", "permit", "identity resolved from the declaration"),
        ("trust", "deny", "trust level restricted is below required supervised"),
    ]
    after = store.job(job["id"])
    assert (after["last_status"], after["consecutive_errors"]) == ("error", 1)
    assert store.db().execute("SELECT count(*) AS n FROM dispatches").fetchone()["n"] == 0


def test_a_permitted_run_records_each_decision_and_its_evidence(store):
    job = due_job(
        store,
        identity=blob(principal="svc:reports", trust_level="autonomous"),
        contract_required_trust_level="supervised",
        contract_trust_enforcement="block",
        authorization_proof=blob(method="signed-jwt", ref="jwt-1"),
        authorization=blob(reason="ops approved"),
        evidence=blob(collect=["stdout"], format="json"),
        contract_network="none",
        contract_max_cost_usd=0.5,
    )
    run = started(store, fire(store, job))
    events = store.ctx.log.events.get(run.id)
    decisions = [(e.gate, e.decision) for e in events if type(e).__name__ == "Gated"]
    assert decisions == [
        ("identity", "permit"),
        ("trust", "permit"),
        ("proof", "permit"),
        ("authorization", "permit"),
        ("contracts", "permit"),
    ]
    from ocsched.domain.reactions.outcome import Outcome

    store.save(conclude(store, store.ctx.log.repository.get(run.id), job, Outcome("ok")))
    record = store.run(run.id)
    assert json.loads(record["authorization_decision"]) == {
        "decision": "permit",
        "reason": "ops approved",
        "ref": None,
    }
    assert json.loads(record["authorization_proof_verification"])["verified"] is True
    assert json.loads(record["identity_resolved"])["principal"] == "svc:reports"
    evidence = json.loads(record["evidence_record"])
    assert evidence["integrity"] == "none" and evidence["hash"] is None
    assert evidence["created_at"] == "2026-12-05T03:00:00.000Z"
    assert evidence["payload_summary"] == {
        "collect": ["stdout"],
        "format": "json",
        "run_id": run.id,
        "run_status": "ok",
        "outcome_fields_present": [
            "identity_resolved",
            "trust_evaluation",
            "authorization_proof_verification",
            "authorization_decision",
        ],
    }


def test_a_child_inheriting_credentials_starts_with_its_parents_auth_profile(store):
    parent = store.add(auth_profile="anthropic:work", child_credential_policy="inherit")
    child = store.add(
        name="child", parent_id=parent["id"], trigger_on="success", schedule_cron=None
    )
    row = dict(store.job(child["id"]))
    run = firing._new_run(
        "child-run",
        row,
        trigger="chain",
        slot=None,
        job_changes={},
        owner=OWNER,
        cause="dispatch/x",
        now=NOW,
    )
    plan = firing.admit(run, row, [], owner=OWNER, cause="dispatch/x", now=NOW, facts=store.facts)
    (start,) = plan.effects
    assert isinstance(start, StartRun) and start.job["auth_profile"] == "anthropic:work"
    (decision,) = [e for e in run.pending_events if type(e).__name__ == "Gated"]
    assert decision.reason == "inherits the parent's auth profile anthropic:work"


# A real daemon


def test_a_daemon_never_runs_a_refused_job_and_runs_a_permitted_one(scheduler, daemons, tmp_path):
    refused_mark, permitted_mark = tmp_path / "refused", tmp_path / "permitted"
    refused = scheduler.add(
        shell_job(
            schedule_cron=None,
            name="refused",
            payload_message=f"touch {refused_mark}",
            authorization=blob(decision="deny", reason="change freeze"),
        ),
        "--in",
        "1s",
    )
    permitted = scheduler.add(
        shell_job(
            schedule_cron=None,
            name="permitted",
            payload_message=f"touch {permitted_mark}",
            identity_trust_level="supervised",
            contract_required_trust_level="restricted",
            contract_trust_enforcement="strict",
        ),
        "--in",
        "1s",
    )
    daemons.start()
    (refused_run,) = finished_runs(scheduler, refused["id"])
    (permitted_run,) = finished_runs(scheduler, permitted["id"])
    assert permitted_run["status"] == "ok" and permitted_mark.exists()
    assert not refused_mark.exists()
    assert refused_run["status"] == "error"
    assert refused_run["error_message"] == "Authorization denied: change freeze"
    assert refused_run["process_id"] is None
    history = scheduler.ok("--json", "events", "show", refused_run["id"]).json
    assert [e["type"] for e in history] == ["Run.Scheduled", "Run.Gated", "Run.Finished"]
    assert history[1]["fields"]["reason"] == "change freeze"
    assert history[1]["fields"]["decision"] == "deny"
    trust_record = json.loads(permitted_run["trust_evaluation"])
    assert trust_record["decision"] == "permit"


def test_a_trust_warning_lets_the_run_start_and_is_logged(store):
    job = due_job(store, **{**BLOCKED, "contract_trust_enforcement": "advisory"})
    plan = fire(store, job)
    assert [type(e).__name__ for e in plan.effects] == ["StartRun"]
    (note,) = plan.notes
    assert note.endswith(": trust warn: trust level restricted is below required supervised")
