"""Is llem's load generator ever the bottleneck? The fake OpenAI server at rising Poisson rates.

The fake server (``tests/fake_openai_server.py``, its own process) answers every request after
``--ttft-ms`` with ``--tokens`` streamed tokens, ``--tokens-per-chunk`` per chunk, a chunk every
``--chunk-gap-ms``. For each offered rate, llem's open-loop driver
(:func:`llem.serving.driver.open_loop`, the aiohttp stream client) sends Poisson arrivals for
``--seconds`` (seed 0); the steady window (after ``--ramp-s``, until sending stops) gives:

- offered rate: requests scheduled in the window / its length;
- achieved rate: requests completed in the window / its length (every token streamed and counted);
- p99 send lag: actual minus scheduled send time of the requests sent in the window;
- client / server CPU: each process's CPU time over the run, as % of one core.

It reports the highest offered rate at which achieved/offered >= 0.98 (goal: >= 200 req/s with 32
streamed tokens each) and the p99 send lag there (goal: <= 5 ms). Rates are tried in increasing
order and the sweep stops after two rates in a row miss the ratio. A report, not a test: nothing is
asserted, the exit code is 0. The fake server shares the machine's cores with the generator, so on a
busy machine both figures fall; run it on an idle one.

    python bench/bench_loadgen.py [--rates 50,100,150,200,250,300,400,500] [--seconds 6]
        [--ramp-s 1] [--tokens 32] [--tokens-per-chunk 1] [--chunk-gap-ms 2] [--ttft-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llem.load.config import PoissonLoad, Slo  # noqa: E402
from llem.metrics import percentile  # noqa: E402
from llem.serving.driver import LoadRun, open_loop  # noqa: E402
from llem.serving.stream import StreamClient, StreamRequest, request  # noqa: E402
from llem.serving.window import span_figures, steady_window  # noqa: E402
from tests.fake_openai_server import Program, fake_server  # noqa: E402


@dataclass(frozen=True)
class Point:
    offered: float
    achieved: float
    sent: float
    p50_lag_ms: float
    p99_lag_ms: float
    max_lag_ms: float
    tokens_ok: bool
    errors: int
    cpu_pct: float
    server_cpu_pct: float


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _server_cpu_s(url: str) -> float:
    with urllib.request.urlopen(url + "/cpu", timeout=10) as resp:
        return float(json.loads(resp.read())["cpu_s"])


def measure(url: str, rate: float, seconds: float, ramp_s: float, tokens: int) -> Point:
    load = PoissonLoad(rate=rate, duration_s=seconds, ramp_s=ramp_s)

    def request_for(i: int) -> StreamRequest:
        return request(i, 8, "fake", tokens, prompt=list(range(8)))

    async def go() -> LoadRun:
        async with StreamClient(url, timeout_s=120) as client:
            return await open_loop(client, load, 0, 1, request_for)

    cpu0, server0, wall0 = _cpu_s(), _server_cpu_s(url), time.perf_counter()
    run = asyncio.run(go())
    wall = time.perf_counter() - wall0
    cpu_pct = 100 * (_cpu_s() - cpu0) / wall
    server_cpu_pct = 100 * (_server_cpu_s(url) - server0) / wall
    span, why = steady_window(run.records, run.start_s, ramp_s, duration_s=seconds)
    if span is None:
        raise SystemExit(f"no steady window: {why}")
    fig = span_figures(run.records, span, "steady", Slo(), None, "not measured (benchmark)")
    lags = sorted(r.send_lag_s * 1e3 for r in run.records if r.sent_s in span)
    return Point(
        offered=fig.offered_requests_per_s,
        achieved=fig.achieved_requests_per_s,
        sent=fig.requests_sent / span.duration_s,
        p50_lag_ms=percentile(lags, 50),
        p99_lag_ms=percentile(lags, 99),
        max_lag_ms=lags[-1],
        tokens_ok=all(r.output_tokens == tokens for r in run.records if r.ok),
        errors=sum(not r.ok for r in run.records),
        cpu_pct=cpu_pct,
        server_cpu_pct=server_cpu_pct,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="50,100,150,200,250,300,400,500")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--ramp-s", type=float, default=1.0)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--tokens-per-chunk", type=int, default=1)
    ap.add_argument("--chunk-gap-ms", type=float, default=2.0)
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    a = ap.parse_args()
    program = Program(a.ttft_ms, a.chunk_gap_ms, a.tokens_per_chunk)
    print(
        f"fake server: ttft {a.ttft_ms} ms, {a.tokens} tokens, {a.tokens_per_chunk} per chunk "
        f"every {a.chunk_gap_ms} ms; Poisson arrivals for {a.seconds} s, steady window after "
        f"{a.ramp_s} s"
    )
    print(
        f"{'offered/s':>10} {'achieved/s':>11} {'sent/s':>8} {'ratio':>6} {'lag p50 ms':>11} "
        f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'tokens':>6} {'client CPU':>10} "
        f"{'server CPU':>10}"
    )
    best: tuple[float, Point] | None = None
    misses = 0
    with fake_server(program) as url:
        for rate in (float(r) for r in a.rates.split(",")):
            p = measure(url, rate, a.seconds, a.ramp_s, a.tokens)
            ratio = p.achieved / p.offered
            print(
                f"{p.offered:10.1f} {p.achieved:11.1f} {p.sent:8.1f} {ratio:6.3f} "
                f"{p.p50_lag_ms:11.2f} {p.p99_lag_ms:7.2f} {p.max_lag_ms:7.2f} {p.errors:6d} "
                f"{'exact' if p.tokens_ok else 'WRONG':>6} {p.cpu_pct:9.0f}% "
                f"{p.server_cpu_pct:9.0f}%",
                flush=True,
            )
            if ratio >= 0.98 and p.errors == 0 and p.tokens_ok:
                best, misses = (rate, p), 0
            else:
                misses += 1
                if misses == 2:
                    break
    if best is None:
        print("\nno rate reached achieved/offered >= 0.98")
        return
    rate, p = best
    goal = "met" if rate >= 200 and p.p99_lag_ms <= 5 else "not met"
    print(
        f"\nhighest offered rate with achieved/offered >= 0.98: {rate:g} req/s "
        f"(offered {p.offered:.1f}, achieved {p.achieved:.1f}), p99 send lag {p.p99_lag_ms:.2f} ms "
        f"-> goal (>= 200 req/s, p99 lag <= 5 ms) {goal}"
    )


if __name__ == "__main__":
    main()
