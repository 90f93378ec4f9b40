"""``llem examples [FOLDER]``: the shipped example files copied into a folder, never overwriting
(the same from a wheel install: tests/test_wheel.py)."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e


def test_examples_are_copied_and_never_overwritten(tmp_path):
    proc = run_llem("examples", "ex", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    copied = sorted(p.relative_to(tmp_path / "ex").as_posix() for p in tmp_path.rglob("*.*"))
    expected = sorted(
        [p.name for p in (REPO / "llem" / "examples").glob("*.example")]
        + [f"multirun_examples/{p.name}" for p in (REPO / "multirun_examples").glob("*.yaml")]
        + ["multirun_examples/README.md"]
    )
    assert copied == expected
    assert sorted(proc.stdout.splitlines()[: len(copied)]) == [f"ex/{c}" for c in expected]
    assert "llem run ex/experiment.yaml.example" in proc.stdout

    mine = tmp_path / "other" / "multirun_examples" / "slurm.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine\n")
    again = run_llem("examples", "other", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert again.stderr.startswith("Error: other/multirun_examples/slurm.yaml exists")
    assert [p.name for p in (tmp_path / "other").rglob("*.*")] == ["slurm.yaml"]  # nothing written
    assert mine.read_text() == "mine\n"


def test_examples_takes_one_folder(tmp_path):
    proc = run_llem("examples", "a", "b", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == (
        "Error: usage: llem examples [FOLDER]  (default: ./llem-examples)\n"
    )
    assert list(tmp_path.iterdir()) == []
