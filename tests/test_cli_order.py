"""Hydra's flags anywhere among the overrides (issue 19).

The design card's line ``llem backend=pytorch model=tiny -m batch=1,8,32`` runs its study;
``--cfg``, ``-cn``, ``--info`` ... after overrides do what Hydra documents; ``llem run file.yaml
k=v -m k2=a,b`` sweeps; the Hydra way of rerunning a run (``--config-path <run>/.hydra
--config-name config``) runs like llem."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from llem.commandline import parse
from llem.errors import UsageError
from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e
FAST = ("max_new_tokens=2", "energy=none", "quiet=true")
HYDRA_FLAG = re.compile(r"^-")


def _summary(study_dir):
    (path,) = study_dir.glob("study_summary.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("a=1 -m b=1,2", ["--multirun", "a=1", "b=1,2"]),
        (
            "a=1 --cfg job b=2 --resolve -p backend",
            ["--cfg=job", "--resolve", "--package=backend", "a=1", "b=2"],
        ),
        (
            "a=1 -cn=exp -cp /x -cd=/y b=2",
            ["--config-path=/x", "--config-name=exp", "--config-dir=/y", "a=1", "b=2"],
        ),
        ("a=1 --info b=2", ["--info=all", "a=1", "b=2"]),  # Hydra's bare --info is --info=all
        ("a=1 --info searchpath", ["--info=searchpath", "a=1"]),
        ("a=1 --hydra-help", ["--hydra-help", "a=1"]),
        ("a=1 -h b=2", ["--help", "a=1", "b=2"]),
    ],
)
def test_flags_come_first_and_overrides_keep_their_order(line, argv):
    cl = parse(line.split())
    assert cl.argv() == argv
    assert parse(cl.argv()) == cl  # what Hydra's parse_args reads from it is the same line


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a=1 --bogus", "unknown flag --bogus"),
        ("a=1 --cfg", "argument --cfg/-c: expected one argument"),
        ("a=1 --cfg joob", "invalid choice: 'joob'"),
        ("a=1 -m b=1,2 --cfg job", "-m cannot be combined with --cfg"),
        ("--multi a=1", "unknown flag --multi"),  # no abbreviations: only Hydra's spellings
    ],
)
def test_bad_flags_are_one_error(line, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse(line.split())


def test_bad_flag_after_overrides_is_one_error_line(tmp_path):
    proc = run_llem("backend=pytorch", "n=2", "--cfg", "joob", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("Error: argument --cfg/-c: invalid choice: 'joob'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_design_cards_shape_runs_three_jobs(tmp_path):
    # the card's line (n=32: with n=8, batch=32 is refused by the pre-flight, see the next test)
    proc = run_llem(
        "backend=pytorch", "model=tiny", "-m", "batch=1,8,32", "n=32", *FAST,
        "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = _summary(tmp_path / "sweep")
    assert summary["final"] and summary["n_jobs"] == 3 and summary["counts"]["ok"] == 3
    batches = [o for job in summary["jobs"] for o in job["overrides"] if o.startswith("batch=")]
    assert batches == ["batch=1", "batch=8", "batch=32"]
    assert "[llem] summary:" in proc.stdout + proc.stderr


def test_the_cards_literal_sweep_reaches_the_pre_flight(tmp_path):
    proc = run_llem("backend=pytorch", "model=tiny", "-m", "batch=1,8,32", "n=8", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "1 of 3 jobs are invalid" in proc.stderr and "batch=32 is larger than n=8" in proc.stderr
    assert "unrecognized" not in proc.stderr and list(tmp_path.iterdir()) == []


def test_the_vllm_line_goes_as_far_as_it_can(tmp_path):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed: scripts/check_vllm_cpu.sh runs this shape")
    proc = run_llem("backend=vllm", "model=llama3", "-m", "batch=1,8,32", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "3 of 3 jobs are invalid" in proc.stderr
    assert "backend 'vllm' is not installed: pip install llenergymeasure[vllm]" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cfg_job_after_overrides(tmp_path):
    proc = run_llem("batch=3", "--cfg", "job", "n=6", "--resolve", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["batch"] == 3 and cfg["n"] == 6 and list(tmp_path.iterdir()) == []


def _experiment_file(folder):
    path = folder / "exp.yaml"
    path.write_text("defaults: [llem, _self_]\nmax_new_tokens: 2\nenergy: {meter: none}\n")
    return path


def test_run_file_with_flags_before_and_after_the_file(tmp_path):
    _experiment_file(tmp_path)
    for line in (
        ["run", "exp.yaml", "batch=2", "--cfg", "job"],
        ["run", "--cfg", "job", "exp.yaml", "batch=2"],
    ):
        proc = run_llem(*line, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        cfg = yaml.safe_load(proc.stdout)
        assert cfg["batch"] == 2 and cfg["max_new_tokens"] == 2
    proc = run_llem("run", "exp.yaml", "-cn", "other", cwd=tmp_path)
    assert proc.returncode == 2 and "drop --config-path/--config-name" in proc.stderr


@pytest.mark.slow
def test_run_file_then_overrides_then_multirun(tmp_path):
    _experiment_file(tmp_path)
    proc = run_llem(
        "run", "exp.yaml", "n=4", "quiet=true", "-m", "batch=1,2", "hydra.sweep.dir=sweep",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = _summary(tmp_path / "sweep")
    assert summary["final"] and summary["counts"]["ok"] == summary["n_jobs"] == 2


def _doc_commands():
    """Every ``llem ...`` command in README.md and docs/*.md (bash blocks and inline code) where
    a Hydra flag follows an override."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")  # continued lines
        lines = re.findall(r"^(llem .*?)(?:\s+#.*)?$", text, re.M)
        lines += re.findall(r"`(llem [^`]+)`", text)
        for line in lines:
            words = shlex.split(line)[1:]
            first = next((i for i, w in enumerate(words) if "=" in w and w[0] != "-"), None)
            if first is not None and any(HYDRA_FLAG.match(w) for w in words[first:]):
                found.append(pytest.param(words, id=f"{path.name}: {line}"))
    return found


DOC_COMMANDS = _doc_commands()


def test_the_docs_have_override_then_flag_commands():
    assert any("-m" in p.values[0] for p in DOC_COMMANDS)  # docs/serving.md's load sweep


@pytest.mark.parametrize("words", DOC_COMMANDS)
def test_each_doc_command_with_flags_after_overrides_composes(words, monkeypatch):
    """Composed and validated job by job as the pre-flight does (running them needs a GPU, a
    server or the shared data)."""
    from llem.cli import experiment_file_args
    from llem.preflight import compose_jobs

    monkeypatch.chdir(REPO)
    args = experiment_file_args(words[1:]) if words[0] == "run" else words
    cl = parse(args)
    plan = compose_jobs(cl)
    sweeps = [w.split("=", 1)[1].count(",") + 1 for w in cl.overrides if cl.multirun and "," in w]
    expected = 1
    for size in sweeps:
        expected *= size
    assert len(plan.jobs) == expected


@pytest.mark.slow
def test_the_hydra_way_reruns_like_llem(tmp_path):
    proc = run_llem("n=2", "batch=2", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "results").iterdir()
    proc = run_llem("--config-path", f"{run}/.hydra", "--config-name", "config", "n=4",
                    cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "outputs").exists()
    new = [d for d in (tmp_path / "results").iterdir() if d != run]
    assert len(new) == 1 and re.fullmatch(r"tiny-llama_pytorch_[0-9T-]+(_\d+)?", new[0].name)
    result = json.loads((new[0] / "result.json").read_text())
    assert result["config"]["batch"] == 2 and result["config"]["n"] == 4
    assert result["config"]["energy"]["meter"] == "none"  # the saved run's overrides, then ours
    assert "rerunning" in proc.stderr and f"llem reproduce {run}" in proc.stderr
