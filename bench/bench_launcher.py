"""Per-job cost of ``hydra/launcher=llem`` beyond Hydra's basic launcher (goal: <= 0.6 s per job).

    python bench/bench_launcher.py [--jobs 10] [--repeats 3] [--workload trivial|tiny]

Runs the same sweep of a trivial Hydra app (``tests/apps/trivial_app.py``: writes one small json per
job, no model, no torch) as a subprocess, once per launcher and repeat, alternating the order:

- ``llem``: llem's launcher (the app's default): validates the plan, writes ``study.json``, runs
  each job in a fresh ``python -m llem.study.worker`` process and rebuilds the study summary after
  each job;
- ``basic``: ``hydra/launcher=basic``: every job in the sweeping process, one after another.

Wall time includes interpreter start-up, composition and the sweep. Per-job overhead is
``(median llem wall - median basic wall) / jobs``: the price of one fresh process (and summary
rebuild) per job, which llem pays so that GPU memory, NVML and CUDA state never leak from one job
into the next. The cost of the study summary itself for a large sweep (10,000 jobs) is measured by
``bench_summary.py``.

``--workload tiny`` runs llem's own study instead: ``llem -m seed=0..jobs-1`` on the built-in tiny
model (20 prompts, 32 tokens in / 32 out, batch 1, defaults otherwise); the llem launcher forks
each job from its pre-imported fork server, the basic launcher runs them all in the ``llem``
process, without the study-summary callback (``~hydra/callbacks``): the summaries llem's launcher
writes count as its overhead (goal: llem / basic wall <= 1.3). ``--fork false`` measures fresh
interpreters instead.

A report, not a test: nothing is asserted, the exit code is 0 (1 if a sweep itself fails).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tests" / "apps" / "trivial_app.py"
GOAL_S = 0.6
GOAL_RATIO = 1.3
TINY = ("n=20", "batch=1", "max_new_tokens=32", "max_input_tokens=32", "quiet=true")


def sweep_command(
    workload: str, launcher: str, jobs: int, sweep_dir: Path, fork: bool
) -> list[str]:
    if workload == "trivial":
        args = [sys.executable, str(APP), "-m", f"x=range(0,{jobs})"]
    else:
        llem = Path(sys.executable).with_name("llem")
        args = [str(llem), "-m", f"seed=range(0,{jobs})", *TINY, f"hydra.sweep.dir={sweep_dir}"]
    if launcher == "basic":
        args.append("hydra/launcher=basic")
        if workload == "tiny":  # the bare jobs: no study summary at all
            args.append("~hydra/callbacks")
    elif not fork:
        args.append("hydra.launcher.fork=false")
    return args


def run_sweep(args: list[str], launcher: str, jobs: int, sweep_dir: Path) -> float:
    """Wall time of one sweep (``args``) that must leave ``jobs`` finished jobs in ``sweep_dir``."""
    env = {**os.environ, "SWEEP_DIR": str(sweep_dir), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    wall = time.perf_counter() - t0
    done = len(list(sweep_dir.glob("*/done.json")) + list(sweep_dir.glob("*/result.json")))
    if proc.returncode != 0 or done != jobs:
        sys.stderr.write(
            f"{launcher} sweep failed (exit {proc.returncode}, {done}/{jobs} jobs done):\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n"
        )
        raise SystemExit(1)
    return wall


def child_start_s(repeats: int) -> float:
    """Median wall of an interpreter doing what every llem job process does before its task: start,
    run Hydra's plugin scan, import the worker."""
    code = (
        "from hydra.core.plugins import Plugins; Plugins.instance(); "
        "import hydra.core.utils, llem.study.worker, llem.resolvers"
    )
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--jobs", type=int, default=10, help="jobs per sweep")
    ap.add_argument("--repeats", type=int, default=3, help="sweeps per launcher (median reported)")
    ap.add_argument("--workload", choices=("trivial", "tiny"), default="trivial")
    ap.add_argument("--fork", choices=("true", "false"), default="true", help="llem: fork jobs")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="llem-bench-launcher-"))
    walls: dict[str, list[float]] = {"llem": [], "basic": []}
    try:
        for rep in range(args.repeats):
            order = ("llem", "basic") if rep % 2 == 0 else ("basic", "llem")
            for launcher in order:
                sweep = root / f"{launcher}-{rep}"
                argv = sweep_command(args.workload, launcher, args.jobs, sweep, args.fork == "true")
                walls[launcher].append(run_sweep(argv, launcher, args.jobs, sweep))
                shutil.rmtree(sweep, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    child = child_start_s(args.repeats)
    llem, basic = statistics.median(walls["llem"]), statistics.median(walls["basic"])
    per_job = (llem - basic) / args.jobs
    what = "trivial Hydra app (tests/apps/trivial_app.py)"
    if args.workload == "tiny":
        what = f"llem -m seed=... {' '.join(TINY)} (fork={args.fork})"
    print(
        f"{what}, {args.jobs}-job sweep, "
        f"{os.cpu_count()} CPUs, "
        f"median of {args.repeats} sweeps per launcher (order alternates)"
    )
    for name in ("llem", "basic"):
        runs = ", ".join(f"{w:.2f}" for w in walls[name])
        med = statistics.median(walls[name])
        print(
            f"  {name:<6} sweep wall {med:6.2f} s = {med / args.jobs:.3f} s/job   (runs: {runs} s)"
        )
    ratio = llem / basic
    print(
        f"  llem / basic wall ratio: {ratio:.2f}   goal <= {GOAL_RATIO}: "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}"
    )
    print(
        f"  llem per-job overhead beyond basic: {per_job:.3f} s/job   goal <= {GOAL_S} s/job: "
        f"{'met' if per_job <= GOAL_S else 'NOT met'}"
    )
    print(
        "  reference: a job process's start-up alone "
        "(interpreter + Hydra plugin scan + worker imports) "
        f"{child:.3f} s"
    )


if __name__ == "__main__":
    main()
