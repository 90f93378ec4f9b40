"""The real ``llem`` command end to end on the built-in tiny model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from llem.result import Result
from llem.stats import LOG_T
from tests.helpers import AIENERGYSCORE, REPO, needs_aienergyscore, run_llem

pytestmark = pytest.mark.e2e


def _results(root: Path) -> list[Path]:
    return sorted(root.glob("**/result.json"))


def _load(path: Path) -> Result:
    return Result.model_validate(json.loads(path.read_text()))


def test_default_run_writes_a_valid_honest_result(tmp_path):
    proc = run_llem("n=6", "batch=2", "max_new_tokens=8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = _results(tmp_path)
    folder = path.parent
    assert folder.parent.name == "results"
    assert re.fullmatch(r"tiny-llama_pytorch_\d{4}-\d\d-\d\dT\d\d-\d\d(-\d+)?", folder.name)
    assert {"config.yaml", "hydra.yaml", "overrides.yaml"} <= {
        p.name for p in (folder / ".hydra").iterdir()
    }
    r = _load(path)
    assert r.status == "ok" and r.schema_version == "1.0" and r.config["batch"] == 2
    assert r.tokens.requests == 6 and r.tokens.output == 6 * 8
    assert r.tokens.total == r.tokens.input + r.tokens.output
    assert r.tokens.input == sum(q.input_tokens for q in r.requests)
    assert r.throughput.output_tokens_per_s == pytest.approx(
        r.tokens.output / r.timing.measured_window_s
    )
    assert r.latency.ttft_ms.count == 6 and r.latency.itl_ms.count == 6 * 7
    assert 0 < r.latency.ttft_ms.p50 <= r.latency.e2e_ms.p50
    assert r.model.random_weights and any("random weights" in w for w in r.warnings)
    assert any("window is short" in w for w in r.warnings)
    assert (
        r.energy.total_j is None
        and r.energy.per_output_token_j is None
        and r.energy.window_s is None
    )
    assert (
        "NVML" in r.energy.reason and "RAPL" in r.energy.reason
    ) or "powercap" in r.energy.reason
    assert (
        r.flops.counted == r.flops.analytic > 0
        and r.flops.analytic_window_total >= r.flops.analytic
    )
    assert r.memory.peak_bytes > 0 and r.timing.model_load_s > 0
    assert r.environment["versions"]["torch"] and "hostname" not in r.environment
    assert r.dataset.warmup_indices == [6, 7, 8, 9] and r.dataset.measured_indices == list(range(6))
    assert "result: " in proc.stdout and "output tok/s" in proc.stdout
    assert not list(folder.glob(".*.tmp"))
    assert r.energy.timeseries == "timeseries.parquet"
    import pyarrow.parquet as pq

    rows = pq.read_table(folder / "timeseries.parquet").to_pylist()
    assert {"warmup", "repeat-1"} <= {row["phase"] for row in rows}
    assert all(row["device"] == "process" and row["rss_bytes"] > 0 for row in rows)


def test_energy_none_reason_and_quiet(tmp_path):
    proc = run_llem(
        "n=2", "max_new_tokens=2", "energy=none", "quiet=true", "output_dir=out", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "output tok/s" not in proc.stdout
    (path,) = _results(tmp_path / "out")
    assert _load(path).energy.reason == "disabled (energy=none)"


def test_result_folder_slug_is_the_model_name_in_lower_case():
    from llem.paths import slugify

    assert slugify("meta-llama/Llama-3.1-8B") == "llama-3.1-8b"
    assert slugify("/models/My Model/") == "my-model"


def test_two_runs_in_the_same_second_get_separate_folders(tmp_path):
    from llem.paths import claim_unique_dir

    base = str(tmp_path / "results" / "x_pytorch_2026")
    assert [claim_unique_dir(base) for _ in range(3)] == [base, base + "-2", base + "-3"]


def test_experiment_file_example_runs(tmp_path):
    example = REPO / "llem" / "examples" / "experiment.yaml.example"
    proc = run_llem("run", str(example), "n=4", "quiet=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = _results(tmp_path)
    r = _load(path)
    assert r.config["batch"] == 4 and r.config["n"] == 4 and r.tokens.output == 4 * 32


def test_user_experiment_file_overrides_groups_and_keys(tmp_path):
    (tmp_path / "exp.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": ["llem", {"override dataset": "synthetic"}, "_self_"],
                "n": 3,
                "batch": 3,
                "max_new_tokens": 4,
                "dataset": {"input_tokens": 20},
                "quiet": True,
            }
        )
    )
    proc = run_llem("run", "exp.yaml", "seed=7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = _load(_results(tmp_path)[0])
    assert r.config["dataset"]["name"] == "synthetic" and r.config["seed"] == 7
    assert [q.input_tokens for q in r.requests] == [20, 20, 20]


@pytest.mark.slow
def test_sweep_runs_each_job(tmp_path):
    proc = run_llem("-m", "batch=1,4", "n=8", "max_new_tokens=4", "quiet=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    paths = _results(tmp_path)
    assert len(paths) == 2 and all(p.parent.parent.name.startswith("study_") for p in paths)
    assert sorted(_load(p).config["batch"] for p in paths) == [1, 4]


@needs_aienergyscore
def test_shared_aienergyscore_prompts_as_jsonl_dataset(tmp_path):
    proc = run_llem(
        "dataset=jsonl",
        f"dataset.path={AIENERGYSCORE}",
        "n=8",
        "batch=4",
        "max_new_tokens=4",
        "max_input_tokens=256",
        "quiet=true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    r = _load(_results(tmp_path)[0])
    assert r.tokens.requests == 8 and not r.model.chat_template_applied
    assert max(q.input_tokens for q in r.requests) <= 256 and r.dataset.truncated_prompts >= 1


@needs_aienergyscore
def test_aienergyscore_dataset_from_a_local_copy(tmp_path):
    local = tmp_path / "aes.jsonl"
    shutil.copy(AIENERGYSCORE, local)
    proc = run_llem(
        "dataset=aienergyscore",
        f"dataset.path={local}",
        "n=4",
        "max_new_tokens=2",
        "max_input_tokens=128",
        "quiet=true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "AI Energy Score" in _load(_results(tmp_path)[0]).dataset.source


def test_local_model_folder(tmp_path, gpt2_model_dir):
    proc = run_llem(
        f"model.name_or_path={gpt2_model_dir}",
        "n=2",
        "max_new_tokens=3",
        "max_input_tokens=64",
        "quiet=true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = _results(tmp_path)
    assert path.parent.name.startswith(f"{gpt2_model_dir.name}_pytorch_")
    r = _load(path)
    assert r.model.source == "local" and not r.model.random_weights and r.tokens.output == 6


def test_hf_token_is_never_written(tmp_path):
    proc = run_llem(
        "n=2", "max_new_tokens=2", "quiet=true", cwd=tmp_path, env={"HF_TOKEN": "hf_secretTOKEN42"}
    )
    assert proc.returncode == 0, proc.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [
        p for p in written if "hf_secretTOKEN42" in p.read_text(errors="replace")
    ]


def test_codecarbon_is_an_estimate_beside_null_hardware_energy(tmp_path):
    pytest.importorskip("codecarbon")
    proc = run_llem(
        "energy=codecarbon",
        "energy.country_iso_code=FRA",
        "n=20",
        "max_new_tokens=16",
        "repeats=2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CodeCarbon" in proc.stdout and "modelled" in proc.stdout
    assert (
        "AMD GPU detected" not in proc.stdout + proc.stderr
    )  # CodeCarbon's console noise is kept out
    r = _load(_results(tmp_path)[0])
    e = r.energy
    assert (
        e.total_j is None
        and e.estimate_j > 0
        and e.co2.country_iso_code == "FRA"
        and e.co2.emissions_kg_co2eq > 0
    )
    assert {x.covers for x in e.readings} == {"modelled estimate"} and len(e.readings) == 2
    assert not [
        p for p in tmp_path.rglob("*") if p.suffix == ".csv"
    ]  # CodeCarbon wrote no emissions.csv


def test_repeats_report_intervals(tmp_path):
    proc = run_llem(
        "n=4", "batch=2", "max_new_tokens=4", "repeats=3", "energy=none", "quiet=true", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    r = _load(_results(tmp_path)[0])
    assert r.tokens.requests == 12 and len(r.repeats.per_repeat) == 3
    tp = r.repeats.stats["output_tokens_per_s"]
    assert tp.n == 3 and 0 < tp.ci95_low <= tp.point <= tp.ci95_high
    assert tp.estimate == "geometric mean" and tp.method == LOG_T and tp.reason is None
    raw = json.loads(_results(tmp_path)[0].read_text())["repeats"]["stats"]["output_tokens_per_s"]
    assert raw["method"] == LOG_T  # named in result.json itself
    assert (
        r.repeats.stats["energy_per_output_token_j"] is None
    )  # nothing measured: no interval invented
    assert sorted({q.repeat for q in r.requests}) == [1, 2, 3]
