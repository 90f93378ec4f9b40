"""Errors a user can fix: one short message each; the CLI prints it and exits with code 2."""

from __future__ import annotations

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input or an impossible request: printed as ``Error: <message>``, exit 2, no traceback."""


class ConfigError(UsageError):
    """The composed configuration does not satisfy the schema."""


EXIT_FAILED = 1


class RunFailed(Exception):
    """The run ended without a measurement to report (a served run whose requests failed): printed
    as ``Error: <message>``, exit 1, ``error.json`` in the run folder, no ``result.json``."""
