"""How much does llem's time-series sampler cost?

Two measurements, one process:

1. Sampler CPU cost: :class:`llem.energy.sampler.Sampler` (period ``--interval``, default 0.1 s)
   samples a simulated NVML (``tests/fake_nvml.py``, ``--gpus`` GPUs) in its own thread for
   ``--seconds`` while the main thread sleeps. Reported: the CPU time of the sampler thread as % of
   one core (goal < 1 %), samples taken and rows recorded, the achieved period, the CPU cost of one
   sample (process row and per GPU) and the memory the kept rows take. The simulated NVML answers
   from Python without a driver call, so this is llem's own cost only; a real driver adds its call
   latency to every GPU query.
2. Throughput with the sampler thread on vs off: llem's :class:`~llem.harness.Harness` on the tiny
   model (built-in prompts, no FLOP pass, no idle baseline), output tokens/s with the sampler thread
   running (ON) and with ``Sampler.start`` replaced by a no-op (OFF). ``energy=none`` still creates
   a sampler and the harness still starts it (it records the process rows: CPU use, RSS), so the
   only way to switch the thread off is the no-op; everything else (phase-change samples on the main
   thread, the parquet write after the window) is identical. ``--harness-gpus K`` runs both with
   ``energy=nvml`` on K simulated GPUs instead, so the thread also reads GPU rows. Runs alternate
   (ON first on even repeats, OFF first on odd); the median of ``--repeats`` is reported with the
   ratio ON/OFF (goal >= 0.98).

A report, not a test: nothing is asserted and the exit code is 0.

    python bench/bench_sampler.py [--seconds 60] [--interval 0.1] [--gpus 1] [--n 64] [--repeats 3]
                                  [--batches 1,8] [--harness-gpus 0] [--real-nvml] [--only
                                  cpu|throughput]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(
        0, str(ROOT)
    )  # for tests.fake_nvml (the simulated NVML shared with the test suite)

CPU_GOAL_PCT = 1.0  # sampler thread CPU, % of one core
RATIO_GOAL = 0.98  # throughput with the sampler thread / without
MAX_NEW_TOKENS = 32
WARMUP_BATCHES = 2


def fake_nvml(n_gpus: int):
    """A simulated pynvml with ``n_gpus`` H200s at a constant 300 W (initialised)."""
    from tests.fake_nvml import FakeGpu, make_nvml

    nv = make_nvml(
        [
            FakeGpu(f"GPU-{i:08x}-0000-0000-0000-bench0000000", trace=[(0.0, 300.0)])
            for i in range(n_gpus)
        ]
    )
    nv.nvmlInit()
    return nv


def fake_gpus(nv, n_gpus: int):
    from llem.energy.nvml import visible_gpus

    # every simulated GPU, whatever CUDA_VISIBLE_DEVICES says in this shell (visible_gpus(nv, None)
    # reads it)
    gpus, _ = visible_gpus(nv, cuda_visible=",".join(str(i) for i in range(n_gpus)))
    assert len(gpus) == n_gpus
    return gpus


# --------------------------------------------------------------------------- 1. sampler CPU cost


def thread_cpu_s(thread) -> float | None:
    """CPU seconds (user + system) ``thread`` has used since it started, read from ANOTHER thread.

    ``time.thread_time()`` and ``getrusage(RUSAGE_THREAD)`` only measure the calling thread, and
    ``time.process_time()`` sums every thread of the process. The POSIX per-thread CPU clock
    (``pthread_getcpuclockid`` + ``clock_gettime``) measures exactly the sampler thread from the
    main thread, with ns resolution. It must be read while the thread is alive (the clock id dies
    with it).
    """
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (
        AttributeError,
        OSError,
    ):  # not Linux/Unix: the caller falls back to the process CPU delta
        return None


def rows_bytes(rows: list[dict]) -> int:
    """Approximate memory of the kept rows (dicts, values, list; shared small objects counted)."""
    return sys.getsizeof(rows) + sum(
        sys.getsizeof(r) + sum(sys.getsizeof(v) for v in r.values()) for r in rows
    )


def per_sample_cpu_us(interval_s: float, nv, gpus, calls: int) -> float:
    """Mean CPU µs of one ``sample_once`` in this thread (no sampler thread running)."""
    from llem.energy.sampler import Sampler

    s = Sampler(interval_s, nv, gpus)
    s.sample_once()  # the first one has no CPU-delta yet
    t0 = time.thread_time()
    for _ in range(calls):
        s.sample_once()
    return (time.thread_time() - t0) / calls * 1e6


def sampler_cpu(seconds: float, interval_s: float, n_gpus: int, real_nvml: bool) -> None:
    from llem.energy.nvml import load_nvml, visible_gpus
    from llem.energy.sampler import Sampler

    if real_nvml:
        nv, why = load_nvml()
        if nv is None:
            print(f"sampler CPU cost: skipped, --real-nvml asked for and {why}")
            return
        gpus, _ = visible_gpus(nv)  # the GPUs this process may use (CUDA_VISIBLE_DEVICES)
        n_gpus = len(gpus)
        source = (
            f"the REAL NVML (driver {nv.nvmlSystemGetDriverVersion()}), {n_gpus} GPU(s): "
            f"{gpus[0].name}"
            if gpus
            else "the REAL NVML, no GPU visible"
        )
    else:
        nv = fake_nvml(n_gpus)
        gpus = fake_gpus(nv, n_gpus)
        source = f"a SIMULATED NVML with {n_gpus} GPU(s)"
    print(
        f"sampler CPU cost: Sampler(interval_s={interval_s}) on {source} for {seconds:g} s, main "
        "thread asleep"
    )
    if not real_nvml:
        print(
            "  note: the simulated NVML answers from Python with no driver-call latency; real "
            "NVML queries "
            "(6 per GPU per sample) add their driver time to the thread's wall and CPU time (see "
            "--real-nvml)"
        )

    # the per-sample cost first (a few thousand calls, about a second), then the thread for the
    # window
    calls = 2000
    proc_us = per_sample_cpu_us(interval_s, None, [], calls)
    all_us = per_sample_cpu_us(interval_s, nv, gpus, calls)
    gc.collect()

    sampler = Sampler(interval_s, nv, gpus)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    time.sleep(seconds)
    thread_s = thread_cpu_s(sampler._thread)  # before stop(): the thread must still be alive
    cpu1, wall1 = time.process_time(), time.perf_counter()
    sampler.stop()
    nv.nvmlShutdown()  # load_nvml's nvmlInit, or fake_nvml's

    wall = wall1 - wall0
    process_s = cpu1 - cpu0  # every thread: the sampler, the sleeping main thread, anything else
    samples = sum(1 for r in sampler.rows if r["device"] == "process")
    expected = int(wall / interval_s) + 1
    times = [r["time_unix_s"] for r in sampler.rows if r["device"] == "process"]
    period = (times[-1] - times[0]) / (samples - 1) if samples > 1 else float("nan")
    pct = 100.0 * (thread_s if thread_s is not None else process_s) / wall
    size = rows_bytes(sampler.rows)
    per_hour = size / samples * 3600 / interval_s if samples else 0.0

    print(
        f"  window {wall:.2f} s wall   samples {samples} (at a {interval_s:g} s period: "
        f"{expected})   "
        f"rows {len(sampler.rows)} ({1 + n_gpus} per sample)   achieved period "
        f"{period * 1000:.1f} ms"
    )
    print(
        f"  CPU per sample (main thread, {calls} calls): process row {proc_us:.0f} µs, "
        f"all {1 + n_gpus} rows {all_us:.0f} µs (+{(all_us - proc_us) / max(n_gpus, 1):.0f} µs "
        "per GPU)"
    )
    print(
        f"  rows kept in memory: ~{size / 1024:.0f} KiB ({size / max(len(sampler.rows), 1):.0f} "
        "B/row), "
        f"~{per_hour / 2**20:.0f} MiB per hour of sampling at this period and GPU count"
    )
    print()
    method = (
        "sampler thread CPU clock"
        if thread_s is not None
        else "process CPU delta (no per-thread clock)"
    )
    print(f"{'what':<34}  {'CPU s':>7}  {'% of one core':>13}  goal < {CPU_GOAL_PCT:g} %")
    print(
        f"{method:<34}  {thread_s if thread_s is not None else process_s:>7.3f}  {pct:>13.3f}  "
        f"{'met' if pct < CPU_GOAL_PCT else 'NOT met'}"
    )
    print(
        f"{'(cross-check) whole process':<34}  {process_s:>7.3f}  {100.0 * process_s / wall:>13.3f}"
    )


# ----------------------------------------------------------------- 2. throughput ON vs OFF


def experiment_config(n: int, batch: int, output_dir: str, meter: str):
    """The packaged experiment (pytorch, tiny, builtin), this benchmark's settings, baseline off."""
    from llem.preflight import experiment

    return experiment(
        f"n={n}",
        f"batch={batch}",
        f"max_new_tokens={MAX_NEW_TOKENS}",
        f"energy={meter}",
        "energy.codecarbon=false",
        "energy.baseline.enabled=false",
        f"warmup_batches={WARMUP_BATCHES}",
        "flops.enabled=false",
        f"output_dir={output_dir}",
        "quiet=true",
    )


