"""The experiment lifecycle, owned in one place.

1. environment snapshot; measured and warm-up prompt indices; the energy session opens (an explicit
   meter that cannot work stops the job here, before the model loads);
2. the backend tokenises the prompts (context check) and loads the model (timed: ``model_load_s``);
3. the sampler starts; idle baseline per hardware-metered device (cached, else an idle window);
4. warm-up batches (timed: ``warmup_s``; excluded from every metric);
5. ``repeats`` measured windows, each all batches back to back between synchronised clock and meter
   reads, ``repeat_gap_s`` of cool-down between them; then the peak memory;
6. with ``energy.prefill_split`` and a hardware meter: a prefill-only pass over the same batches in
   its own window;
7. the FLOP pass: with ``flops.enabled``, the framework's counter over up to
   ``flops.max_batches`` batches (timed: ``flops_pass_s``, outside the measured windows); the
   closed form over every batch;
8. backend and session close (the time series is written), then the :class:`Result` is assembled.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from llem import __version__, environment, hostcpu, metrics
from llem.backends import load_backend
from llem.backends.base import Backend, FlopCount, Prompt, RequestRecord
from llem.benchmarks import benchmark_report
from llem.clock import now_iso, process_started_s
from llem.config import ExperimentConfig
from llem.datasets import load_prompts
from llem.energy import EnergySession, Window, quality
from llem.energy.base import Reading
from llem.energy.baseline import IdlePower
from llem.energy.codecarbon import CodeCarbonMeter
from llem.energy.report import energy_metrics, hardware_total
from llem.errors import RunFailed, out_of_memory
from llem.flops import analytic_flops
from llem.plotworker import PlotWorker, plot_worker
from llem.records import TIMESERIES_FILE, TIMESERIES_PNG, write_optional
from llem.result import (
    ENERGY_NOT_MEASURED,
    DatasetRecord,
    EnergyMetrics,
    FlopsMetrics,
    MemoryMetrics,
    ModelRecord,
    RepeatMetrics,
    RepeatSummary,
    Result,
    TimingMetrics,
    TokenCounts,
)
from llem.stats import Interval, summarize

log = logging.getLogger(__name__)


def preload(cfg: ExperimentConfig) -> list[str]:
    """What a job running ``cfg`` imports (and the caches it fills) beyond llem itself: its
    backend's engine, its meters, plotting. A study's fork server does it once for its jobs."""
    from llem import runplot
    from llem.backends.registry import get_backend
    from llem.energy.registry import meter_preload

    entry = get_backend(cfg.backend.name)
    modules = [entry.backend.split(":")[0], *entry.preload, *meter_preload(cfg.energy)]
    return modules + list(runplot.PRELOAD if cfg.plots else ())


def make_batches(
    prompts: list[Prompt], size: int, sort_by_length: bool = False
) -> list[list[Prompt]]:
    """Consecutive groups of ``size`` prompts (the last may be smaller), optionally by length."""
    ordered = sorted(prompts, key=lambda p: p.input_tokens) if sort_by_length else prompts
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


class MeasuredWindow(NamedTuple):
    """One repeat: its meter window, its requests and its clock duration (s)."""

    window: Window
    records: list[RequestRecord]
    seconds: float


@contextmanager
def _progress(
    total: int, enabled: bool, repeat: int = 1, repeats: int = 1
) -> Iterator[Callable[[int], None]]:
    """A progress bar over ``total`` prompts; yields ``advance(n)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    label = "measuring" if repeats == 1 else f"measuring (repeat {repeat}/{repeats})"
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, disable=not enabled) as bar:
        task = bar.add_task("measure", total=total)
        yield lambda n: bar.advance(task, n)


