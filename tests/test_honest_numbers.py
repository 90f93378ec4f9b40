"""Issue 10: CPU threads and contention recorded and warned, whole-window FLOPs, CodeCarbon in the
study summary, one picture per run and two per study (real llem processes, real busy process)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llem.hostcpu import CONTENTION_CORES, affinity, physical_cores, thread_policy
from llem.records import LATENCY_PNG, PARETO_PNG, SUMMARY_CSV, SUMMARY_MD, TIMESERIES_PNG
from llem.result import Result
from tests.helpers import run_llem


def _results(root: Path) -> list[Path]:
    return sorted(root.rglob("result.json"))


def _load(path: Path) -> Result:
    return Result.model_validate_json(path.read_bytes())


def assert_picture(path: Path, min_width: int = 400) -> None:
    """A real PNG of a sensible size that is not one flat colour."""
    import matplotlib.image as mpimg
    import numpy as np

    assert path.is_file() and path.stat().st_size > 5_000, path
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= 300, (width, height)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 20, "blank picture"
    assert float((rgb < 0.5).any(axis=1).mean()) > 0.001, "nothing dark drawn"


@pytest.fixture
def busy_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process spinning on one core, started by the test (not a child of llem)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_thread_policy_rules() -> None:
    assert thread_policy(3, {"OMP_NUM_THREADS": "2"}).threads == 3
    assert thread_policy(None, {"OMP_NUM_THREADS": "2"}).rule == "OMP_NUM_THREADS"
    unset = thread_policy(None, {})
    assert unset.threads == physical_cores(affinity()) and unset.rule.startswith("physical cores")
    assert thread_policy(None, {}) == unset  # deterministic


@pytest.mark.usefixtures("solo")  # its busy process would contend another test's windows
def test_busy_process_is_recorded_and_warned(
    tmp_path: Path, busy_process: subprocess.Popen[bytes]
) -> None:
    proc = run_llem(
        "n=12", "max_new_tokens=16", "energy=none", "warmup_batches=1", cwd=tmp_path, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = _results(tmp_path)
    r = _load(path)
    assert r.host_cpu is not None and r.host_cpu.torch_threads == 1  # conftest: OMP_NUM_THREADS=1
    assert r.host_cpu.policy is not None and r.host_cpu.policy.rule == "OMP_NUM_THREADS"
    assert r.host_cpu.env["OMP_NUM_THREADS"] == "1"
    (window,) = r.cpu_contention
    assert window.window == "repeat-1" and window.duration_s > 0
    assert window.other_cores is not None and window.other_cores > CONTENTION_CORES
    assert window.contended is True and window.threshold_cores == CONTENTION_CORES
    assert window.llem_cores is not None and window.llem_cores > 0
    warning = next(w for w in r.warnings if w.startswith("CPU contention in repeat-1"))
    assert " ".join(warning.split()) in " ".join(proc.stderr.split())  # rich wraps the lines
    assert "CPU threads" in proc.stdout and "1 intra-op" in proc.stdout
    # one line for energy on screen; the reason stays in result.json
    assert "energy not measured" not in proc.stderr and "not measured: " in proc.stdout
    assert r.energy.reason and r.energy.reason in "\n".join(r.warnings)
    # whole-window FLOPs: 3 batches of 4 measured, 1 re-run under the counter
    f = r.flops
    assert f.window_batches == 12 and f.counted_batches == 1
    assert f.analytic_window_total is not None
    assert f.window_per_output_token == f.analytic_window_total / r.tokens.output
    assert "closed form, all 12 measured batches" in proc.stdout
    assert_picture(path.parent / TIMESERIES_PNG, min_width=800)


def test_plots_off_and_reproduce_shows_the_modelled_estimate(tmp_path: Path) -> None:
    args = ("n=8", "max_new_tokens=8", "plots=false", "quiet=true", "flops.enabled=false")
    proc = run_llem(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = _results(tmp_path)
    assert (path.parent / "timeseries.parquet").is_file()
    assert not (path.parent / TIMESERIES_PNG).exists()
    proc = run_llem("reproduce", str(path.parent), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob(TIMESERIES_PNG))
    estimate = _load(path).energy.estimate_j
    if estimate is None:
        pytest.skip("CodeCarbon gave no estimate on this machine")
    (row,) = [
        ln for ln in proc.stdout.splitlines() if "CodeCarbon energy (modelled estimate)" in ln
    ]
    assert f"{estimate:.4g}" in row  # the original's estimate, beside the reproduction's
    assert "CO2-eq (CodeCarbon, modelled)" in proc.stdout


@pytest.mark.slow
def test_study_window_flops_codecarbon_and_charts(tmp_path: Path) -> None:
    proc = run_llem(
        "-m", "batch=1,4", "n=8", "max_new_tokens=4", "quiet=true", cwd=tmp_path, timeout=400
    )
    assert proc.returncode == 0, proc.stderr
    (sweep,) = [p for p in tmp_path.rglob("study_*") if p.is_dir()]
    rows = list(csv.DictReader((sweep / SUMMARY_CSV).open()))
    assert [r["batch"] for r in rows] == ["1", "4"]
    per_token: list[float] = []
    for row in rows:
        r = _load(sweep / row["result"])
        assert r.flops.analytic_window_total is not None
        expected = r.flops.analytic_window_total / r.tokens.output
        assert float(row["window_flops_per_output_token"]) == expected
        assert row["counted_flops_batches"] == "1" and row["cpu_threads"] == "1"
        per_token.append(expected)
        if r.energy.estimate_j is not None:  # CodeCarbon installed and working: its own columns
            assert float(row["codecarbon_estimate_j"]) == r.energy.estimate_j
    assert per_token[0] != per_token[1]  # padding and batch shape change the work per token
    md = (sweep / SUMMARY_MD).read_text()
    assert "FLOP/out tok (window)" in md
    if rows[0]["codecarbon_estimate_j"]:
        assert "CodeCarbon J/out tok (modelled)" in md
    for name in (PARETO_PNG, LATENCY_PNG):
        assert_picture(sweep / name)
    for row in rows:
        assert_picture((sweep / row["result"]).parent / TIMESERIES_PNG, min_width=800)


def test_study_charts_follow_the_jobs_plots_key(tmp_path: Path) -> None:
    from llem.study.scan import JobEntry
    from llem.study.summary import plots_wanted

    jobs = [JobEntry(job="0_a"), JobEntry(job="1_b")]
    assert plots_wanted(jobs, tmp_path)  # no job composed yet: the default
    hydra = tmp_path / "1_b" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text("n: 4\nplots: false\n")
    assert not plots_wanted(jobs, tmp_path)
    (hydra / "config.yaml").write_text("n: 4\nplots: true\n")
    assert plots_wanted(jobs, tmp_path)
