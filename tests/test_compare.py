"""``llem compare``: real runs, study jobs and studies compared; bad folders refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llem.compare.report import Comparison
from llem.hostcpu import CONTENTION_CORES
from tests.helpers import run_llem

pytestmark = pytest.mark.e2e
FAST = ["n=4", "max_new_tokens=8", "quiet=true", "energy=none", "flops.enabled=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two runs that differ only in ``batch`` (3 repeats each) and a 2-job study."""
    root = tmp_path_factory.mktemp("compare")
    for batch in (1, 4):
        proc = run_llem(*FAST, "repeats=3", f"batch={batch}", f"hydra.run.dir=b{batch}", cwd=root)
        assert proc.returncode == 0, proc.stderr
    proc = run_llem("-m", *FAST, "repeats=2", "batch=1,2", "hydra.sweep.dir=study", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def _contended(folder: Path) -> bool:
    windows = json.loads((folder / "result.json").read_text())["cpu_contention"]
    return any((w["other_cores"] or 0) > CONTENTION_CORES for w in windows)


def _compare(cwd: Path, *args: str) -> tuple[str, Comparison]:
    proc = run_llem("compare", *args, "--out", "out", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "out" / "compare.md").is_file()
    data = (cwd / "out" / "compare.json").read_text()
    return proc.stdout, Comparison.model_validate_json(data)


@pytest.mark.usefixtures("solo")  # no other test on the second core: the runs are not contended
def test_two_runs_that_differ_in_batch_get_a_verdict_with_an_interval(tmp_path):
    for batch in (1, 4):
        proc = run_llem(
            *FAST, "repeats=3", f"batch={batch}", f"hydra.run.dir=b{batch}", cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
    runs = tmp_path
    out, c = _compare(tmp_path, str(runs / "b1"), str(runs / "b4"))
    assert "config differs in 1 key(s):" in out and "batch: 1 -> 4" in out
    (pair,) = c.pairs
    assert pair.config_differences == ["batch: 1 -> 4"]
    m = next(m for m in pair.metrics if m.name == "output_tokens_per_s")
    iv = m.interval
    assert iv is not None and iv.n_a == iv.n_b == 3 and iv.method.startswith("log-ratio Welch")
    assert iv.low is not None and iv.high is not None and iv.ratio is not None
    assert 0 < iv.low <= iv.ratio <= iv.high
    if _contended(runs / "b1") or _contended(runs / "b4"):  # other programs: the verdict says so
        assert m.outcome == "not comparable" and "was contended (other processes used" in m.verdict
        assert "output throughput: not comparable (CPU contention, above)" in out
    else:
        assert re.fullmatch(
            r"B has [\d.]+% (more|less) output throughput \(95% CI [\d.]+–[\d.]+%\): "
            r"(better|worse)|no significant difference \(95% CI [-+][\d.]+% to [-+][\d.]+%\)",
            m.verdict,
        ), m.verdict
        assert f"output throughput: {m.verdict}" in out
    ttft = next(m for m in pair.metrics if m.name == "ttft_p50_ms")
    assert ttft.interval is not None and ttft.interval.method.startswith("bootstrap")
    assert ttft.interval.n_a == 12  # n=4 requests x 3 repeats, from result.json's requests
    energy = next(m for m in pair.metrics if m.name == "energy_per_output_token_j")
    assert energy.outcome == "not measured" and energy.verdict == "not measured on either side"
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| output throughput (output tok/s) |" in md and m.verdict in md


def test_a_run_and_its_contended_twin_are_not_comparable(runs, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(runs / "b1", twin)
    result = json.loads((twin / "result.json").read_text())
    for window in result["cpu_contention"]:
        window["other_cores"] = 0.97
    (twin / "result.json").write_text(json.dumps(result))
    out, c = _compare(tmp_path, str(runs / "b1"), str(twin))
    assert "B was contended (other processes used 0.97 cores)" in out
    (pair,) = c.pairs
    assert pair.config_differences == []
    measured = [m for m in pair.metrics if m.outcome != "not measured"]
    assert measured and all(m.outcome == "not comparable" for m in measured)
    assert all(m.verdict.startswith("not comparable: ") for m in measured)


def test_study_against_study_matches_jobs_by_their_swept_keys(runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs / "study", other)
    (job2,) = [p for p in other.iterdir() if p.name.startswith("1_")]
    shutil.rmtree(job2)
    out, c = _compare(tmp_path, str(runs / "study"), str(other))
    assert [p.key for p in c.pairs] == ["batch=1"]
    assert [(u.key, u.side) for u in c.unmatched] == [("batch=2", "A")]
    assert c.sides[1].kind == "study" and len(c.sides[1].skipped) == 1
    assert "unmatched: batch=2 only in A" in out
    pair = c.pairs[0]
    assert pair.config_differences == [] and pair.environment_differences == []
    throughput = next(m for m in pair.metrics if m.name == "output_tokens_per_s")
    assert throughput.interval is not None and throughput.interval.ratio == pytest.approx(1.0)
    if not _contended(Path(pair.a_folder)):  # the same job on both sides
        assert throughput.outcome == "no significant difference", throughput.verdict


def test_a_run_against_a_job_folder_and_against_a_study(runs, tmp_path):
    job = next(p for p in (runs / "study").iterdir() if p.name.startswith("1_"))
    _, c = _compare(tmp_path, str(runs / "b1"), str(job))
    (pair,) = c.pairs
    assert pair.config_differences[0] == "batch: 1 -> 2" and "repeats: 3 -> 2" in (
        pair.config_differences
    )
    _, c = _compare(tmp_path, str(runs / "b1"), str(runs / "study"), str(runs / "b4"))
    assert [(p.other, p.key) for p in c.pairs] == [("B", "batch=1"), ("B", "batch=2"), ("C", "")]


@pytest.mark.parametrize("damage", ["missing", "empty folder", "corrupt result", "file"])
def test_a_folder_it_cannot_read_is_one_error_line_and_nothing_written(runs, tmp_path, damage):
    bad = tmp_path / "bad"
    if damage == "empty folder":
        bad.mkdir()
    elif damage == "corrupt result":
        shutil.copytree(runs / "b1", bad)
        (bad / "result.json").write_text('{"schema_version": "1.0", "throughput": [')
    elif damage == "file":
        bad.write_text("not a folder")
    proc = run_llem("compare", str(runs / "b1"), str(bad), "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(bad) in lines[0], lines
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
    need = {
        "missing": "does not exist",
        "empty folder": "has no result.json and is not a study",
        "corrupt result": "is not a valid llem result",
        "file": "is not a folder",
    }
    assert need[damage] in lines[0]


@pytest.mark.parametrize("args", [[], ["only-one"], ["a", "b", "--colour"]])
def test_a_bad_command_line_is_one_error_line(tmp_path, args):
    proc = run_llem("compare", *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ")
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_compare_imports_no_torch(runs, tmp_path):
    code = (
        "import sys\nfrom llem.cli import main\ntry:\n"
        f"    main(['compare', {str(runs / 'b1')!r}, {str(runs / 'b4')!r}])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "compare.md").is_file() and (tmp_path / "compare.json").is_file()


def test_latency_without_enough_requests_or_repeats_says_both(runs):
    from llem.compare.verdict import METRICS, judge
    from llem.result import Result

    data = json.loads((runs / "b1" / "result.json").read_text())
    data["requests"] = [q for q in data["requests"] if q["repeat"] == 1]  # 4 requests
    data["repeats"]["per_repeat"] = data["repeats"]["per_repeat"][:1]
    for window in data["cpu_contention"]:
        window["other_cores"] = 0.0  # quiet: the verdict is about the samples
    one = Result.model_validate(data)
    (ttft,) = [spec for spec in METRICS if spec.metric.name == "ttft_p50_ms"]
    m = judge(ttft, one, one, ("A", "B"))
    assert m.outcome == "no interval"
    assert m.verdict == "no interval: fewer than 10 requests and fewer than 2 repeats on a side"