class Harness:
    """Runs one experiment, writes its time series into ``run_dir``, returns its :class:`Result`."""

    def __init__(
        self, config: ExperimentConfig, run_dir: Path, overrides: list[str] | None = None
    ) -> None:
        self.cfg = config
        self.run_dir = run_dir
        self.overrides = overrides or []

    def run(self) -> Result:
        cfg = self.cfg
        if cfg.load.name != "batch":  # a server under a load: llem.serving.run
            from llem.serving.run import ServedRun

            return ServedRun(cfg, self.run_dir, self.overrides).run()
        started = now_iso()
        process_start = process_started_s()
        t_run = time.perf_counter()
        before_run = 0.0 if process_start is None else time.time() - process_start
        session = EnergySession(cfg.energy)
        timeseries = None
        backend: Backend | None = None
        # slow meter set-up (CodeCarbon's tracker, the Zeus probe) runs beside the engine's
        # imports, tokenisation and model load; nothing is measured before it is done (an explicit
        # meter that cannot work here stops the job when it is joined, before the warm-up)
        meters = ThreadPoolExecutor(1, thread_name_prefix="llem-meters")
        plotter: PlotWorker | None = None
        try:  # from the meter thread's start: a stop anywhere after it waits for it
            opening = meters.submit(session.open)
            plotter = plot_worker() if cfg.plots else None  # imports matplotlib beside all that
            env = environment.snapshot(cfg.record_hostname)
            n_warmup = cfg.warmup_batches * cfg.batch
            prompt_set, measured_idx, warmup_idx = load_prompts(cfg.dataset, cfg.n, n_warmup)
            backend = load_backend(cfg)
            log.info("tokenising %d prompts (%s)", cfg.n + len(warmup_idx), prompt_set.source)
            prompts = backend.prepare(prompt_set, measured_idx + warmup_idx)
            measured, warm = prompts[: cfg.n], prompts[cfg.n :]
            log.info("loading %s", cfg.model.name_or_path)
            startup_s = time.time() - process_start if process_start is not None else None
            t0 = time.perf_counter()
            model = _load(backend, cfg)
            backend.synchronize()
            load_s = time.perf_counter() - t0
            opening.result()
            if plotter is not None and not plotter.ready():
                plotter = None  # drawn in this process, after the run
            session.start_sampling()
            baseline, baseline_reason = session.baseline(backend.synchronize)

            batches = make_batches(
                measured, cfg.batch, getattr(cfg.backend, "sort_by_length", False)
            )
            session.phase("warmup")
            backend.seed(cfg.seed)
            t0 = time.perf_counter()
            for batch in make_batches(warm, cfg.batch):
                backend.generate(batch)
            warmup_s = time.perf_counter() - t0

            backend.reset_peak_memory()
            windows: list[MeasuredWindow] = []
            contention: list[hostcpu.CpuContention] = []
            for i in range(1, cfg.repeats + 1):
                if i > 1 and cfg.repeat_gap_s:
                    session.phase("cooldown")
                    time.sleep(cfg.repeat_gap_s)
                cpu = hostcpu.CpuWindow(f"repeat-{i}", cfg.contention.threshold_cores)
                cpu.wait_quiet(cfg.contention, session.phase)
                cpu.start()
                windows.append(self._measure(backend, session, batches, i))
                contention.append(cpu.stop())
            policy = backend.thread_policy if isinstance(backend, hostcpu.SetsThreads) else None
            host = hostcpu.host_cpu(policy)
            peak, peak_what = backend.peak_memory()
            prefill = None
            if cfg.energy.prefill_split and session.hardware_meters:
                with session.window(
                    "prefill", backend.synchronize, meters=session.hardware_meters
                ) as pw:
                    for batch in batches:
                        backend.prefill(batch)
                prefill = (pw.readings, pw.duration_s)
            session.phase("flops")
            records = [r for w in windows for r in w.records]
            flops, flops_s = self._count_flops(backend, batches, windows[0].records, model.config)
            warnings = backend.warnings() + session.warnings + session.end_checks()
            if n_cut := sum(p.truncated for p in measured):
                warnings.append(
                    f"{n_cut} of {cfg.n} prompts truncated to max_input_tokens="
                    f"{cfg.max_input_tokens or 'null (model context - max_new_tokens)'}"
                )
            if set(warmup_idx) & set(measured_idx):
                warnings.append(
                    "warm-up reused measured prompts (the dataset has no others): a prompt cache "
                    "could make measured requests cheaper"
                )
            for w in windows:
                warnings += session.window_warnings(w.window)
            warnings += [text for c in contention if (text := hostcpu.contention_warning(c))]
        finally:
            meters.shutdown(wait=True)  # never leave the meters half-opened behind an error
            t_write = time.perf_counter()
            if backend is not None:
                backend.close()
            series = self.run_dir / TIMESERIES_FILE
            timeseries, unwritten = write_optional(series.name, lambda: session.close(series))
            if plotter is not None and sys.exc_info()[0] is not None:
                plotter.close()  # the run failed: no picture
        try:
            if timeseries and cfg.plots:
                unwritten = self._plot(self.run_dir / timeseries, plotter, windows, prefill)
        finally:
            if plotter is not None:
                plotter.close()
        write_s = time.perf_counter() - t_write
        warnings += [unwritten] if unwritten else []

        tokens = metrics.token_counts(records)
        window_s = sum(w.seconds for w in windows)
        energy_section = self._energy(
            session, windows, tokens, baseline, baseline_reason, prefill, timeseries
        )
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
            throughput=metrics.throughput(tokens, window_s),
            latency=metrics.latency(records),
            timing=TimingMetrics(
                model_load_s=load_s,
                warmup_s=warmup_s,
                measured_window_s=window_s,
                flops_pass_s=flops_s,
                startup_s=startup_s,
                write_s=write_s,
                job_s=before_run + time.perf_counter() - t_run,
            ),
            memory=MemoryMetrics(peak_bytes=peak, measured=peak_what),
            flops=flops,
            energy=energy_section,
            repeats=self._repeats(windows),
            requests=[
                metrics.request_metrics(r)
                for r in sorted(records, key=lambda r: (r.repeat, r.index))
            ],
            warnings=list(
                dict.fromkeys(warnings + self._checks(tokens.output, window_s, energy_section))
            ),
            environment=env,
            host_cpu=host,
            cpu_contention=contention,
            benchmark=benchmark_report(cfg, model, energy_section, tokens.requests),
        )

    def _plot(
        self,
        parquet: Path,
        plotter: PlotWorker | None,
        windows: list[MeasuredWindow],
        prefill: tuple[list[Reading], float] | None,
    ) -> str | None:
        """Draw ``timeseries.png`` beside the series (in ``plotter`` when given), the measured
        windows (and the prefill pass) shaded where their meter readings start and end; a failure
        costs the picture, not the run: its warning is returned."""
        from llem.runplot import write_run_plot

        metered = [(w.window.name, w.window.readings) for w in windows]
        metered += [("prefill", prefill[0])] if prefill else []
        spans = [(name, r.start_s, r.end_s) for name, readings in metered for r in readings]
        try:
            if plotter is not None:
                plotter.draw(parquet, parquet.with_name(TIMESERIES_PNG), spans)
            else:
                write_run_plot(parquet, parquet.with_name(TIMESERIES_PNG), spans)
        except Exception as exc:
            problem = f"{TIMESERIES_PNG} was not drawn ({exc}): the result is kept without it"
            log.warning("%s", problem)
            return problem
        return None

    def _measure(
        self, backend: Backend, session: EnergySession, batches: list[list[Prompt]], repeat: int
    ) -> MeasuredWindow:
        """One measured window: all batches back to back, between synchronised clock/meter reads."""
        show = not self.cfg.quiet and sys.stderr.isatty()
        records: list[RequestRecord] = []
        backend.seed(self.cfg.seed)
        with (
            _progress(self.cfg.n, show, repeat, self.cfg.repeats) as advance,
            session.window(f"repeat-{repeat}", backend.synchronize) as win,
        ):
            start = time.perf_counter()
            for batch in batches:
                records += backend.generate(batch)
                advance(len(batch))
            backend.synchronize()
            window_s = time.perf_counter() - start
        for r in records:
            r.repeat = repeat
        return MeasuredWindow(win, records, window_s)

    def _energy(
        self,
        session: EnergySession,
        windows: list[MeasuredWindow],
        tokens: TokenCounts,
        baseline: list[IdlePower],
        baseline_reason: str | None,
        prefill: tuple[list[Reading], float] | None,
        timeseries: str | None,
    ) -> EnergyMetrics:
        cc = next((m for m in session.meters if isinstance(m, CodeCarbonMeter)), None)
        carbon = cc.figures if cc is not None else None
        return energy_metrics(
            meters=[m.name for m in session.meters],
            windows=[(w.window.name, w.window.readings, w.seconds) for w in windows],
            output_tokens=tokens.output,
            requests=tokens.requests,
            baseline=baseline,
            baseline_reason=baseline_reason,
            reason_if_none=session.reason(),
            carbon=carbon,
            prefill=prefill,
            timeseries=timeseries,
        )

    def _repeats(self, windows: list[MeasuredWindow]) -> RepeatSummary:
        per = []
        for i, (win, recs, secs) in enumerate(windows, 1):
            tokens = metrics.token_counts(recs)
            tp = metrics.throughput(tokens, secs)
            lat = metrics.latency(recs)
            energy_j, _ = hardware_total(win.readings)
            q: dict[str, float | None] = {}
            for name in ("ttft", "itl", "e2e"):
                d = getattr(lat, f"{name}_ms")
                for p in ("p50", "p90", "p99"):
                    q[f"{name}_{p}_ms"] = getattr(d, p) if d else None
            per.append(
                RepeatMetrics(
                    repeat=i,
                    window_s=secs,
                    output_tokens=tokens.output,
                    output_tokens_per_s=tp.output_tokens_per_s,
                    total_tokens_per_s=tp.total_tokens_per_s,
                    energy_j=energy_j,
                    energy_per_output_token_j=energy_j / tokens.output
                    if energy_j is not None and tokens.output
                    else None,
                    **q,
                )
            )
        keys = [k for k in RepeatMetrics.model_fields if k not in {"repeat", "output_tokens"}]
        stats: dict[str, Interval | None] = {}
        for k in keys:
            values = [getattr(m, k) for m in per]
            stats[k] = summarize(values) if all(v is not None for v in values) else None
        return RepeatSummary(per_repeat=per, stats=stats)

    def _count_flops(
        self,
        backend: Backend,
        batches: list[list[Prompt]],
        records: list[RequestRecord],
        model_config: Mapping[str, object],
    ) -> tuple[FlopsMetrics, float | None]:
        steps = {r.index: r.output_tokens for r in records}
        if backend.pads_batches:  # a padded batch runs until its longest output is done
            shapes = [
                (len(b), max(p.input_tokens for p in b), max(steps[p.index] for p in b))
                for b in batches
            ]
        else:  # continuous batching: every request costs its own length
            shapes = [(1, p.input_tokens, steps[p.index]) for b in batches for p in b]
        analytic_all = analytic_flops(model_config, shapes)
        chosen: list[list[Prompt]] = []
        if not self.cfg.flops.enabled:
            count, flops_s = FlopCount(None, 0, 0, 0, [], "disabled", "flops.enabled=false"), None
        else:
            chosen = (
                batches[: self.cfg.flops.max_batches] if self.cfg.flops.max_batches else batches
            )
            t0 = time.perf_counter()
            count = backend.count_flops(chosen)
            flops_s = time.perf_counter() - t0
        analytic = analytic_flops(model_config, count.batches) if count.batches else None
        window_tokens = sum(steps.values())

        def per_tok(f: int | None) -> float | None:
            return f / count.output_tokens if f is not None and count.output_tokens else None

        reason = count.reason
        if analytic is None and count.batches:
            reason = (
                f"no closed-form FLOP formula for model_type {model_config.get('model_type')!r}"
            )
        return FlopsMetrics(
            counted=count.flops,
            analytic=analytic,
            counted_requests=count.requests,
            counted_output_tokens=count.output_tokens,
            counted_per_output_token=per_tok(count.flops),
            analytic_per_output_token=per_tok(analytic),
            analytic_window_total=analytic_all,
            window_per_output_token=analytic_all / window_tokens
            if analytic_all is not None and window_tokens
            else None,
            window_batches=len(batches),
            counted_batches=len(chosen),
            method=count.method,
            reason=reason,
        ), flops_s

    def _checks(
        self, output_tokens: int, window_s: float, energy_section: EnergyMetrics
    ) -> list[str]:
        out = []
        expected = self.cfg.n * self.cfg.repeats * self.cfg.max_new_tokens
        if output_tokens != expected and not self.cfg.stop_at_eos:
            out.append(
                f"expected {expected} output tokens with a fixed output length, got {output_tokens}"
            )
        per_window = window_s / self.cfg.repeats
        if short := quality.short_window(per_window):
            out.append(short)
        if energy_section.total_j is None:
            out.append(f"{ENERGY_NOT_MEASURED}{energy_section.reason}")
        return out


def _load(backend: Backend, cfg: ExperimentConfig) -> ModelRecord:
    """The backend's model, loaded; running out of memory is a :class:`RunFailed` naming the fix."""
    try:
        return backend.load()
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise RunFailed(
            f"model.name_or_path={cfg.model.name_or_path} does not fit in memory ({reason}): "
            "choose a smaller model, a smaller precision (precision=bf16), or more devices "
            "(backend.device_map=auto, backend.tensor_parallel_size)"
        ) from None
