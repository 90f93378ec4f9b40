"""Open- and closed-loop drivers, the live window marks and the Prometheus sampler, against a real
HTTP server (tests/fake_openai_server.py). Every run is bounded: at most 200 short requests."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from collections.abc import Iterator

import pytest
from scipy import stats  # type: ignore[import-untyped]

from llem.load.config import ConcurrencyLoad, PoissonLoad, Slo
from llem.load.schedule import arrival_times
from llem.serving.driver import LoadRun, RequestFor, closed_loop, open_loop
from llem.serving.prometheus import MetricsSampler, parse_metrics
from llem.serving.stream import StreamClient, StreamRequest, request
from llem.serving.window import inflight_reaches, span_figures, steady_window, whole_run
from tests.fake_openai_server import Program, fake_server

FAST = Program(ttft_ms=5.0, chunk_gap_ms=1.0, tokens_per_chunk=1)


def make(tokens: int) -> RequestFor:
    def request_for(i: int) -> StreamRequest:
        return request(i % 7, 3, "fake", tokens, prompt=[1, 2, 3])

    return request_for


def run_open(url: str, load: PoissonLoad, n: int, tokens: int = 2, seed: int = 0) -> LoadRun:
    async def go() -> LoadRun:
        async with StreamClient(url, timeout_s=60) as client:
            return await open_loop(client, load, seed, n, make(tokens))

    return asyncio.run(go())


def run_closed(url: str, load: ConcurrencyLoad, n: int, tokens: int = 2) -> LoadRun:
    async def go() -> LoadRun:
        async with StreamClient(url, timeout_s=60) as client:
            return await closed_loop(client, load, n, make(tokens))

    return asyncio.run(go())


def received(url: str) -> list[float]:
    with urllib.request.urlopen(url + "/requests", timeout=10) as resp:
        return [r["received_s"] for r in json.loads(resp.read())]


@pytest.fixture()
def fast_url() -> Iterator[str]:
    with fake_server(FAST) as url:
        yield url


def test_open_loop_sends_on_the_seeded_schedule_and_the_server_sees_poisson_arrivals(
    fast_url: str,
) -> None:
    rate, n = 50.0, 200
    load = PoissonLoad(rate=rate, ramp_s=0.5)
    run = run_open(fast_url, load, n)
    offsets = arrival_times(load, 0, n)
    assert len(run.records) == n and all(r.ok for r in run.records)
    assert sum(r.output_tokens for r in run.records) == 2 * n
    scheduled = sorted(r.scheduled_s - run.start_s for r in run.records)
    assert scheduled == pytest.approx(offsets, abs=1e-9)
    assert all(r.sent_s >= r.scheduled_s for r in run.records)
    # what the server received, in its own process: exponential gaps at the offered rate
    arrivals = sorted(received(fast_url))
    assert len(arrivals) == n
    inter = [b - a for a, b in itertools.pairwise(arrivals)]
    assert stats.kstest(inter, "expon", args=(0, 1 / rate)).pvalue > 0.01
    # the live marks: steady after the ramp, drain once the last request is sent
    m = run.marks
    assert m.steady_s is not None and m.drain_s is not None
    assert m.steady_s >= run.start_s + 0.5
    assert m.drain_s >= max(r.sent_s for r in run.records)
    span, why = steady_window(run.records, run.start_s, load.ramp_s)
    assert why is None and span is not None
    assert span.start_s == run.start_s + 0.5 and span.end_s == max(r.sent_s for r in run.records)
    f = span_figures(run.records, span, "steady", Slo(ttft_ms=60_000.0), None, "energy=none")
    assert f.requests_sent == sum(1 for o in offsets if 0.5 <= o < offsets[-1])
    assert f.goodput_requests_per_s == pytest.approx(f.achieved_requests_per_s)
    whole_span = whole_run(run.records, run.start_s)
    whole = span_figures(run.records, whole_span, "whole_run", Slo(), None, "energy=none")
    assert whole.output_tokens == 2 * n and whole.requests_completed == n


def test_open_loop_max_concurrency_caps_requests_in_flight(fast_url: str) -> None:
    load = PoissonLoad(rate=1000.0, max_concurrency=2)
    run = run_open(fast_url, load, 12, tokens=3)
    assert len(run.records) == 12 and all(r.ok for r in run.records)
    assert inflight_reaches(run.records, 2) is not None
    assert inflight_reaches(run.records, 3) is None
    # waiting for a slot shows as send lag
    assert max(r.send_lag_s for r in run.records) >= 0.005


def test_open_loop_by_duration(fast_url: str) -> None:
    load = PoissonLoad(rate=40.0, duration_s=0.5)
    run = run_open(fast_url, load, n=1)
    assert len(run.records) == len(arrival_times(load, 0, 1)) > 1
    assert run.marks.drain_s is not None and run.marks.drain_s >= run.start_s + 0.5
    span, _ = steady_window(run.records, run.start_s, None, duration_s=load.duration_s)
    assert span is not None and span.end_s == run.start_s + 0.5


def test_closed_loop_keeps_the_concurrency_and_marks_steady_when_it_is_reached() -> None:
    with fake_server(Program(ttft_ms=30.0, chunk_gap_ms=5.0, tokens_per_chunk=1)) as url:
        run = run_closed(url, ConcurrencyLoad(concurrency=4), n=12, tokens=3)
    recs = run.records
    assert len(recs) == 12 and all(r.ok and r.output_tokens == 3 for r in recs)
    assert sorted(r.index for r in recs) == sorted(i % 7 for i in range(12))
    assert inflight_reaches(recs, 4) == recs[3].sent_s
    assert inflight_reaches(recs, 5) is None
    # the live marks agree with the rules: steady right after the 4th send (before the 5th, which
    # waits for a request to finish), drain right after the 12th send
    m = run.marks
    assert m.steady_s is not None and recs[3].sent_s <= m.steady_s < recs[4].sent_s
    assert m.drain_s is not None and recs[-1].sent_s <= m.drain_s
    span, why = steady_window(recs, run.start_s, None, target_inflight=4)
    assert why is None and span is not None
    assert (span.start_s, span.end_s) == (recs[3].sent_s, recs[-1].sent_s)
    # every replacement is sent after a request finished
    ends = sorted(r.end_s for r in recs if r.end_s is not None)
    for k, r in enumerate(recs[4:]):
        assert r.sent_s >= ends[k]


def test_closed_loop_by_duration_stops_sending_at_the_drain() -> None:
    with fake_server(Program(ttft_ms=10.0, chunk_gap_ms=2.0)) as url:
        run = run_closed(url, ConcurrencyLoad(concurrency=2, duration_s=0.4), n=1, tokens=2)
    assert len(run.records) > 2  # n is ignored when duration_s is set
    assert run.marks.drain_s is not None
    assert all(r.sent_s <= run.marks.drain_s for r in run.records)


METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 5.0
vllm:time_to_first_token_seconds_count{model_name="m"} 5.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.3
"""


