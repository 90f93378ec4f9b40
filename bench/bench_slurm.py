"""A 50-job llem study through a real SLURM cluster vs llem's local launcher, measured in one run.

    scripts/slurm_local.sh up && python bench/bench_slurm.py [--jobs 50] [--cpus-per-task 1]

The same sweep (built-in tiny model, ``seed=range(0,jobs)``, n=2, 2 new tokens, no meters, no FLOP
pass) runs twice as real ``llem -m`` commands, in a fresh temporary folder:

- ``hydra/launcher=llem_slurm``: every job a SLURM array task (one ``sbatch``), as many at once as
  the node's CPUs allow (``cpus_per_task`` each);
- ``hydra/launcher=llem`` (the default): every job a fresh process on this machine, one at a time
  (no GPU).

Reported: each study's wall time and jobs ok; the mean job duration (``result.json`` started_at ->
ended_at: what the harness measures, model load included); the per-job overhead outside the job,
``(wall x jobs at once - sum of job durations) / jobs``; and the SLURM queue wait (submission -> the
job seen running by llem's poll, 0.2 s resolution) as llem prints it: its minimum is the dispatch
latency, its median includes waiting for a free CPU. A report, not a test: nothing is asserted;
exit 0, 1 when a study fails, 2 when no cluster is up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLEM = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "llem"
COMMON = (
    "n=2",
    "batch=1",
    "max_new_tokens=2",
    "warmup_batches=0",
    "flops.enabled=false",
    "energy=none",
    "quiet=true",
)


def run_study(workdir: Path, jobs: int, extra: list[str]) -> tuple[float, str, Path]:
    """(wall s, stdout, sweep dir) of one ``llem -m seed=range(0,jobs)`` study."""
    sweep = workdir / ("slurm" if extra else "local")
    args = [str(LLEM), "-m", f"seed=range(0,{jobs})", *COMMON, f"hydra.sweep.dir={sweep}", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        timeout=3600,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        raise SystemExit(1)
    return wall, proc.stdout, sweep


def job_durations(sweep: Path) -> list[float]:
    """Each job's started_at -> ended_at (s) from its result.json."""
    out = []
    for path in sweep.glob("*/result.json"):
        data = json.loads(path.read_text())
        start = datetime.fromisoformat(data["started_at"])
        out.append((datetime.fromisoformat(data["ended_at"]) - start).total_seconds())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--cpus-per-task", type=int, default=1)
    opts = ap.parse_args()
    status = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_local.sh"), "status"], check=False, timeout=60
    )
    if status.returncode != 0:
        print("no SLURM cluster up: run scripts/slurm_local.sh up (root) first")
        return 2
    slurm = [
        "hydra/launcher=llem_slurm",
        "hydra.launcher.gres=null",
        f"hydra.launcher.cpus_per_task={opts.cpus_per_task}",
        "hydra.launcher.mem_gb=1",
        f"hydra.launcher.array_parallelism={opts.jobs}",
        "hydra.launcher.poll_s=0.2",
    ]
    cpus = int(
        subprocess.run(
            ["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.split()[0]
    )
    queue = [float("nan")] * 3
    with tempfile.TemporaryDirectory(prefix="llem-bench-slurm-") as tmp:
        workdir = Path(tmp)
        results: dict[str, tuple[float, int, list[float]]] = {}
        for name, extra in (("llem_slurm", slurm), ("llem (local)", [])):
            wall, out, sweep = run_study(workdir, opts.jobs, extra)
            summary = json.loads((sweep / "study_summary.json").read_text())
            durations = job_durations(sweep)
            results[name] = (wall, summary["counts"]["ok"], durations)
            wait = re.search(r"queue wait .*: min ([\d.]+) s, median ([\d.]+) s, max ([\d.]+)", out)
            if wait:
                queue = [float(x) for x in wait.groups()]
    print(f"{opts.jobs}-job study, tiny model, n=2, 2 new tokens, energy=none, no FLOP pass")
    widths = (-14, 7, 8, 4, 11, 15)
    header = ("launcher", "at once", "wall s", "ok", "mean job s", "overhead/job s")
    print(
        " ".join(
            f"{h:{'<' if w < 0 else '>'}{abs(w)}}" for h, w in zip(header, widths, strict=True)
        )
    )
    for name, slots in (("llem_slurm", cpus // opts.cpus_per_task), ("llem (local)", 1)):
        wall, ok, durations = results[name]
        overhead = (wall * slots - sum(durations)) / opts.jobs
        print(
            f"{name:<14} {slots:>7} {wall:>8.1f} {ok:>4} {statistics.mean(durations):>11.2f} "
            f"{overhead:>15.2f}"
        )
    print(
        f"SLURM queue wait (submission -> running): min {queue[0]:.2f} s, median {queue[1]:.2f} s, "
        f"max {queue[2]:.2f} s"
    )
    ratio = results["llem_slurm"][0] / results["llem (local)"][0]
    print(f"wall, SLURM / local: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
