"""Bad input through the real ``llem``: one short message, exit code 2, no traceback, no folder."""

from __future__ import annotations

import pytest

from tests.helpers import run_llem

pytestmark = pytest.mark.e2e

CASES = [
    (["bacth=8"], "unknown key 'bacth' (did you mean 'batch'?)"),
    (["+foo=1"], "unknown key 'foo'"),
    (["batch=abc"], "batch='abc' has the wrong type"),
    (["batch=true"], "batch=true has the wrong type"),
    (["batch=0"], "batch=0 is out of range"),
    (["n=-1"], "n=-1 is out of range"),
    (["backend=pytroch"], "unknown backend 'pytroch': choose one of openai, pytorch"),
    (["model=nope"], "unknown model 'nope': choose one of gpt2, llama3"),
    (["model.name_or_path=/no/such/model"], "model.name_or_path=/no/such/model: no such folder"),
    (
        ["model.name_or_path=someorg/not-cached"],
        "not in the local Hugging Face cache and the hub is unreachable",
    ),
    (["dataset=jsonl"], "'dataset.path' has no value"),
    (["dataset=jsonl", "dataset.path=/no/such.jsonl"], "no such file"),
    (["dataset=aienergyscore"], "no network and no cached copy"),
    (["batch=8", "n=4"], "batch=8 is larger than n=4"),
    (["n=500"], "n=500 but the dataset has 120 prompts"),
    (["-m", "batch=1,0,x", "n=4"], "2 of 3 jobs are invalid; nothing was run"),
    (["max_new_tokens=5000", "n=2"], "has a context of 4096 tokens"),  # found inside the job
    (["energy=nvml"], "energy=nvml cannot work here: NVML unavailable"),
    (["energy=rapl"], "energy=rapl cannot work here"),
    (["energy=zeus"], "energy=zeus cannot work here"),
    (["energy.country_iso_code=FR"], "energy.country_iso_code='FR'"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input(tmp_path, args, needle):
    proc = run_llem(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: ") and needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # no result folder, not even an empty results/


def test_malformed_dataset_line_is_named(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n')
    proc = run_llem("dataset=jsonl", f"dataset.path={bad}", cwd=tmp_path)
    assert proc.returncode == 2 and "line 2 is not valid JSON" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_run_needs_a_file_extending_llem(tmp_path):
    (tmp_path / "exp.yaml").write_text("n: 4\n")
    proc = run_llem("run", "exp.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "defaults: [llem, _self_]" in proc.stderr
    proc = run_llem("run", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr
