"""Errors the domain raises; the CLI turns each into one line and exit status 1."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """A request the domain refuses, with a message meant for the user."""


class ValidationError(DomainError):
    """A job spec that breaks a rule of spec §3."""


class NotFound(DomainError):
    """An id that names nothing."""


def unknown_field(key: str, allowed: Sequence[str]) -> str:
    """The anchor's line for a field a spec does not have, with the closest known one."""
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f'. Did you mean "{close[0]}"?' if close else ""
    return f'Unknown field "{key}"{hint}'