@contextmanager
def sampler_thread(on: bool) -> Iterator[None]:
    """OFF: ``Sampler.start`` does nothing: no sampling thread (samples at phase changes remain)."""
    from llem.energy.sampler import Sampler

    if on:
        yield
        return
    original = Sampler.start
    Sampler.start = lambda self: None
    try:
        yield
    finally:
        Sampler.start = original


@contextmanager
def simulated_pynvml(n_gpus: int) -> Iterator[None]:
    """With ``n_gpus`` > 0, ``import pynvml`` inside llem gets the simulated NVML (as tests do)."""
    if n_gpus == 0:
        yield
        return
    from tests.fake_nvml import FakeGpu, make_nvml

    nv = make_nvml(
        [
            FakeGpu(f"GPU-{i:08x}-0000-0000-0000-bench0000000", trace=[(0.0, 300.0)], persistence=1)
            for i in range(n_gpus)
        ]
    )
    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = nv
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = saved


def run_harness(cfg, tmp_root: str, on: bool) -> tuple[float, int, int]:
    """(output tokens/s, output tokens, time-series rows in the measured window) of one run."""
    import pyarrow.parquet as pq

    from llem.harness import Harness

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=tmp_root))
    with sampler_thread(on):
        result = Harness(cfg, run_dir).run()
    window_rows = 0
    if result.energy.timeseries:
        phases = (
            pq.read_table(run_dir / result.energy.timeseries, columns=["phase"])
            .column("phase")
            .to_pylist()
        )
        window_rows = sum(p == "repeat-1" for p in phases)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result.throughput.output_tokens_per_s, result.tokens.output, window_rows


