"""How long does ``timeseries.png`` take for a 10-minute run's series?

Writes a synthetic ``timeseries.parquet`` shaped like the sampler's (10 minutes at 100 ms: a GPU, a
CPU package and llem's process row per sample; baseline, warm-up, three measured repeats, FLOP
pass) and times :func:`llem.runplot.write_run_plot` on it (matplotlib already imported, as in a
run). Goal: <= 1 s. A report: the exit code is 0.

    python bench/bench_runplot.py [--minutes 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

GOAL_S = 1.0
COLUMNS = (
    "time_unix_s",
    "phase",
    "device",
    "power_w",
    "sm_util_pct",
    "cpu_util_pct",
    "rss_bytes",
    "memory_used_bytes",
)


def _phase(i: int, n: int) -> str:
    if i < n // 40:
        return "baseline"
    if i < n // 20:
        return "warmup"
    if i < n - n // 20:
        return f"repeat-{1 + 3 * (i - n // 20) // (n - n // 10)}"
    return "flops"


def series(path: Path, minutes: float) -> int:
    """Write the synthetic series to ``path``; returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = int(minutes * 600)
    cols: dict[str, list[object]] = {k: [] for k in COLUMNS}
    for i in range(n):
        for dev in ("gpu0", "cpu-package-0", "process"):
            values = (
                1.7e9 + i * 0.1,
                _phase(i, n),
                dev,
                None if dev == "process" else 100.0 + i % 50,
                90.0 if dev == "gpu0" else None,
                100.0 if dev == "process" else None,
                5e8 if dev == "process" else None,
                2e10 if dev == "gpu0" else None,
            )
            for k, v in zip(COLUMNS, values, strict=True):
                cols[k].append(v)
    pq.write_table(pa.table(cols), path)
    return 3 * n


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # imported once, as in a run

    from llem.runplot import write_run_plot

    with tempfile.TemporaryDirectory(prefix="llem-bench-runplot-") as tmp:
        parquet = Path(tmp) / "timeseries.parquet"
        rows = series(parquet, args.minutes)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            write_run_plot(parquet, Path(tmp) / "timeseries.png")
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    runs = ", ".join(f"{t:.2f}" for t in times)
    verdict = "met" if median <= GOAL_S else "NOT met"
    print(f"{rows} rows ({args.minutes:g} min): median {median:.2f} s (runs: {runs} s)")
    print(f"goal <= {GOAL_S:g} s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
