"""The experiment lifecycle, owned in one place.

environment snapshot -> prompts -> backend (tokenise, context check) -> load model (timed) -> warm-up
(excluded) -> measured window over the prompts in batches -> FLOP-counting pass (separate, untimed) -> result.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from llem import __version__, energy, environment, metrics
from llem.backends import load_backend
from llem.backends.base import Backend, FlopCount, Prompt, RequestRecord
from llem.config import ExperimentConfig
from llem.datasets import load_prompts
from llem.flops import analytic_flops
from llem.result import DatasetRecord, FlopsMetrics, MemoryMetrics, Result, TimingMetrics

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_batches(prompts: list[Prompt], size: int, sort_by_length: bool = False) -> list[list[Prompt]]:
    """Consecutive groups of ``size`` prompts (the last may be smaller); optionally length-sorted first."""
    ordered = sorted(prompts, key=lambda p: p.input_tokens) if sort_by_length else prompts
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("measuring"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"),
               TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not enabled) as bar:
        task = bar.add_task("measure", total=total)
        yield lambda n: bar.advance(task, n)


class Harness:
    """Runs one experiment and returns its :class:`Result` (the caller writes it)."""

    def __init__(self, config: ExperimentConfig, overrides: list[str] | None = None) -> None:
        self.cfg = config
        self.overrides = overrides or []

    def run(self) -> Result:
        cfg = self.cfg
        started = _now()
        env = environment.snapshot(cfg.record_hostname)
        n_warmup = cfg.warmup_batches * cfg.batch
        prompt_set, measured_idx, warmup_idx = load_prompts(cfg.dataset, cfg.n, n_warmup)
        backend = load_backend(cfg)
        try:
            log.info("tokenising %d prompts (%s)", cfg.n, prompt_set.source)
            prompts = backend.prepare(prompt_set, measured_idx + warmup_idx)
            measured, warm = prompts[:cfg.n], prompts[cfg.n:]
            log.info("loading %s", cfg.model.name_or_path)
            t0 = time.perf_counter()
            model = backend.load()
            backend.synchronize()
            load_s = time.perf_counter() - t0

            batches = make_batches(measured, cfg.batch, cfg.backend.sort_by_length)
            backend.seed(cfg.seed)
            t0 = time.perf_counter()
            for batch in make_batches(warm, cfg.batch):
                backend.generate(batch)
            warmup_s = time.perf_counter() - t0

            records, window_s = self._measure(backend, batches)
            peak, peak_what = backend.peak_memory()
            flops, flops_s = self._count_flops(backend, batches, records, model.config)
            warnings = backend.warnings()
        finally:
            backend.close()

        tokens = metrics.token_counts(records)
        return Result(
            llem_version=__version__, experiment_id=str(uuid.uuid4()), config_hash=cfg.config_hash(),
            started_at=started, ended_at=_now(), config=cfg.model_dump(mode="json"), overrides=self.overrides,
            model=model,
            dataset=DatasetRecord(source=prompt_set.source, measured_indices=measured_idx,
                                  warmup_indices=warmup_idx, truncated_prompts=sum(p.truncated for p in measured)),
            tokens=tokens, throughput=metrics.throughput(tokens, window_s), latency=metrics.latency(records),
            timing=TimingMetrics(model_load_s=load_s, warmup_s=warmup_s, measured_window_s=window_s,
                                 flops_pass_s=flops_s),
            memory=MemoryMetrics(peak_bytes=peak, measured=peak_what),
            flops=flops, energy=energy.unmeasured(cfg.energy),
            requests=[metrics.request_metrics(r) for r in sorted(records, key=lambda r: r.index)],
            warnings=warnings + self._checks(tokens.output, window_s), environment=env,
        )

    def _measure(self, backend: Backend, batches: list[list[Prompt]]) -> tuple[list[RequestRecord], float]:
        """The measured window: every batch, back to back, between two synchronised clock reads."""
        show = not self.cfg.quiet and sys.stderr.isatty()
        records: list[RequestRecord] = []
        backend.seed(self.cfg.seed)
        backend.reset_peak_memory()
        with _progress(self.cfg.n, show) as advance:
            backend.synchronize()
            start = time.perf_counter()
            for batch in batches:
                records += backend.generate(batch)
                advance(len(batch))
            backend.synchronize()
            window_s = time.perf_counter() - start
        return records, window_s

    def _count_flops(self, backend: Backend, batches: list[list[Prompt]], records: list[RequestRecord],
                     model_config: dict) -> tuple[FlopsMetrics, float | None]:
        steps = {r.index: r.output_tokens for r in records}  # a batch runs until its longest output is done
        analytic_all = analytic_flops(model_config, [
            (len(b), max(p.input_tokens for p in b), max(steps[p.index] for p in b)) for b in batches
        ])
        if not self.cfg.flops.enabled:
            count, flops_s = FlopCount(None, 0, 0, 0, [], "disabled", "flops.enabled=false"), None
        else:
            chosen = batches[: self.cfg.flops.max_batches] if self.cfg.flops.max_batches else batches
            t0 = time.perf_counter()
            count = backend.count_flops(chosen)
            flops_s = time.perf_counter() - t0
        analytic = analytic_flops(model_config, count.batches) if count.batches else None

        def per_tok(f: int | None) -> float | None:
            return f / count.output_tokens if f is not None and count.output_tokens else None

        reason = count.reason
        if analytic is None and count.batches:
            reason = f"no closed-form FLOP formula for model_type {model_config.get('model_type')!r}"
        return FlopsMetrics(
            counted=count.flops, analytic=analytic, counted_requests=count.requests,
            counted_output_tokens=count.output_tokens, counted_per_output_token=per_tok(count.flops),
            analytic_per_output_token=per_tok(analytic), analytic_window_total=analytic_all,
            method=count.method, reason=reason,
        ), flops_s

    def _checks(self, output_tokens: int, window_s: float) -> list[str]:
        out = []
        if output_tokens != self.cfg.n * self.cfg.max_new_tokens and not self.cfg.stop_at_eos:
            out.append(f"expected {self.cfg.n * self.cfg.max_new_tokens} output tokens with a fixed output "
                       f"length, got {output_tokens}")
        if window_s < 5:
            out.append(f"measured window is short ({window_s:.2f} s < 5 s): timings are noisy and energy "
                       "counters (100 ms updates) would carry large errors; raise n")
        return out
