"""`capabilities` (spec §29.3): what this scheduler supports, for scripts that probe before
they use a feature. Always JSON, as the anchor prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import command
from .context import Context
from .output import print_json

if TYPE_CHECKING:
    import argparse

SCHEMA_VERSION = 23
"""The anchor's schema whose records and fields ocsched keeps (ocsched has no SQL schema
of its own to number: its read models are rebuilt from the log)."""
HANDOFF_VERSION = "2"
"""The dispatch completion payload version (spec §31.8)."""
FEATURES: dict[str, Any] = {
    "approvals": "runtime",
    "model_policy": "model+thinking",
    "execution_intent": "runtime",
    "output_hints": "runtime",
    "timeout_support": "runtime",
    "context_retrieval": "runtime",
    "runtime_execution": True,
    "identity_declaration": True,
    "runtime_identity_resolution": True,
    "trust_evaluation": True,
    "authorization_proof_verification": True,
    "authorization_hook": True,
    "evidence_generation": True,
    "delegation_validation": False,
    "credential_handoff": True,
    "audit_export": True,
}


def capabilities() -> dict[str, Any]:
    from ocsched import __version__

    return {
        "scheduler_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "handoff_version": HANDOFF_VERSION,
        "features": dict(FEATURES),
    }


def register(commands: argparse._SubParsersAction) -> None:
    command(
        commands,
        "capabilities",
        cli_capabilities,
        help="the features this scheduler supports (JSON)",
        usage="",
        examples=["ocsched capabilities", "ocsched capabilities | jq .features.trust_evaluation"],
    )


def cli_capabilities(ctx: Context, args: argparse.Namespace) -> None:
    print_json(capabilities())
