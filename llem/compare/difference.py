"""95% intervals of the ratio B/A of a positive quantity (throughput, energy, latency).

- Over repeats: Welch's t interval of the difference of mean logarithms, exponentiated. On the log
  scale a ratio is a difference, spread that grows with the value (as it does for throughput and
  energy) is evened out, and no bound can be negative; Welch's form does not assume both sides
  spread alike (a batch of 1 and a batch of 8 do not). The estimate is the ratio of geometric means.
- Over requests (per-request latencies in ``result.json``): a percentile bootstrap of the ratio of
  medians, each side resampled with replacement, with a fixed seed (the same files give the same
  interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

MIN_REPEATS = 2  # per side, for a Welch interval
MIN_REQUESTS = 10  # per side, for a bootstrap interval
DRAWS = 2000  # bootstrap resamples
SEED = 0
WELCH = "log-ratio Welch t over repeats"
BOOTSTRAP = f"bootstrap of the ratio of medians over requests ({DRAWS} draws, seed {SEED})"


class RatioInterval(BaseModel):
    """An estimate of B/A with its 95% interval; ``reason`` (and no numbers) when there is none."""

    method: str
    n_a: int = Field(description="values on side A (repeats or requests)")
    n_b: int
    ratio: float | None = Field(description="estimate of B/A")
    low: float | None = Field(description="95% interval of B/A, lower bound")
    high: float | None
    reason: str | None = Field(None, description="why there is no interval")

    @property
    def significant(self) -> bool:
        """Whether the interval excludes a ratio of 1 (no difference)."""
        return self.low is not None and self.high is not None and (self.low > 1 or self.high < 1)


def _usable(a: Sequence[float], b: Sequence[float], least: int, what: str) -> str | None:
    """Why ``a`` and ``b`` cannot give an interval (None when they can)."""
    if min(len(a), len(b)) < least:
        return f"fewer than {least} {what} on a side"
    if any(not (math.isfinite(v) and v > 0) for v in [*a, *b]):
        return f"a {what[:-1]} value is zero, negative or not a number"
    return None


def log_welch(a: Sequence[float], b: Sequence[float]) -> RatioInterval:
    """B/A from repeat values ``a`` and ``b`` (positive): Welch's t interval on their logs."""
    reason = _usable(a, b, MIN_REPEATS, "repeats")
    if reason is not None:
        return RatioInterval(
            method=WELCH, n_a=len(a), n_b=len(b), ratio=None, low=None, high=None, reason=reason
        )
    from scipy import stats

    la, lb = [math.log(v) for v in a], [math.log(v) for v in b]
    ma, mb = sum(la) / len(la), sum(lb) / len(lb)
    va = sum((v - ma) ** 2 for v in la) / (len(la) - 1) / len(la)  # variance of the mean
    vb = sum((v - mb) ** 2 for v in lb) / (len(lb) - 1) / len(lb)
    diff = mb - ma
    half = 0.0
    if va + vb > 0:
        df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
        half = float(stats.t.ppf(0.975, df)) * math.sqrt(va + vb)
    return RatioInterval(
        method=WELCH,
        n_a=len(a),
        n_b=len(b),
        ratio=math.exp(diff),
        low=math.exp(diff - half),
        high=math.exp(diff + half),
    )


def bootstrap_median_ratio(a: Sequence[float], b: Sequence[float]) -> RatioInterval:
    """median(B)/median(A) from per-request values: a seeded percentile bootstrap."""
    reason = _usable(a, b, MIN_REQUESTS, "requests")
    if reason is not None:
        return RatioInterval(
            method=BOOTSTRAP, n_a=len(a), n_b=len(b), ratio=None, low=None, high=None, reason=reason
        )
    import numpy as np

    rng = np.random.default_rng(SEED)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    med_a = np.median(rng.choice(xa, size=(DRAWS, xa.size)), axis=1)
    med_b = np.median(rng.choice(xb, size=(DRAWS, xb.size)), axis=1)
    low, high = np.percentile(med_b / med_a, [2.5, 97.5])
    return RatioInterval(
        method=BOOTSTRAP,
        n_a=len(a),
        n_b=len(b),
        ratio=float(np.median(xb) / np.median(xa)),
        low=float(low),
        high=float(high),
    )
