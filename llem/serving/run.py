"""A served run: ``backend=openai`` under ``load=poisson|concurrency``, measured end to end.

prompts tokenised here -> server started (or found at ``backend.url``) and healthy -> meters open,
idle baseline -> warm-up requests (excluded) -> the load, with meter windows ``ramp``, ``steady``,
``drain`` following it (:mod:`llem.serving.phases`) and the server's Prometheus metrics sampled ->
server stopped with every child (also on failure and on every signal) -> result with a ``serving``
section: the steady window and the whole run, both labelled (:mod:`llem.serving.window`).

The offline sections of the result describe the whole run (energy: the three windows together)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llem import __version__, environment, metrics
from llem.backends.base import Prompt
from llem.backends.openai.backend import SERVER_LOG, OpenAIBackend
from llem.backends.openai.config import OpenAIConfig
from llem.benchmarks import benchmark_report
from llem.clock import now_iso
from llem.datasets import load_prompts
from llem.energy import EnergySession, Window, quality
from llem.energy.report import hardware_total
from llem.errors import RunFailed
from llem.flops import analytic_flops
from llem.harness import Harness, MeasuredWindow
from llem.load.config import ConcurrencyLoad, PoissonLoad, ServerLoad
from llem.paths import atomic_path
from llem.records import TIMESERIES_FILE, write_optional
from llem.result import (
    DatasetRecord,
    FlopsMetrics,
    MemoryMetrics,
    ModelRecord,
    Result,
    ServingReport,
    SpanFigures,
    SpanLabel,
    TimingMetrics,
)
from llem.serving.driver import LoadRun, Marks, closed_loop, open_loop
from llem.serving.failures import failure_counts, run_failure
from llem.serving.phases import Phase, PhaseWindows
from llem.serving.prometheus import MetricsSampler, ServerRow
from llem.serving.stream import StreamClient, StreamRecord, StreamRequest
from llem.serving.window import Span, span_figures
from llem.signals import Stopped, run_stoppable, stop_on_signals

MEMORY_NOT_MEASURED = "not measured: the engine runs in the server's processes"
FLOPS_REASON = "a server has no FLOP counter: analytic only"
MAX_ERRORS = 10


def _no_sync() -> None:
    """A server's device work cannot be waited on from here: windows close when streams end."""


async def _drive(
    backend: OpenAIBackend, load: ServerLoad, n: int, prompts: list[Prompt], marks: Marks
) -> LoadRun:
    """The load over ``prompts`` (cycled when the run sends more requests than there are)."""
    requests = [backend.request_for(p) for p in prompts]

    def request_for(i: int) -> StreamRequest:
        return requests[i % len(requests)]

    async with StreamClient(backend.base_url, backend.bcfg.request_timeout_s) as client:
        if isinstance(load, PoissonLoad):
            return await open_loop(client, load, backend.experiment.seed, n, request_for, marks)
        return await closed_loop(client, load, n, request_for, marks)


async def _warm(backend: OpenAIBackend, prompts: list[Prompt]) -> None:
    """Warm-up: every prompt at once (excluded from every figure)."""
    async with StreamClient(backend.base_url, backend.bcfg.request_timeout_s) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client.send(backend.request_for(p), start) for p in prompts))


@dataclass
class _Measured:
    """What the load produced."""

    run: LoadRun
    phases: list[Phase[Window]]
    steady: Phase[Window] | None
    steady_reason: str | None
    whole: Span  # from the ramp window's start to the drain window's end

    @property
    def whole_s(self) -> float:
        return self.whole.duration_s

    metrics_rows: int
    metrics_errors: int


