"""Same config twice, ``backend.num_threads`` unset: same thread count, comparable throughput?

Runs ``llem n=<n> energy=none`` twice in fresh processes with ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` removed from the environment, so the thread policy of :mod:`llem.hostcpu`
chooses (the physical cores in the affinity set). Prints, per run, the torch threads recorded in
``result.json`` (``host_cpu``), the rule that chose them, output tokens/s and the CPU other
processes took in the measured window; then whether the thread counts are equal and the
throughputs within 15% (the goal on an otherwise idle machine). A report: the exit code is 0.

    python bench/bench_threads.py [--n 32] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TOLERANCE = 0.15  # largest relative difference of output tok/s between the runs


def run_once(n: int, out: Path) -> dict[str, object]:
    """One ``llem`` run in a fresh process; the recorded threads, throughput and contention."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    llem = Path(sys.executable).with_name("llem")
    cmd = [str(llem), f"n={n}", "energy=none", "quiet=true", "plots=false", f"output_dir={out}"]
    subprocess.run(cmd, check=True, env=env, stdin=subprocess.DEVNULL)
    (path,) = out.rglob("result.json")
    r = json.loads(path.read_text())
    contention = r["cpu_contention"]
    return {
        "threads": r["host_cpu"]["torch_threads"],
        "rule": r["host_cpu"]["policy"]["rule"],
        "tok_s": r["throughput"]["output_tokens_per_s"],
        "other_cores": max((c["other_cores"] or 0.0) for c in contention),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="llem-bench-threads-") as tmp:
        for i in range(args.runs):
            runs.append(run_once(args.n, Path(tmp) / f"run{i}"))
            r = runs[-1]
            print(
                f"run {i + 1}: {r['threads']} threads ({r['rule']}), "
                f"{r['tok_s']:.1f} output tok/s, other processes {r['other_cores']:.2f} cores",
                flush=True,
            )
    speeds = [float(str(r["tok_s"])) for r in runs]
    spread = (max(speeds) - min(speeds)) / max(speeds)
    same = len({r["threads"] for r in runs}) == 1
    print(f"same thread count: {'yes' if same else 'NO'}")
    verdict = "met" if spread <= TOLERANCE else "NOT met"
    print(
        f"output tok/s spread {spread:.1%} (goal <= {TOLERANCE:.0%} on an idle machine): {verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