def test_parse_metrics_sums_engines_and_leaves_missing_metrics_null() -> None:
    row = parse_metrics(METRICS)
    assert row["server_requests_running"] == 5.0
    assert row["server_requests_waiting"] == 1.0
    assert row["server_kv_cache_usage_pct"] == pytest.approx(37.5)
    assert row["device"] == "server"
    empty = parse_metrics("# TYPE other gauge\nother 1.0\n")
    assert empty["server_requests_running"] is None
    assert empty["server_kv_cache_usage_pct"] is None


def test_sampler_sees_the_server_saturate() -> None:
    # 4 in flight against a server that runs 2 at a time: 2 running and 2 waiting
    with fake_server(Program(ttft_ms=60.0, chunk_gap_ms=5.0, max_running=2)) as url:
        sampler = MetricsSampler(url + "/metrics", interval_s=0.02)
        sampler.start()
        try:
            run = run_closed(url, ConcurrencyLoad(concurrency=4), n=12, tokens=2)
        finally:
            sampler.stop()
    assert all(r.ok for r in run.records)
    assert sampler.errors == 0 and len(sampler.rows) >= 5
    assert max(r["server_requests_running"] or 0.0 for r in sampler.rows) == 2.0
    assert max(r["server_requests_waiting"] or 0.0 for r in sampler.rows) == 2.0
    times = [r["time_unix_s"] for r in sampler.rows]
    assert times == sorted(times)


def test_sampler_skips_failed_polls_instead_of_writing_zeros() -> None:
    sampler = MetricsSampler("http://127.0.0.1:9/metrics", interval_s=0.01, timeout_s=0.5)
    sampler.sample_once()
    sampler.sample_once()
    assert sampler.rows == [] and sampler.errors == 2 and sampler.last_error