class ServedRun(Harness):
    """Runs one served experiment (the offline :class:`Harness` hands over to it when ``load`` is
    not ``batch``)."""

    def run(self) -> Result:
        cfg = self.cfg
        load = cfg.load
        assert isinstance(cfg.backend, OpenAIConfig) and isinstance(
            load, PoissonLoad | ConcurrencyLoad
        ), "ExperimentConfig admits a served run only with backend=openai"
        started = now_iso()
        env = environment.snapshot(cfg.record_hostname)
        n_warmup = cfg.warmup_batches * cfg.batch
        prompt_set, measured_idx, warmup_idx = load_prompts(cfg.dataset, cfg.n, n_warmup)
        backend = OpenAIBackend(cfg.backend, cfg)
        session = EnergySession(cfg.energy)
        sampler: MetricsSampler | None = None
        marks = Marks()
        with stop_on_signals():  # a signal raises Stopped (in the loop: cancels it, then Stopped)
            try:
                session.open()
                prompts = backend.prepare(prompt_set, measured_idx + warmup_idx)
                measured, warm = prompts[: cfg.n], prompts[cfg.n :]
                t0 = time.perf_counter()
                model = backend.start(self.run_dir)
                load_s = time.perf_counter() - t0
                session.start_sampling()
                baseline, baseline_reason = session.baseline(_no_sync)
                session.phase("warmup")
                t0 = time.perf_counter()
                if warm:
                    run_stoppable(_warm(backend, warm))
                warmup_s = time.perf_counter() - t0
                sampler = MetricsSampler(
                    backend.base_url + "/metrics", backend.bcfg.metrics_interval_s
                )
                got = self._measure_load(backend, session, sampler, load, measured, marks)
                if backend.server is not None:
                    backend.server.check_alive(grace_s=2.0 if _failed(got.run.records) else 0.0)
                failure = run_failure(got.run.records, load.max_failed_fraction)
                if failure is not None:  # nothing, or too little, was served: no result
                    raise RunFailed(f"the served run failed: {failure}")
                warnings = backend.warnings() + session.warnings + session.end_checks()
                for p in got.phases:
                    warnings += session.window_warnings(p.window)
            except Stopped as stop:
                if sampler is not None:  # the measured load had begun: the run is kept, interrupted
                    stop.progress = marks.progress()
                raise
            finally:
                backend.stop()
                series = self.run_dir / TIMESERIES_FILE
                timeseries, unwritten = write_optional(series.name, lambda: session.close(series))
                if sampler is not None and sampler.rows and unwritten is None:
                    rows = sampler.rows
                    timeseries, unwritten = write_optional(
                        series.name, lambda: append_server_rows(series, rows)
                    )

        records = [r.request_record() for r in got.run.records if r.ok]  # only what was served
        tokens = metrics.token_counts(records)
        whole = Window("whole_run", readings=[r for p in got.phases for r in p.window.readings])
        measured_window = [MeasuredWindow(whole, records, got.whole_s)]
        energy_section = self._energy(
            session, measured_window, tokens, baseline, baseline_reason, None, timeseries
        )
        serving = self._serving(backend, session, load, got)
        warnings += self._served_checks(got.run.records, serving)
        warnings += [unwritten] if unwritten else []
        if energy_section.total_j is None:
            warnings.append(f"energy not measured: {energy_section.reason}")
        return Result(
            llem_version=__version__,
            experiment_id=str(uuid.uuid4()),
            config_hash=cfg.config_hash(),
            started_at=started,
            ended_at=now_iso(),
            config=cfg.model_dump(mode="json"),
            overrides=self.overrides,
            model=model,
            dataset=DatasetRecord(
                source=prompt_set.source,
                measured_indices=measured_idx,
                warmup_indices=warmup_idx,
                truncated_prompts=sum(p.truncated for p in measured),
            ),
            tokens=tokens,
            throughput=metrics.throughput(tokens, got.whole_s),
            latency=metrics.latency(records),
            timing=TimingMetrics(
                model_load_s=load_s,
                warmup_s=warmup_s,
                measured_window_s=got.whole_s,
                flops_pass_s=None,
            ),
            memory=MemoryMetrics(peak_bytes=None, measured=MEMORY_NOT_MEASURED),
            flops=self._analytic_flops(model, got.run.records),
            energy=energy_section,
            repeats=self._repeats(measured_window),
            requests=[metrics.request_metrics(r) for r in sorted(records, key=lambda r: r.start_s)],
            warnings=list(dict.fromkeys(warnings)),
            environment=env,
            benchmark=benchmark_report(cfg, model, energy_section, tokens.requests),
            serving=serving,
        )

    def _measure_load(
        self,
        backend: OpenAIBackend,
        session: EnergySession,
        sampler: MetricsSampler,
        load: ServerLoad,
        prompts: list[Prompt],
        marks: Marks,
    ) -> _Measured:
        """Drive the load between meter windows that follow it (ramp, steady, drain); ``marks``
        follows the run as it goes."""
        windows = PhaseWindows(marks, lambda name: session.window(name, _no_sync))
        sampler.start()
        windows.start()
        try:
            run = run_stoppable(_drive(backend, load, self.cfg.n, prompts, marks))
        finally:
            phases = windows.finish()
            sampler.stop()
        steady, why = windows.steady()
        return _Measured(
            run, phases, steady, why, windows.whole(), len(sampler.rows), sampler.errors
        )

    def _serving(
        self, backend: OpenAIBackend, session: EnergySession, load: ServerLoad, got: _Measured
    ) -> ServingReport:
        records = got.run.records

        def figures(label: SpanLabel, span: Span, phases: list[Phase[Window]]) -> SpanFigures:
            energy, reason = hardware_total([r for p in phases for r in p.window.readings])
            reason = reason if session.hardware_meters else session.reason()
            return span_figures(records, span, label, load.slo, energy, reason)

        steady = got.steady
        errors = list(dict.fromkeys(r.error for r in records if r.error))[:MAX_ERRORS]
        return ServingReport(
            load=load.name,
            launch=backend.bcfg.launch,
            server_startup_s=backend.startup_s,
            server_log=SERVER_LOG if backend.server is not None else None,
            steady=figures("steady", steady.span, [steady]) if steady else None,
            steady_reason=got.steady_reason,
            whole_run=figures("whole_run", got.whole, got.phases),
            usage_mismatches=sum(not r.counts_agree for r in records),
            input_mismatches=sum(
                r.usage_input_tokens not in (None, r.input_tokens) for r in records
            ),
            errors=errors,
            failures=failure_counts(records),
            usage_overclaims=sum(r.overclaimed for r in records),
            server_metrics_samples=got.metrics_rows,
            server_metrics_errors=got.metrics_errors,
        )

    def _analytic_flops(self, model: ModelRecord, records: Sequence[StreamRecord]) -> FlopsMetrics:
        shapes = [(1, r.input_tokens, r.output_tokens) for r in records if r.ok]
        total = analytic_flops(model.config, shapes)
        out = sum(r.output_tokens for r in records if r.ok)
        return FlopsMetrics(
            counted=None,
            analytic=total,
            counted_requests=len(shapes),
            counted_output_tokens=out,
            counted_per_output_token=None,
            analytic_per_output_token=total / out if total is not None and out else None,
            analytic_window_total=total,
            method="analytic",
            reason=FLOPS_REASON,
        )

    def _served_checks(self, records: Sequence[StreamRecord], serving: ServingReport) -> list[str]:
        out = []
        failed = sum(not r.ok for r in records)
        if failed:
            out.append(f"{failed} of {len(records)} requests failed: {'; '.join(serving.errors)}")
        if serving.input_mismatches:
            out.append(
                f"{serving.input_mismatches} requests: the server counted other input tokens than "
                "the local tokenizer"
            )
        if serving.usage_overclaims:
            out.append(
                f"{serving.usage_overclaims} requests: the server claimed more output tokens than "
                f"max_new_tokens={self.cfg.max_new_tokens}; each was counted as max_new_tokens"
            )
        if serving.usage_mismatches:
            out.append(
                f"{serving.usage_mismatches} requests: streamed token count differs from the "
                "server's usage count"
            )
        if not self.cfg.stop_at_eos:
            short = [r for r in records if r.ok and r.output_tokens != self.cfg.max_new_tokens]
            if short:
                out.append(
                    f"{len(short)} requests returned other than max_new_tokens="
                    f"{self.cfg.max_new_tokens} tokens with a fixed output length"
                )
        if serving.steady is None:
            out.append(f"no steady-state window: {serving.steady_reason}")
        elif short_window := quality.short_window(serving.steady.duration_s):
            out.append(f"steady window: {short_window}")
        return out


def _failed(records: Sequence[StreamRecord]) -> bool:
    return any(not r.ok for r in records)


SERVER_COLUMNS = ("server_requests_running", "server_requests_waiting", "server_kv_cache_usage_pct")


def append_server_rows(path: Path, rows: Sequence[ServerRow]) -> str:
    """Add the server's Prometheus rows (``device`` = ``server``, phase ``load``) to the time series
    at ``path`` (written when absent); returns its file name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    server = pa.table(
        {
            "time_unix_s": pa.array([r["time_unix_s"] for r in rows], pa.float64()),
            "phase": pa.array(["load"] * len(rows), pa.string()),
            "device": pa.array([r["device"] for r in rows], pa.string()),
            **{c: pa.array([r.get(c) for r in rows], pa.float64()) for c in SERVER_COLUMNS},
        }
    )
    table = (
        pa.concat_tables([pq.read_table(path), server], promote_options="default")
        if path.exists()
        else server
    )
    with atomic_path(path) as tmp:
        pq.write_table(table.sort_by("time_unix_s"), tmp)
    return path.name