def throughput(
    n: int, repeats: int, batch_sizes: list[int], harness_gpus: int, tmp_root: str
) -> None:
    import logging

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("llem").setLevel(logging.WARNING)
    meter = "nvml" if harness_gpus else "none"
    what = (
        f"energy=nvml on {harness_gpus} SIMULATED GPU(s)"
        if harness_gpus
        else "energy=none (process rows only)"
    )

    print(
        "throughput, sampler thread ON vs OFF (OFF = Sampler.start patched to a no-op): "
        "tiny-llama, builtin "
        f"prompts, n={n}, max_new_tokens={MAX_NEW_TOKENS}, warmup_batches={WARMUP_BATCHES}, "
        f"{what}, "
        "sample_interval_ms=100, baseline off, flops off, torch "
        f"threads={torch.get_num_threads()}, "
        f"repeats={repeats} (median shown)"
    )
    rows = []
    with simulated_pynvml(harness_gpus):
        for batch in batch_sizes:
            cfg = experiment_config(n, batch, tmp_root, meter)
            expected = n * MAX_NEW_TOKENS
            runs: dict[bool, list[float]] = {True: [], False: []}
            window_rows: dict[bool, list[int]] = {True: [], False: []}
            notes = set()
            for r in range(repeats):
                for on in (True, False) if r % 2 == 0 else (False, True):
                    gc.collect()
                    tps, tokens, wrows = run_harness(cfg, tmp_root, on)
                    runs[on].append(tps)
                    window_rows[on].append(wrows)
                    if tokens != expected:
                        notes.add(
                            f"{'ON' if on else 'OFF'}: {tokens} output tokens, expected {expected}"
                        )
            on_med, off_med = statistics.median(runs[True]), statistics.median(runs[False])
            paired = [
                a / b for a, b in zip(runs[True], runs[False], strict=True)
            ]  # same repeat: same conditions
            rows.append(
                (
                    batch,
                    on_med,
                    off_med,
                    on_med / off_med,
                    statistics.median(paired),
                    min(paired),
                    max(paired),
                )
            )
            print(
                f"  batch={batch}  ON runs: {', '.join(f'{x:.0f}' for x in runs[True])}  "
                f"OFF runs: {', '.join(f'{x:.0f}' for x in runs[False])} tok/s   time-series rows "
                "in the "
                f"window ON: {', '.join(map(str, window_rows[True]))}  "
                f"OFF: {', '.join(map(str, window_rows[False]))}"
            )
            for note in sorted(notes):
                print(f"    note: {note}")

    print()
    print(
        f"{'batch':>5}  {'ON tok/s':>9}  {'OFF tok/s':>9}  {'ON/OFF':>7}  goal >= {RATIO_GOAL}   "
        f"per-repeat ON/OFF: median [min, max]"
    )
    for batch, on_tps, off_tps, ratio, p_med, p_min, p_max in rows:
        verdict = "met    " if ratio >= RATIO_GOAL else "NOT met"
        print(
            f"{batch:>5}  {on_tps:>9.1f}  {off_tps:>9.1f}  {ratio:>7.3f}  {verdict}         "
            f"{p_med:.3f} [{p_min:.3f}, {p_max:.3f}]"
        )
    print(
        "  ON/OFF is the ratio of the medians; a [min, max] range wider than the distance to 1 "
        "means the run-to-run"
    )
    print(
        "  noise of this machine is larger than the sampler's effect: raise --repeats (and --n) "
        "to resolve it"
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=60.0, help="sampler window of part 1 (default 60)"
    )
    ap.add_argument(
        "--interval", type=float, default=0.1, help="sampler period in s for part 1 (default 0.1)"
    )
    ap.add_argument(
        "--gpus", type=int, default=1, help="simulated GPUs sampled in part 1 (default 1; try 8)"
    )
    ap.add_argument(
        "--n", type=int, default=64, help="measured prompts per Harness run (default 64)"
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="Harness runs ON and OFF each; the median is shown"
    )
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument(
        "--harness-gpus",
        type=int,
        default=0,
        help="part 2 with energy=nvml on this many simulated GPUs (default 0: energy=none)",
    )
    ap.add_argument(
        "--real-nvml",
        action="store_true",
        help="part 1 samples the installed pynvml's GPUs (needs an NVIDIA driver) "
        "instead of --gpus "
        "simulated ones",
    )
    ap.add_argument("--only", choices=("cpu", "throughput"), help="run one part only")
    args = ap.parse_args(argv)
    if args.gpus < 1 or args.harness_gpus < 0 or args.seconds <= 0 or args.interval <= 0:
        ap.error("--gpus >= 1, --harness-gpus >= 0, --seconds > 0 and --interval > 0")
    batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    print()

    if args.only in (None, "cpu"):
        # before torch is imported: no other threads in the process
        sampler_cpu(args.seconds, args.interval, args.gpus, args.real_nvml)
        print()
    if args.only in (None, "throughput"):
        tmp_root = tempfile.mkdtemp(prefix="llem-bench-sampler-")
        try:
            throughput(args.n, args.repeats, batch_sizes, args.harness_gpus, tmp_root)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
