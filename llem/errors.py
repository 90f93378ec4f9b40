"""Errors a user can fix: one short message each; the CLI prints it and exits with code 2."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad input or an impossible request: printed as ``Error: <message>``, exit 2, no traceback."""


class ConfigError(UsageError):
    """The composed configuration does not satisfy the schema."""


class RunFailed(Exception):
    """A run that ended without a measurement, for a reason llem can name (the model does not fit in
    memory; a served run whose requests failed): printed as ``Error: <message>``, exit 1,
    ``error.json`` in the run folder, no ``result.json``, no traceback."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that memory ran out: Python's MemoryError, torch's OutOfMemoryError
    (CUDA), or torch's CPU allocator refusing an allocation."""
    text = str(exc)
    return (
        isinstance(exc, MemoryError)
        or type(exc).__name__ == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and "can't allocate memory" in text)
    )
