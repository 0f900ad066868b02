"""Errors the domain raises; the CLI turns each into one line and exit status 1."""


class DomainError(Exception):
    """A request the domain refuses, with a message meant for the user."""


class ValidationError(DomainError):
    """A job spec that breaks a rule of spec §3."""


class NotFound(DomainError):
    """An id that names nothing."""
