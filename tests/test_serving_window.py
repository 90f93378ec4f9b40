"""Window arithmetic of a served run, on records with hand-set times (seconds)."""

from __future__ import annotations

import pytest

from llem.load.config import Slo
from llem.serving.stream import StreamRecord
from llem.serving.window import (
    Span,
    inflight_reaches,
    meets_slo,
    span_figures,
    steady_window,
    whole_run,
)


def rec(
    sent: float, tokens: list[float], end: float | None = None, error: str | None = None
) -> StreamRecord:
    return StreamRecord(
        index=0,
        input_tokens=4,
        scheduled_s=sent,
        sent_s=sent,
        token_times_s=tokens,
        end_s=end if end is not None else (tokens[-1] if tokens else sent),
        finish_reason="length",
        error=error,
    )


# 4 requests; the first token 0.1 s after the send, then one every 0.05 s (two share a chunk in r2)
RECORDS = [
    rec(0.0, [0.1, 0.15, 0.2]),
    rec(0.5, [0.6, 0.6, 0.65]),
    rec(1.0, [1.1, 1.15, 1.2]),
    rec(2.0, [2.1, 2.15, 2.2]),
]


def test_steady_window_after_ramp_until_the_last_send() -> None:
    span, why = steady_window(RECORDS, start_s=0.0, ramp_s=0.4)
    assert why is None and span == Span(0.4, 2.0)
    span, _ = steady_window(RECORDS, start_s=0.0, ramp_s=None)
    assert span == Span(0.0, 2.0)
    # a duration-bound run stops sending at start + duration_s
    span, _ = steady_window(RECORDS, start_s=0.0, ramp_s=0.4, duration_s=2.5)
    assert span == Span(0.4, 2.5)
    # a ramp that outlasts the sending leaves no window, with the reason
    span, why = steady_window(RECORDS, start_s=0.0, ramp_s=3.0)
    assert span is None and why is not None and "before the ramp-up ended" in why
    assert steady_window([], 0.0, None) == (None, "no request was sent")


def test_closed_loop_window_starts_when_in_flight_first_reaches_the_target() -> None:
    records = [
        rec(0.0, [0.3], end=0.3),
        rec(0.1, [0.35], end=0.35),
        rec(0.2, [0.5], end=0.5),  # 3 in flight from 0.2
        rec(0.3, [0.7], end=0.7),  # sent when the first ends: ends count out first -> still 3
        rec(0.4, [0.8], end=0.8),
    ]
    assert inflight_reaches(records, 3) == 0.2
    assert inflight_reaches(records, 4) is None
    span, _ = steady_window(records, start_s=0.0, ramp_s=None, target_inflight=3)
    assert span == Span(0.2, 0.4)
    span, why = steady_window(records, start_s=0.0, ramp_s=None, target_inflight=4)
    assert span is None and why == "the in-flight count never reached 4"
    # an explicit ramp wins over the in-flight rule
    assert steady_window(records, 0.0, 0.1, target_inflight=3)[0] == Span(0.1, 0.4)


def test_span_figures_count_tokens_by_timestamp_and_divide_energy_exactly() -> None:
    span = Span(0.4, 2.0)
    f = span_figures(RECORDS, span, "steady", Slo(), energy_j=16.0)
    # tokens inside [0.4, 2.0): r2's 3 and r3's 3
    assert f.output_tokens == 6
    assert f.requests_sent == 2  # r2 (0.5) and r3 (1.0); r4 is sent at the end instant
    assert f.requests_completed == 2
    assert f.duration_s == pytest.approx(1.6)
    assert f.per_output_token_j == pytest.approx(16.0 / 6)
    assert f.per_request_j == pytest.approx(8.0)
    assert f.output_tokens_per_s == pytest.approx(6 / 1.6)
    assert f.offered_requests_per_s == pytest.approx(2 / 1.6)
    assert f.achieved_requests_per_s == pytest.approx(2 / 1.6)
    assert f.goodput_requests_per_s is None  # no SLOs set
    lat = f.latency
    assert lat.ttft_ms is not None and lat.ttft_ms.count == 2
    assert lat.ttft_ms.mean == pytest.approx(100.0)
    # every gap, 0 inside a chunk: r2 [0, 50], r3 [50, 50]
    assert lat.itl_ms is not None and lat.itl_ms.count == 4
    assert lat.itl_ms.min == pytest.approx(0.0) and lat.itl_ms.max == pytest.approx(50.0)
    assert lat.tpot_ms is not None and lat.tpot_ms.mean == pytest.approx(25.0 * 0.5 + 50.0 * 0.5)
    assert lat.e2e_ms is not None and lat.e2e_ms.mean == pytest.approx(175.0)
    assert lat.send_lag_ms is not None and lat.send_lag_ms.max == 0.0


def test_whole_run_and_null_energy_never_becomes_zero() -> None:
    span = whole_run(RECORDS, start_s=0.0)
    assert span == Span(0.0, 2.2, closed=True)
    f = span_figures(RECORDS, span, "whole_run", Slo(), None, "no usable meter")
    assert f.label == "whole_run"
    assert (f.output_tokens, f.requests_sent, f.requests_completed) == (12, 4, 4)
    # half-open, the same span leaves out the last token and the request it completes
    open_end = span_figures(RECORDS, Span(0.0, 2.2), "whole_run", Slo(), None, "no usable meter")
    assert (open_end.output_tokens, open_end.requests_completed) == (11, 3)
    assert f.energy_j is None and f.per_output_token_j is None and f.per_request_j is None
    assert f.energy_reason == "no usable meter"
    with pytest.raises(ValueError, match="give the reason"):
        span_figures(RECORDS, span, "whole_run", Slo(), None)


def test_goodput_counts_completed_requests_meeting_every_set_slo() -> None:
    records = [
        rec(0.0, [0.05, 0.06, 0.07]),  # ttft 50 ms, tpot 10 ms
        rec(0.1, [0.4, 0.41, 0.42]),  # ttft 300 ms
        rec(0.2, [0.25, 0.35, 0.45]),  # tpot 100 ms
        rec(0.3, [0.35], error="HTTP 500: boom"),  # failed
    ]
    span = Span(0.0, 1.0)
    assert meets_slo(records[0], Slo(ttft_ms=100.0, tpot_ms=20.0))
    assert not meets_slo(records[1], Slo(ttft_ms=100.0))
    assert not meets_slo(records[2], Slo(tpot_ms=20.0))
    assert meets_slo(records[2], Slo(ttft_ms=100.0))
    assert not meets_slo(records[3], Slo(ttft_ms=1000.0))
    both = span_figures(records, span, "steady", Slo(ttft_ms=100.0, tpot_ms=20.0), 3.0)
    assert both.requests_completed == 3 and both.requests_failed == 1
    assert both.per_request_j == pytest.approx(1.0)  # the failed request is no request served
    # latencies leave the failed request out: TTFT of the three completed ones
    assert both.latency.ttft_ms is not None and both.latency.ttft_ms.count == 3
    assert both.latency.send_lag_ms is not None and both.latency.send_lag_ms.count == 4
    assert both.goodput_requests_per_s == pytest.approx(1.0)
    ttft_only = span_figures(records, span, "steady", Slo(ttft_ms=100.0), 3.0)
    assert ttft_only.goodput_requests_per_s == pytest.approx(2.0)
