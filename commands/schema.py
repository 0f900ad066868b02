"""`ocsched schema [jobs|all]` (spec §29.2), read off the domain's own definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .argv import command
from .context import Context
from .output import CommandError, print_json

if TYPE_CHECKING:
    import argparse

ALIASES = {
    "job": "jobs",
    "jobs": "jobs",
    "run": "runs",
    "runs": "runs",
    "approval": "approvals",
    "approvals": "approvals",
    "dispatch": "dispatches",
    "dispatches": "dispatches",
    "message": "messages",
    "messages": "messages",
    "all": "all",
}


def job_schema() -> dict[str, Any]:
    import msgspec

    from ocsched.domain.job_spec import job_fields, required_fields

    return {
        "type": "object",
        "required": list(required_fields()),
        "fields": {
            name: msgspec.to_builtins(msgspec.structs.replace(info, required=False))
            for name, info in job_fields().items()
        },
    }


def other_schemas() -> dict[str, dict[str, Any]]:
    """Statuses and record fields of runs, approvals and dispatches, message kinds and
    statuses, from their modules."""
    import typing

    from ocsched.domain.approval import APPROVAL_STATUSES
    from ocsched.domain.dispatch import DISPATCH_STATUSES, DispatchKind
    from ocsched.domain.message_rules import KINDS, STATUSES
    from ocsched.domain.run import RUN_STATUSES
    from ocsched.projections import approvals, dispatches, runs

    return {
        "runs": {"statuses": list(RUN_STATUSES), "key_fields": list(runs.COLUMNS)},
        "approvals": {
            "statuses": list(APPROVAL_STATUSES),
            "key_fields": list(approvals.COLUMNS),
        },
        "dispatches": {
            "kinds": list(typing.get_args(DispatchKind)),
            "statuses": list(DISPATCH_STATUSES),
            "key_fields": list(dispatches.COLUMNS),
        },
        "messages": {"kinds": list(KINDS), "statuses": list(STATUSES)},
    }


def schema(target: str = "all") -> dict[str, Any]:
    kind = ALIASES.get(target)
    if kind is None:
        raise CommandError(f"Unknown schema target: {target}")
    if kind == "jobs":
        return job_schema()
    others = other_schemas()
    if kind in others:
        return others[kind]
    return {"jobs": job_schema(), **others}


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "schema",
        cli_schema,
        help="the job spec's fields, and the record schemas (JSON)",
        usage="[jobs|runs|messages|approvals|dispatches|all]",
        examples=["ocsched schema jobs", "ocsched schema messages", "ocsched schema"],
    )
    parser.add_argument(
        "target", nargs="?", default="all", metavar="jobs|runs|messages|approvals|dispatches|all"
    )


def cli_schema(ctx: Context, args: argparse.Namespace) -> None:
    print_json(schema(args.target))
