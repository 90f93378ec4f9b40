"""Failed requests of a served run: counted by class, and whether the run itself failed.

A run counts only completed requests. It fails (no result: ``error.json``, exit 1) when none
completed, or when the failed fraction exceeds ``load.max_failed_fraction``; the error names the
first failure (by send time) and the count of each class (:data:`~llem.serving.stream.FailureKind`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from llem.serving.stream import FAILURE_KINDS, StreamRecord


def failure_counts(records: Sequence[StreamRecord]) -> dict[str, int]:
    """Failed requests per class (only the classes that occurred, in the documented order)."""
    seen = Counter(r.failure or "truncated" for r in records if not r.ok)
    return {kind: seen[kind] for kind in FAILURE_KINDS if seen[kind]}


def run_failure(records: Sequence[StreamRecord], max_failed_fraction: float) -> str | None:
    """Why the run failed (None when it did not): no completed request, or more failed than
    ``max_failed_fraction`` of those sent."""
    failed = sorted((r for r in records if not r.ok), key=lambda r: r.sent_s)
    if not records:
        return "no request was sent"
    if len(failed) < len(records) and len(failed) <= max_failed_fraction * len(records):
        return None
    classes = ", ".join(f"{k} {n}" for k, n in failure_counts(records).items())
    first = failed[0]
    bound = (
        "no request completed"
        if len(failed) == len(records)
        else f"more than load.max_failed_fraction={max_failed_fraction:g}"
    )
    return (
        f"{len(failed)} of {len(records)} requests failed ({classes}): {bound}; first failure "
        f"(prompt {first.index}): {first.error}"
    )
