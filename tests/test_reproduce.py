"""``llem reproduce``: re-compose a saved run (or study job) from .hydra/, run it anew, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_llem

pytestmark = pytest.mark.e2e
FAST = ["n=2", "max_new_tokens=2", "quiet=true", "energy=none", "flops.enabled=false"]


def _only_result(root: Path) -> Path:
    (path,) = root.glob("*/result.json")
    return path.parent


def test_reproduce_a_run_from_an_experiment_file_is_identical(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": ["llem", {"override dataset": "synthetic"}, "_self_"],
                "dataset": {"input_tokens": 12},
            }
        )
    )
    first = run_llem("run", "exp.yaml", *FAST, "batch=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    original = _only_result(tmp_path / "results")
    proc = run_llem("reproduce", str(original), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resolved config: identical" in proc.stdout and "original vs reproduced" in proc.stdout
    copies = [p for p in (tmp_path / "results").iterdir() if "_reproduced_" in p.name]
    assert len(copies) == 1
    new = json.loads((copies[0] / "result.json").read_text())
    old = json.loads((original / "result.json").read_text())
    assert new["config"] == old["config"] and new["config_hash"] == old["config_hash"]
    assert new["config"]["dataset"]["name"] == "synthetic"


def test_reproduce_a_study_job_with_an_override_lists_the_difference(tmp_path):
    study = run_llem("-m", "batch=1,2", *FAST, f"hydra.sweep.dir={tmp_path}/study", cwd=tmp_path)
    assert study.returncode == 0, study.stderr
    job = next(
        p.parent
        for p in (tmp_path / "study").glob("*/result.json")
        if p.parent.name.startswith("1_")
    )
    proc = run_llem("reproduce", str(job), "seed=7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "differs in 1 key(s)" in proc.stdout and "seed: 42 -> 7" in proc.stdout
    assert (
        len(list((tmp_path / "study").glob("*/result.json"))) == 2
    )  # the study folder is untouched


def test_reproduce_needs_a_run_folder(tmp_path):
    proc = run_llem("reproduce", str(tmp_path / "nope"), cwd=tmp_path)
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("Error: ")
        and "no result.json" in proc.stderr
    )
