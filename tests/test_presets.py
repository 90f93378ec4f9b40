"""Benchmark presets: the AI Energy Score experiment equals its protocol table, departures are
listed, and the Wh-per-1,000-queries figures come from GPU meters only (fake NVML; CPU: null)."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llem.benchmarks import (
    AIENERGYSCORE,
    PROTOCOLS,
    config_departures,
    gpu_figures,
    label,
    summary_line,
    wh_per_1k,
)
from llem.config import ExperimentConfig, validate
from llem.energy.base import CPU_PACKAGE, ESTIMATE, GPU_BOARD, Reading
from llem.energy.report import energy_metrics
from llem.errors import ConfigError
from llem.harness import Harness
from llem.result import Result
from tests.fake_nvml import FakeGpu, make_nvml
from tests.helpers import REPO, run_llem
from tests.helpers import compose_config as _compose

PRESET = REPO / "conf" / "experiment" / "aienergyscore.yaml"


def _preset(*overrides: str) -> ExperimentConfig:
    return validate(OmegaConf.to_container(_compose("+experiment=aienergyscore", *overrides)))


def _prompts(folder: Path, count: int = 24, long_words: int = 0) -> Path:
    """A local prompt file shaped like the AI Energy Score copy: {"prompt": ...} per line."""
    path = folder / "prompts.jsonl"
    lines = [
        {"prompt": f"Prompt {i} about the history of the river and its bridges."}
        for i in range(count)
    ]
    if long_words:
        lines[1] = {"prompt": " ".join(["bridge"] * long_words)}
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# ------------------------------------------------------------------------ the preset is the table


def test_preset_composes_to_exactly_the_protocol():
    cfg = _preset()
    assert cfg.protocol == "aienergyscore"
    assert config_departures(AIENERGYSCORE, cfg) == []
    # the model stays the user's choice (here the packaged default)
    assert cfg.model.name_or_path == "llem://tiny-llama"


def test_preset_yaml_sets_every_protocol_key_and_nothing_else():
    """Each protocol key is set by the preset itself or by the group option it selects (whose keys
    the composed test above checks); the preset sets nothing else but ``protocol``."""
    yaml_cfg = OmegaConf.load(PRESET)
    groups = {
        next(iter(entry)).removeprefix("override /"): next(iter(entry.values()))
        for entry in yaml_cfg.pop("defaults")
    }
    values = _flatten(OmegaConf.to_container(yaml_cfg))
    assert values.pop("protocol") == "aienergyscore"
    assert groups == {g: AIENERGYSCORE.keys[f"{g}.name"] for g in groups}
    assert values == {k: v for k, v in AIENERGYSCORE.keys.items() if k.split(".")[0] not in groups}
    assert PRESET.read_text().startswith("# @package _global_\n")


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out |= _flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}")
    return out


def test_registry_and_schema_agree_and_unknown_protocols_are_rejected():
    (literal, _none) = typing.get_args(ExperimentConfig.model_fields["protocol"].annotation)
    assert set(typing.get_args(literal)) == set(PROTOCOLS)
    with pytest.raises(ConfigError, match="protocol='mlperf' is not allowed"):
        _preset("protocol=mlperf")


def test_overrides_are_allowed_and_listed_as_modifications():
    cfg = _preset("n=20", "batch=4", "backend=vllm", "energy=nvml", "energy.prefill_split=false")
    assert cfg.n == 20 and cfg.batch == 4 and cfg.backend.name == "vllm"
    modified = config_departures(AIENERGYSCORE, cfg)
    assert [(d.key, d.protocol, d.actual) for d in modified] == [
        ("backend.name", "pytorch", "vllm"),
        ("n", "1000", "20"),
        ("batch", "1", "4"),
        ("energy.prefill_split", "true", "false"),
    ]
    assert label("aienergyscore", modified) == (
        "aienergyscore (modified: backend.name, n, batch, energy.prefill_split)"
    )
    sharded = _preset("backend.device_map=auto")
    assert [(d.key, d.actual) for d in config_departures(AIENERGYSCORE, sharded)] == [
        ("backend.device_map", "auto")
    ]
    # another dataset: one departure (its keys are not listed again), and the preset still composes
    builtin = _preset("dataset=builtin", "energy=nvml")
    assert builtin.energy.prefill_split and builtin.max_new_tokens == 10
    assert [(d.key, d.actual) for d in config_departures(AIENERGYSCORE, builtin)] == [
        ("dataset.name", "builtin")
    ]
    assert label("aienergyscore", []) == "aienergyscore"


# --------------------------------------------------------------------------- the arithmetic


def _reading(meter: str, covers: str, joules: float | None, reason: str | None = None) -> Reading:
    return Reading(meter, f"{meter}-dev", covers, "counter delta", joules, 0.0, 10.0, reason)


def _energy(gpu_j: list[float | None], prefill_j: float | None):
    """Two measured windows (GPU + CPU package + CodeCarbon estimate each) and a prefill pass."""
    windows = [
        (
            f"repeat-{i}",
            [
                _reading(
                    "nvml", GPU_BOARD, j, None if j is not None else "counter did not advance"
                ),
                _reading("rapl", CPU_PACKAGE, 5000.0),
                _reading("codecarbon", ESTIMATE, 9000.0),
            ],
            10.0,
        )
        for i, j in enumerate(gpu_j, 1)
    ]
    prefill = (
        [_reading("nvml", GPU_BOARD, prefill_j), _reading("rapl", CPU_PACKAGE, 700.0)]
        if prefill_j is not None
        else None
    )
    return energy_metrics(
        meters=["nvml", "rapl", "codecarbon"],
        windows=windows,
        output_tokens=20000,
        requests=2000,
        baseline=[],
        baseline_reason=None,
        reason_if_none="no hardware meter",
        prefill=(prefill, 1.0) if prefill else None,
    )


def test_wh_per_1000_queries():
    assert wh_per_1k(3600.0, 1000) == pytest.approx(1.0)  # 1 Wh over 1,000 queries
    assert wh_per_1k(7200.0, 4000) == pytest.approx(0.5)
    assert wh_per_1k(36.0, 1) == pytest.approx(10.0)


def test_gpu_figures_use_gpu_readings_only_and_split_prefill_and_decode():
    # 1,000 prompts x 2 repeats; GPU 7,200 J per window = 14,400 J = 4 Wh over 2,000 queries:
    # 2 Wh/1k; prefill pass over the 1,000 prompts once: 720 J = 0.2 Wh -> 0.2 Wh/1k; decode 1.8.
    energy = _energy([7200.0, 7200.0], 720.0)
    assert energy.total_j == pytest.approx(2 * (7200 + 5000))  # total_j includes the CPU package
    total, prefill, decode, reason = gpu_figures(energy, requests=2000, repeats=2)
    assert (total, prefill, decode, reason) == (
        pytest.approx(2.0),
        pytest.approx(0.2),
        pytest.approx(1.8),
        None,
    )
    assert energy.wh_per_1k_requests != pytest.approx(
        total
    )  # the CPU is not in the benchmark figure


def test_gpu_figures_are_null_with_a_reason():
    total, prefill, decode, reason = gpu_figures(_energy([7200.0, None], 720.0), 2000, 2)
    assert (total, prefill, decode) == (None, None, None)
    assert "nvml nvml-dev repeat-2: counter did not advance" in reason

    total, prefill, decode, reason = gpu_figures(_energy([7200.0, 7200.0], None), 2000, 2)
    assert total == pytest.approx(2.0) and prefill is None and decode is None
    assert "energy.prefill_split=false" in reason

    cpu_only = energy_metrics(
        meters=["rapl"],
        windows=[("repeat-1", [_reading("rapl", CPU_PACKAGE, 50.0)], 1.0)],
        output_tokens=10,
        requests=1,
        baseline=[],
        baseline_reason=None,
        reason_if_none="no hardware meter",
    )
    assert cpu_only.total_j == 50.0
    total, _, _, reason = gpu_figures(cpu_only, 1, 1)
    assert total is None and reason == "no GPU energy meter (NVML or Zeus) measured this run"


# --------------------------------------------------------------------------- runs


def test_preset_run_on_simulated_gpus(tmp_path, monkeypatch, tiny_model_dir):
    watts = {"GPU-aaaa": 300.0, "GPU-bbbb": 100.0}
    gpus = [FakeGpu(uuid, trace=[(0.0, w)]) for uuid, w in watts.items()]
    monkeypatch.setitem(sys.modules, "pynvml", make_nvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = _preset(
        f"dataset.path={_prompts(tmp_path)}",
        "n=6",
        "repeats=2",
        "warmup_batches=1",
        "energy=nvml",
        "energy.prefill_split=true",
        "energy.baseline.enabled=false",
        "energy.sample_interval_ms=20",
        "flops.enabled=false",
        "quiet=true",
    )
    result = Harness(cfg, tmp_path).run()
    b, e = result.benchmark, result.energy
    assert b is not None and b.protocol == "aienergyscore" and b.version == AIENERGYSCORE.version
    assert b.meters == ["nvml"] and b.queries == 12 and result.tokens.output == 12 * 10

    # (the meter itself, W x window per reading, is tested in test_energy_harness.py)
    assert {uuid for uuid in watts for r in e.readings if uuid in r.device} == set(watts)
    assert all(r.energy_j and r.energy_j > 0 and r.covers == GPU_BOARD for r in e.readings)
    measured = [r.energy_j for r in e.readings if r.window.startswith("repeat-")]
    prefill = [r.energy_j for r in e.readings if r.window == "prefill"]
    assert len(measured) == 2 * 2 and len(prefill) == 2  # both GPUs, summed
    assert b.gpu_wh_per_1k_queries == pytest.approx(sum(measured) / 3600 / 12 * 1000)
    assert b.prefill_wh_per_1k_queries == pytest.approx(sum(prefill) / 3600 / 6 * 1000)
    assert b.decode_wh_per_1k_queries == pytest.approx(
        b.gpu_wh_per_1k_queries - b.prefill_wh_per_1k_queries
    )
    # the same split as the energy section's decode_j (measured - prefill x repeats) per 1k queries
    assert b.decode_wh_per_1k_queries == pytest.approx(e.prefill.decode_j / 3600 / 12 * 1000)
    assert 0 < b.prefill_wh_per_1k_queries < b.gpu_wh_per_1k_queries and b.reason is None

    keys = [d.key for d in b.modified]
    # n=6, random weights, run on the CPU (+ precision where the CPU lacks bf16), two GPUs measured
    assert keys[:3] == ["n", "model", "backend.device"] and keys[-1] == "gpus"
    assert b.modified[-1].actual.startswith("2 (CUDA_VISIBLE_DEVICES=")
    assert b.label.startswith("aienergyscore (modified: n, model, backend.device")
    assert summary_line(b).startswith(f"{b.label}: {b.gpu_wh_per_1k_queries:.4g} GPU Wh/1k queries")


def test_null_max_input_tokens_truncates_to_the_context_minus_new_tokens(tmp_path, gpt2_model_dir):
    from llem.backends import load_backend
    from llem.backends.prompts import PromptBuilder
    from llem.datasets import load_prompts
    from llem.errors import UsageError

    cfg = _preset(
        f"dataset.path={_prompts(tmp_path, count=3, long_words=600)}",
        f"model.name_or_path={gpt2_model_dir}",
        "n=3",
    )
    backend = load_backend(cfg)
    prompt_set, indices, _ = load_prompts(cfg.dataset, cfg.n, 0)
    prompts = backend.prepare(prompt_set, indices)
    assert [p.truncated for p in prompts] == [False, True, False]
    assert prompts[1].input_tokens == 256 - 10  # gpt2_model_dir has a 256-token context

    builder = PromptBuilder(backend.tokenizer, cfg)
    with pytest.raises(UsageError, match=r"max_input_tokens=null .* its context is None"):
        builder.build(prompt_set, indices, context_length=None)


@pytest.mark.e2e
def test_preset_runs_offline_on_the_tiny_model(tmp_path):
    prompts = _prompts(tmp_path, long_words=5000)  # one prompt longer than the tiny model's context
    proc = run_llem(
        "+experiment=aienergyscore",
        f"dataset.path={prompts}",
        "model=tiny",
        "n=20",
        "flops.enabled=false",
        cwd=tmp_path,
        env={"COLUMNS": "400"},
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = sorted(tmp_path.glob("results/*/result.json"))
    r = Result.model_validate(json.loads(path.read_text()))
    b = r.benchmark
    assert (
        b is not None and b.protocol == "aienergyscore" and r.config["protocol"] == "aienergyscore"
    )
    assert [d.key for d in b.modified][:2] == ["n", "model"]
    assert b.label.startswith("aienergyscore (modified: n, model")
    assert b.gpu_wh_per_1k_queries is None and b.prefill_wh_per_1k_queries is None
    assert b.decode_wh_per_1k_queries is None and b.meters == []
    assert b.reason == "no GPU energy meter (NVML or Zeus) measured this run (see energy.reason)"
    assert "NVML" in r.energy.reason
    assert r.tokens.requests == 20 and r.tokens.output == 20 * 10
    assert r.dataset.truncated_prompts == 1 and r.requests[1].input_tokens == 4096 - 10
    (row,) = [line for line in proc.stdout.splitlines() if "benchmark" in line]
    assert f"{b.label}: GPU Wh/1k queries not measured: {b.reason}" in row


@pytest.mark.e2e
def test_cfg_job_shows_the_protocol_keys(tmp_path):
    proc = run_llem("+experiment=aienergyscore", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = OmegaConf.create(proc.stdout)
    assert shown.protocol == "aienergyscore"
    for key, value in AIENERGYSCORE.keys.items():
        assert OmegaConf.select(shown, key) == value, key
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_preset_without_plus_says_how_to_add_it(tmp_path):
    proc = run_llem("experiment=aienergyscore", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == "Error: 'experiment' is added with a '+': use +experiment=aienergyscore"
    )
    assert not (tmp_path / "results").exists()
