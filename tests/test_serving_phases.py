"""Meter windows following a served run (llem's real EnergySession, energy=none), against the fake
server: ramp, steady and drain back to back, their spans matching the run's marks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest

from llem.energy import EnergySession, Window
from llem.energy.config import EnergyConfig
from llem.load.config import ConcurrencyLoad, PoissonLoad, Slo
from llem.serving.driver import LoadRun, Marks, closed_loop, open_loop
from llem.serving.phases import PhaseWindows
from llem.serving.stream import StreamClient, StreamRequest, request
from llem.serving.window import span_figures
from tests.fake_openai_server import Program, fake_server


@pytest.fixture()
def energy() -> Iterator[EnergySession]:
    session = EnergySession(EnergyConfig(meter="none"))
    session.open()
    yield session
    session.close(None)


def request_for(i: int) -> StreamRequest:
    return request(i, 3, "fake", 4, prompt=[1, 2, 3])


def test_phases_follow_the_closed_loop_and_cover_every_token(energy: EnergySession) -> None:
    marks = Marks()
    phases = PhaseWindows[Window](marks, lambda name: energy.window(name, lambda: None))
    load = ConcurrencyLoad(concurrency=3)

    async def go() -> LoadRun:
        async with StreamClient(url, timeout_s=60) as client:
            return await closed_loop(client, load, 9, request_for, marks)

    with fake_server(Program(ttft_ms=30.0, chunk_gap_ms=5.0, tokens_per_chunk=2)) as url:
        phases.start()
        try:
            run = asyncio.run(go())
        finally:
            done = phases.finish()
    assert [p.name for p in done] == ["ramp", "steady", "drain"]
    assert [p.window.name for p in done] == ["ramp", "steady", "drain"]
    ramp, steady, drain = (p.span for p in done)
    assert ramp.end_s <= steady.start_s and steady.end_s <= drain.start_s
    recs = run.records
    assert marks.steady_s is not None and marks.drain_s is not None
    # steady opens once the 3rd request is in flight, drain once the 9th is sent
    assert recs[2].sent_s <= steady.start_s < recs[3].sent_s
    assert recs[-1].sent_s <= drain.start_s
    assert drain.end_s >= max(r.last_s for r in recs)
    steady_phase, why = phases.steady()
    assert why is None and steady_phase is not None and steady_phase.span == steady
    # tokens of the three phases add up to every token the run streamed
    total = sum(r.output_tokens for r in recs)
    assert total == 9 * 4
    parts = [span_figures(recs, p.span, p.name, Slo(), None, "energy=none") for p in done]
    assert [f.label for f in parts] == ["ramp", "steady", "drain"]
    whole = span_figures(recs, phases.whole(), "whole_run", Slo(), None, "energy=none")
    assert whole.output_tokens == total
    # a token exactly on a boundary between phases can be counted in neither (gaps are ~µs)
    assert sum(f.output_tokens for f in parts) <= total
    assert sum(f.output_tokens for f in parts) >= total - 2


def test_a_run_that_never_gets_steady_reports_why(energy: EnergySession) -> None:
    marks = Marks()
    phases = PhaseWindows[Window](marks, lambda name: energy.window(name, lambda: None))

    async def go() -> LoadRun:
        async with StreamClient(url, timeout_s=60) as client:
            return await closed_loop(client, ConcurrencyLoad(concurrency=8), 3, request_for, marks)

    with fake_server(Program(ttft_ms=5.0, chunk_gap_ms=1.0)) as url:
        phases.start()
        run = asyncio.run(go())
        phases.finish()
    assert len(run.records) == 3
    steady, why = phases.steady()
    assert steady is None and why is not None and "never became steady" in why


def test_finish_after_a_failed_driver_does_not_hang(energy: EnergySession) -> None:
    marks = Marks()
    phases = PhaseWindows[Window](marks, lambda name: energy.window(name, lambda: None))

    def broken(i: int) -> StreamRequest:
        raise RuntimeError("prompt builder failed")

    async def go() -> LoadRun:
        async with StreamClient("http://127.0.0.1:9", timeout_s=5) as client:
            return await open_loop(client, PoissonLoad(rate=10.0), 0, 3, broken, marks)

    phases.start()
    with pytest.raises(RuntimeError, match="prompt builder failed"):
        try:
            asyncio.run(go())
        finally:
            done = phases.finish()
    assert [p.name for p in done] == ["ramp", "steady", "drain"]


def test_a_meter_error_in_the_thread_reaches_the_caller() -> None:
    def failing(name: str) -> AbstractContextManager[object]:
        raise OSError(f"meter unreadable at {name}")

    phases = PhaseWindows[object](Marks(), failing)
    phases.start()
    with pytest.raises(OSError, match="meter unreadable at ramp"):
        phases.finish()
