"""`ocsched schema [jobs|all]` (spec §29.2), read off the domain's own definitions."""

from __future__ import annotations

from typing import Any

from .argv import Argv
from .context import Context
from .output import CommandError, print_json

ALIASES = {"job": "jobs", "jobs": "jobs", "all": "all"}


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


def schema(target: str = "all") -> dict[str, Any]:
    kind = ALIASES.get(target)
    if kind is None:
        raise CommandError(f"Unknown schema target: {target}")
    if kind == "jobs":
        return job_schema()
    return {"jobs": job_schema()}


def cli_schema(ctx: Context, args: list[str]) -> None:
    (target,) = Argv(args, "Usage: schema [jobs|all]").positionals(0, 1) or ["all"]
    print_json(schema(target))
