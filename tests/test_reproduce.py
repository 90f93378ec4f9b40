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
    verdicts = proc.stdout.split("verdicts (the reproduction against the original):\n")[1]
    assert "  output throughput: no interval: fewer than 2 repeats on a side" in verdicts or (
        "  output throughput: not comparable: the " in verdicts  # a busy machine says so
    )
    copies = [p for p in (tmp_path / "results").iterdir() if "_reproduced_" in p.name]
    assert len(copies) == 1
    new = json.loads((copies[0] / "result.json").read_text())
    old = json.loads((original / "result.json").read_text())
    del old["config"]["output_dir"]  # "results", as given
    assert new["config"].pop("output_dir") == str(tmp_path / "results")  # its own place
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


# --------------------------------------------------------------- where a reproduction writes


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("original")
    proc = run_llem(*FAST, "hydra.run.dir=runs/first", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "runs" / "first"


def _tampered(original: Path, tmp_path: Path, place: str) -> Path:
    """A copy of ``original`` whose result.json and hydra.yaml name ``place`` as output_dir."""
    import shutil

    folder = tmp_path / "runs" / "copy"
    shutil.copytree(original, folder)
    result = json.loads((folder / "result.json").read_text())
    result["config"]["output_dir"] = place
    (folder / "result.json").write_text(json.dumps(result))
    hydra = yaml.safe_load((folder / ".hydra/hydra.yaml").read_text())
    hydra["hydra"]["overrides"]["task"].append(f"output_dir={place}")
    (folder / ".hydra/hydra.yaml").write_text(yaml.safe_dump(hydra))
    return folder


@pytest.mark.parametrize("place", ["elsewhere", "/proc/llem-cannot-be-made"])
def test_reproduce_writes_beside_the_original_never_where_a_recorded_path_says(
    tmp_path, original, place
):
    folder = _tampered(original, tmp_path, str(tmp_path / place) if place == "elsewhere" else place)
    proc = run_llem("reproduce", str(folder), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (copy,) = (tmp_path / "runs").glob("copy_reproduced_*/result.json")
    assert json.loads(copy.read_text())["config"]["output_dir"] == str(tmp_path / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.parametrize("key", ["output_dir", "hydra.run.dir"])
def test_reproduce_writes_where_its_command_line_says(tmp_path, original, key):
    proc = run_llem("reproduce", str(original), f"{key}=mine", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = list((tmp_path / "mine").glob("**/result.json"))
    expected = ["mine/result.json"] if key == "hydra.run.dir" else ["mine/first_reproduced_"]
    assert len(found) == 1 and str(found[0].relative_to(tmp_path)).startswith(expected[0])
    assert len(list(original.parent.iterdir())) == 1  # nothing beside the original


@pytest.mark.parametrize("slipped", ["--multirun", "batch=1,2"])
def test_reproduce_refuses_a_hydra_yaml_that_would_start_a_study(tmp_path, original, slipped):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(original, folder)
    hydra = yaml.safe_load((folder / ".hydra/hydra.yaml").read_text())
    hydra["hydra"]["overrides"]["task"].append(slipped)
    (folder / ".hydra/hydra.yaml").write_text(yaml.safe_dump(hydra))
    proc = run_llem("reproduce", str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ") and "study" in proc.stderr
    assert proc.stderr.count("\n") == 1 and slipped in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
