"""Metric arithmetic from request records: token counts, throughput, latency distributions.

Pure functions, no framework imports. Times in records are perf_counter seconds; reported latencies
are ms.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from llem.backends.base import RequestRecord
from llem.result import Distribution, LatencyMetrics, RequestMetrics, ThroughputMetrics, TokenCounts


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linearly interpolated percentile (numpy's default) of sorted values; q in [0, 100]."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def distribution(values: Sequence[float]) -> Distribution | None:
    """mean/p50/p90/p99/min/max of ``values`` (None when there are none)."""
    if not values:
        return None
    s = sorted(values)
    return Distribution(
        count=len(s),
        mean=sum(s) / len(s),
        p50=percentile(s, 50),
        p90=percentile(s, 90),
        p99=percentile(s, 99),
        min=s[0],
        max=s[-1],
    )


def request_metrics(r: RequestRecord) -> RequestMetrics:
    times = r.token_times_s
    return RequestMetrics(
        index=r.index,
        repeat=r.repeat,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        ttft_ms=(times[0] - r.start_s) * 1e3 if times else None,
        e2e_ms=(r.end_s - r.start_s) * 1e3,
        itl_mean_ms=(times[-1] - times[0]) * 1e3 / (len(times) - 1) if len(times) > 1 else None,
    )


def token_counts(records: Sequence[RequestRecord]) -> TokenCounts:
    inp = sum(r.input_tokens for r in records)
    out = sum(r.output_tokens for r in records)
    return TokenCounts(requests=len(records), input=inp, output=out, total=inp + out)


def throughput(tokens: TokenCounts, window_s: float) -> ThroughputMetrics:
    return ThroughputMetrics(
        output_tokens_per_s=tokens.output / window_s,
        total_tokens_per_s=tokens.total / window_s,
        requests_per_s=tokens.requests / window_s,
    )


def latency(records: Sequence[RequestRecord]) -> LatencyMetrics:
    """TTFT and E2E: one sample per request. ITL: one per gap between consecutive output tokens."""
    ttft: list[float] = []
    e2e: list[float] = []
    itl: list[float] = []
    for r in records:
        t = r.token_times_s
        if t:
            ttft.append((t[0] - r.start_s) * 1e3)
        e2e.append((r.end_s - r.start_s) * 1e3)
        itl.extend((b - a) * 1e3 for a, b in itertools.pairwise(t))
    return LatencyMetrics(
        ttft_ms=distribution(ttft), itl_ms=distribution(itl), e2e_ms=distribution(e2e)
    )
