"""Window arithmetic of a served run: pure functions over its stream records.

The **steady window** starts after the ramp-up (``load.ramp_s`` after the first send; closed loop
without ``ramp_s``: when the in-flight count first reaches ``load.concurrency``) and ends when
sending stops (the last send; with ``load.duration_s``, ``duration_s`` after the start). Requests
still in flight then finish outside it. The **whole run** spans the first send to the last token.
Both are reported, labelled.

Over a span:
- output tokens are those of completed requests whose arrival time lies in it (a failed request's
  tokens are not counted: only what was served), so energy read at its boundaries divided by them is
  J/output-token;
- latencies (TTFT, every inter-token gap, TPOT, E2E) are those of the requests *sent* in it that
  completed (failed ones are counted apart);
- offered rate = requests scheduled in it / its length; achieved rate = requests completed in it /
  its length; goodput = completed requests meeting the SLOs / its length (null without SLOs);
- J/request = energy / requests completed in it (average power / achieved rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from llem.load.config import Slo
from llem.metrics import distribution, latency
from llem.result import ServingLatency, SpanFigures, SpanLabel
from llem.serving.stream import StreamRecord

PhaseName = Literal["ramp", "steady", "drain"]


@dataclass(frozen=True)
class Span:
    """An interval of the run (perf_counter seconds): half-open unless ``closed`` (the whole run, so
    its last token is inside)."""

    start_s: float
    end_s: float
    closed: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def __contains__(self, t: float) -> bool:
        return self.start_s <= t < self.end_s or (self.closed and t == self.end_s)


def inflight_reaches(records: Sequence[StreamRecord], target: int) -> float | None:
    """The first instant at which ``target`` requests were in flight (sent, not finished), or None.
    A request finishing at the instant another is sent is counted out first."""
    events = sorted(
        [(r.sent_s, 1) for r in records] + [(r.done_s, -1) for r in records],
        key=lambda e: (e[0], e[1]),
    )
    count = 0
    for t, step in events:
        count += step
        if count >= target:
            return t
    return None


def steady_window(
    records: Sequence[StreamRecord],
    start_s: float,
    ramp_s: float | None,
    target_inflight: int | None = None,
    duration_s: float | None = None,
) -> tuple[Span | None, str | None]:
    """The steady window by the rules above, or (None, why there is none)."""
    if not records:
        return None, "no request was sent"
    if ramp_s is not None or target_inflight is None:
        begin = start_s + (ramp_s or 0.0)
    else:
        reached = inflight_reaches(records, target_inflight)
        if reached is None:
            return None, f"the in-flight count never reached {target_inflight}"
        begin = reached
    end = start_s + duration_s if duration_s is not None else max(r.sent_s for r in records)
    if end <= begin:
        return None, f"sending stopped {begin - end:.3f} s before the ramp-up ended"
    return Span(begin, end), None


def whole_run(records: Sequence[StreamRecord], start_s: float) -> Span:
    """From the run's start to its last token (or stream end)."""
    end = max((r.done_s for r in records), default=start_s)
    return Span(start_s, end, closed=True)


def meets_slo(r: StreamRecord, slo: Slo) -> bool:
    """Completed, with TTFT and TPOT within the limits that are set."""
    if not r.ok or not r.token_times_s:
        return False
    ttft_ms = (r.token_times_s[0] - r.sent_s) * 1e3
    if slo.ttft_ms is not None and ttft_ms > slo.ttft_ms:
        return False
    tpot = _tpot_ms(r)
    return slo.tpot_ms is None or tpot is None or tpot <= slo.tpot_ms


def _tpot_ms(r: StreamRecord) -> float | None:
    t = r.token_times_s
    return (t[-1] - t[0]) * 1e3 / (len(t) - 1) if len(t) > 1 else None


def span_figures(
    records: Sequence[StreamRecord],
    span: Span,
    label: SpanLabel,
    slo: Slo,
    energy_j: float | None,
    energy_reason: str | None = None,
) -> SpanFigures:
    """The figures of ``span``: its energy (from meter reads at its boundaries) is passed in, or
    None with the reason. Latencies are those of the requests sent in it that completed."""
    if energy_j is None and not energy_reason:
        raise ValueError("energy not measured: give the reason")
    sent = [r for r in records if r.sent_s in span]
    good = [r for r in sent if r.ok]
    done = [r for r in records if r.ok and r.done_s in span]
    tokens = sum(1 for r in records if r.ok for t in r.token_times_s if t in span)
    scheduled = sum(1 for r in records if r.scheduled_s in span)
    d = span.duration_s
    has_slo = slo.ttft_ms is not None or slo.tpot_ms is not None
    base = latency([r.request_record() for r in good])
    tpots = [v for r in good if (v := _tpot_ms(r)) is not None]
    return SpanFigures(
        label=label,
        duration_s=d,
        requests_sent=len(sent),
        requests_completed=len(done),
        requests_failed=len(sent) - len(good),
        output_tokens=tokens,
        offered_requests_per_s=scheduled / d,
        achieved_requests_per_s=len(done) / d,
        output_tokens_per_s=tokens / d,
        goodput_requests_per_s=sum(meets_slo(r, slo) for r in done) / d if has_slo else None,
        energy_j=energy_j,
        per_output_token_j=energy_j / tokens if energy_j is not None and tokens else None,
        per_request_j=energy_j / len(done) if energy_j is not None and done else None,
        energy_reason=energy_reason,
        latency=ServingLatency(
            ttft_ms=base.ttft_ms,
            itl_ms=base.itl_ms,
            e2e_ms=base.e2e_ms,
            tpot_ms=distribution(tpots),
            send_lag_ms=distribution([r.send_lag_s * 1e3 for r in sent]),
        ),
    )
