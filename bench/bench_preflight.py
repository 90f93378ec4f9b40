"""How long the pre-flight takes to validate a large sweep (goal: 10,000 jobs in <= 10 s on a
2-core machine), against Hydra's per-job composition measured in the same run.

    python bench/bench_preflight.py [--jobs 1000,10000] [--sample 50]

For each size, the sweep ``seed=range(0,J/10) dataset=builtin,synthetic batch=1,2,4,8,16 n=16``
(a group choice and plain keys) goes through:

- ``check``: the whole pre-flight of ``llem -m ...`` (composition, validation, the checks of each
  job's model, dataset, meter and output folder; ``hydra.launcher.fork=false``, so no fork server);
- ``fast``: :func:`llem.preflight.compose_jobs` alone (one composition per dataset);
- ``per job``: ``compose_jobs(per_job=True)`` on ``2 x --sample`` jobs of the same kind, the
  seconds per job, and that rate times the sweep's size (composing 10,000 jobs one by one takes
  tens of minutes, so it is extrapolated).

The ratio is per-job time (extrapolated) / fast time. A report: the exit code is 0.
"""

from __future__ import annotations

import argparse
import os
import time

GOAL_S = 10.0
GOAL_JOBS = 10_000


def sweep(jobs: int, extra: tuple[str, ...] = ()) -> list[str]:
    seeds = max(1, jobs // 10)
    return [
        "-m",
        f"seed=range(0,{seeds})",
        "dataset=builtin,synthetic",
        "batch=1,2,4,8,16",
        "n=16",
        *extra,
    ]


def timed(fn: object) -> float:
    assert callable(fn)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1000,10000")
    parser.add_argument("--sample", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from llem.preflight import check, compose_jobs, parse

    compose_jobs(parse(["n=4"]))  # imports and Hydra's first composition, outside the timings
    sample = parse(["-m", f"seed=range(0,{args.sample})", "dataset=builtin,synthetic", "n=16"])
    t0 = time.perf_counter()
    sampled = compose_jobs(sample, per_job=True)
    rate = (time.perf_counter() - t0) / len(sampled.jobs)
    print(f"per-job composition: {rate * 1000:.1f} ms/job (sample of {len(sampled.jobs)} jobs)")
    head = ("jobs", "check s", "fast s", "comps", "per job s (est)", "ratio")
    print("{:>6} {:>9} {:>8} {:>6} {:>16} {:>7}".format(*head))
    for jobs in (int(j) for j in args.jobs.split(",")):
        fast_s = timed(lambda jobs=jobs: compose_jobs(parse(sweep(jobs))))
        plan = compose_jobs(parse(sweep(jobs)))
        check_s = timed(lambda jobs=jobs: check(sweep(jobs, ("hydra.launcher.fork=false",))))
        per = rate * len(plan.jobs)
        print(
            f"{len(plan.jobs):>6} {check_s:>9.2f} {fast_s:>8.2f} {plan.compositions:>6} "
            f"{per:>16.0f} {per / fast_s:>7.0f}"
        )
        if len(plan.jobs) == GOAL_JOBS:
            met = "met" if check_s <= GOAL_S else "NOT met"
            print(f"       goal: {GOAL_JOBS} jobs checked in <= {GOAL_S:.0f} s: {met}")


if __name__ == "__main__":
    main()
