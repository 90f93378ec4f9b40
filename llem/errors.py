"""Errors a user can fix: one short message each; the CLI prints it and exits with code 2."""

from __future__ import annotations

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input or an impossible request: printed as ``Error: <message>``, exit 2, no traceback."""


class ConfigError(UsageError):
    """The composed configuration does not satisfy the schema."""
