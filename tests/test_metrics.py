"""Metric arithmetic against values computed by hand."""

from __future__ import annotations

import pytest

from llem.backends.base import RequestRecord
from llem.metrics import (
    distribution,
    latency,
    percentile,
    request_metrics,
    throughput,
    token_counts,
)


def test_percentile_interpolates_like_numpy_linear():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4 + 0.6 * 6)  # pos 3.6
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 10.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_distribution_and_empty():
    d = distribution([3.0, 1.0, 2.0])
    assert (d.count, d.mean, d.p50, d.min, d.max) == (3, 2.0, 2.0, 1.0, 3.0)
    assert distribution([]) is None


def _batch_of_two() -> list[RequestRecord]:
    # one batch submitted at t=10.0 s; step tokens arrive at 10.1, 10.12, 10.15; row 2 stopped after
    # 2 tokens
    times = [10.1, 10.12, 10.15]
    return [RequestRecord(0, 5, 3, 10.0, times), RequestRecord(1, 7, 2, 10.0, times[:2])]


def test_latency_from_step_timestamps():
    lat = latency(_batch_of_two())
    assert lat.ttft_ms.count == 2 and lat.ttft_ms.mean == pytest.approx(100.0)
    assert sorted([lat.e2e_ms.min, lat.e2e_ms.max]) == pytest.approx([120.0, 150.0])
    # gaps: row0 20, 30 ms; row1 20 ms -> three samples
    assert lat.itl_ms.count == 3 and lat.itl_ms.mean == pytest.approx((20 + 30 + 20) / 3)


def test_request_metrics_and_single_token_request():
    r = request_metrics(_batch_of_two()[0])
    assert (
        r.ttft_ms == pytest.approx(100)
        and r.e2e_ms == pytest.approx(150)
        and r.itl_mean_ms == pytest.approx(25)
    )
    one = request_metrics(RequestRecord(3, 4, 1, 0.0, [0.5]))
    assert one.itl_mean_ms is None and one.e2e_ms == pytest.approx(500)


def test_token_counts_and_throughput():
    tokens = token_counts(_batch_of_two())
    assert (tokens.requests, tokens.input, tokens.output, tokens.total) == (2, 12, 5, 17)
    tp = throughput(tokens, window_s=0.5)
    assert (tp.output_tokens_per_s, tp.total_tokens_per_s, tp.requests_per_s) == (10.0, 34.0, 4.0)
