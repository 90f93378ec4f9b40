"""How long the study summary takes to rebuild for a large sweep (goal: 10,000 jobs in <= 2 s, png
excluded).

    python bench/bench_summary.py [--jobs 10000] [--n 100] [--keep DIR]

Runs the real ``llem`` once (tiny model, ``n`` prompts) for a realistic ``result.json``, writes
``--jobs`` synthetic job folders (``.hydra/overrides.yaml`` + a copy of that result with varied
metrics, energy filled in, a third with 3 repeats and confidence intervals), then times
``write_summary``:

- cold: no previous ``study_summary.json`` (every ``result.json`` read and parsed);
- warm: nothing changed since the last rebuild (metrics reused by (path, mtime_ns, size));
- one new result: one job finished since the last rebuild (what a job-end rebuild does);
- with study.json: the same with llem's launcher plan present;
- png: the plot alone.

Files come from the page cache (the folders were just written). A report: the exit code is 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llem.records import ERROR_FILE, RESULT_FILE, STUDY_FILE
from llem.stats import LOG_T
from llem.study.plot import write_plot
from llem.study.summary import PARETO_PNG, SUMMARY_JSON, build_summary, write_summary

GOAL_S = 2.0


def real_result(n: int, work: Path) -> dict:
    llem = Path(sys.executable).with_name("llem")
    cmd = [
        str(llem),
        f"n={n}",
        "batch=10",
        "max_new_tokens=8",
        "quiet=true",
        "energy=none",
        "repeats=1",
        f"output_dir={work / 'results'}",
    ]
    t0 = time.perf_counter()
    subprocess.run(
        cmd, cwd=work, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    path = next((work / "results").glob("*/result.json"))
    print(
        f"template: {' '.join(cmd[1:])} ({time.perf_counter() - t0:.1f} s), "
        f"result.json {path.stat().st_size / 1024:.1f} KiB, {n} requests"
    )
    return json.loads(path.read_text())


def vary(template: dict, i: int, batch: int, rng: random.Random) -> dict:
    """A copy with plausible metrics: throughput grows with batch, energy per token falls, noise on
    both."""
    data = copy.deepcopy(template)
    scale = (batch**0.7) * rng.uniform(0.9, 1.1)
    tp = data["throughput"]
    for key in tp:
        tp[key] *= scale
    out_tokens = data["tokens"]["output"]
    window = out_tokens / tp["output_tokens_per_s"]
    data["timing"]["measured_window_s"] = window
    joules = window * rng.uniform(150, 300)
    e = data["energy"]
    e.update(
        meters=["nvml"],
        covers="GPU board",
        method="counter delta",
        total_j=joules,
        gpu_j=joules,
        per_output_token_j=joules / out_tokens,
        per_request_j=joules / data["tokens"]["requests"],
        wh_per_1k_requests=joules / data["tokens"]["requests"] / 3.6,
        average_power_w=joules / window,
        output_tokens_per_j=out_tokens / joules,
        window_s=window,
        reason=None,
    )
    data["overrides"] = [f"batch={batch}", f"seed={i}", "n=100"]
    data["config_hash"] = f"{i:016x}"
    if i % 3 == 0:  # three repeats with confidence intervals
        per = data["repeats"]["per_repeat"][0]
        data["repeats"]["per_repeat"] = [dict(per, repeat=r) for r in (1, 2, 3)]
        for name, value in (
            ("output_tokens_per_s", tp["output_tokens_per_s"]),
            ("energy_per_output_token_j", e["per_output_token_j"]),
        ):
            data["repeats"]["stats"][name] = {
                "n": 3,
                "mean": value,
                "std": value * 0.02,
                "point": value,
                "estimate": "geometric mean",
                "method": LOG_T,
                "ci95_low": value * 0.95,
                "ci95_high": value * 1.05,
                "reason": None,
            }
    return data


def make_sweep(root: Path, template: dict, jobs: int) -> Path:
    sweep = root / "study_bench"
    sweep.mkdir(parents=True)
    rng = random.Random(0)
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    t0 = time.perf_counter()
    for i in range(jobs):
        batch = batches[i % len(batches)]
        folder = sweep / f"{i}_tiny-llama_pytorch"
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- batch={batch}\n- seed={i}\n- n=100\n")
        if i % 500 == 7:
            (folder / ERROR_FILE).write_text(
                json.dumps(
                    {
                        "status": "failed",
                        "error": "RuntimeError: CUDA out of memory",
                        "exit_code": 1,
                        "overrides": [f"batch={batch}", f"seed={i}", "n=100"],
                        "ended_at": "2026-01-01T00:00:00+00:00",
                    }
                )
            )
            continue
        (folder / RESULT_FILE).write_text(
            json.dumps(vary(template, i, batch, rng), indent=2) + "\n"
        )
    size = sum(p.stat().st_size for p in sweep.glob("*/result.json"))
    print(
        f"wrote {jobs} job folders in {time.perf_counter() - t0:.1f} s "
        f"({size / 2**20:.0f} MiB of result.json)"
    )
    return sweep


def timed(fn, repeats: int = 3) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument(
        "--n", type=int, default=100, help="prompts in the template run (result.json size)"
    )
    ap.add_argument("--keep", type=Path, help="build the sweep here and keep it")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="llem-bench-summary-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        template = real_result(args.n, root)
        sweep = make_sweep(root, template, args.jobs)
        summary = sweep / SUMMARY_JSON

        def cold() -> None:
            summary.unlink(missing_ok=True)
            write_summary(sweep, plot=False)

        def one_new() -> None:
            folder = sweep / "1_tiny-llama_pytorch"
            (folder / RESULT_FILE).touch()  # new mtime: re-read
            write_summary(sweep, plot=False)

        rows: list[tuple[str, float, list[float]]] = []
        rows.append(("cold (no previous summary)", *timed(cold)))
        write_summary(sweep, plot=False)
        rows.append(("warm (nothing changed)", *timed(lambda: write_summary(sweep, plot=False))))
        rows.append(("warm, one new result", *timed(one_new)))
        plan = [
            {
                "num": i,
                "subdir": f"{i}_tiny-llama_pytorch",
                "overrides": [],
                "config_hash": f"{i:016x}",
            }
            for i in range(args.jobs)
        ]
        (sweep / STUDY_FILE).write_text(
            json.dumps(
                {
                    "llem_version": "bench",
                    "created_at": "2026-01-01T00:00:00+00:00",
                    "sweep_dir": str(sweep),
                    "launcher": "llem",
                    "mode": "subprocess",
                    "jobs": plan,
                }
            )
        )
        rows.append(("cold with study.json", *timed(cold)))
        write_summary(sweep, plot=False)
        rows.append(("warm with study.json", *timed(lambda: write_summary(sweep, plot=False))))
        built = build_summary(sweep)
        meta = built.meta
        rows.append(
            (
                "png alone",
                *timed(lambda: write_plot(sweep / PARETO_PNG, built.rows, list(meta.swept))),
            )
        )

        print(
            f"\nstudy summary rebuild, {args.jobs} jobs ({meta.counts['ok']} ok, "
            f"{meta.counts['failed']} "
            f"failed), median of 3; goal <= {GOAL_S:.0f} s without the png"
        )
        for label, median, runs in rows:
            goal = "" if label == "png alone" else ("met" if median <= GOAL_S else "NOT met")
            print(
                f"  {label:<28} {median:6.2f} s  "
                f"(runs: {', '.join(f'{r:.2f}' for r in runs)})  {goal}"
            )
        sizes = {p.name: p.stat().st_size for p in sweep.glob("study_*")}
        print("  files: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(sizes.items())))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
