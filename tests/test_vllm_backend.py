"""The vLLM backend: schema and YAML, engine_args checking, LLM/SamplingParams arguments, request
records.

Everything but the last test runs without vLLM installed; the last one runs the real engine where
vLLM is importable (e.g. in the venv of scripts/check_vllm_cpu.sh)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from llem.backends.base import Prompt
from llem.backends.pytorch.config import PyTorchConfig
from llem.backends.vllm.backend import (
    CPU_MEMORY_UTILIZATION,
    FLOPS_REASON,
    ITL_NOTE,
    VllmBackend,
    check_engine_args,
    checkpoint_parameters,
    engine_arg_names,
    engine_kwargs,
    resolve_device,
    sampling_kwargs,
    spread,
    to_records,
)
from llem.backends.vllm.config import VllmConfig
from llem.config import ExperimentConfig, validate
from llem.errors import ConfigError, UsageError
from tests.helpers import compose_config as _compose

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def vllm_cfg(*overrides: str) -> dict:
    return OmegaConf.to_container(_compose("backend=vllm", *overrides), resolve=True)


def exp(*overrides: str):
    return validate(vllm_cfg(*overrides))


def kwargs_of(e: ExperimentConfig, *args, **kwargs) -> dict:
    """``engine_kwargs`` for an experiment with backend=vllm."""
    assert isinstance(e.backend, VllmConfig)
    return engine_kwargs(e.backend, e.seed, *args, **kwargs)


# --------------------------------------------------------------------------- schema and YAML


def test_backend_vllm_yaml_validates_to_the_vllm_schema():
    e = exp()
    assert isinstance(e.backend, VllmConfig) and e.backend.name == "vllm"
    b = e.backend
    assert (b.tensor_parallel_size, b.pipeline_parallel_size, b.gpu_memory_utilization) == (
        1,
        1,
        None,
    )
    assert (b.max_model_len, b.max_num_seqs, b.max_num_batched_tokens, b.quantization) == (
        None,
        None,
        None,
        None,
    )
    assert (b.enforce_eager, b.enable_prefix_caching, b.kv_cache_dtype) == (False, False, "auto")
    assert b.trust_remote_code is False and b.device == "auto" and b.engine_args == {}
    assert isinstance(validate(_compose()).backend, PyTorchConfig)  # the default stays pytorch


def test_engine_args_are_added_with_plus_and_change_the_hash():
    e = exp("+backend.engine_args.block_size=32", "backend.max_num_seqs=8")
    assert e.backend.engine_args == {"block_size": 32} and e.backend.max_num_seqs == 8
    assert e.config_hash() != exp().config_hash()


def test_pytorch_only_keys_are_rejected_without_the_union_tag():
    cfg = vllm_cfg()
    cfg["backend"]["sort_by_length"] = True
    with pytest.raises(ConfigError, match=r"unknown key 'backend\.sort_by_length'"):
        validate(cfg)


def test_unknown_backend_name_and_out_of_range_values():
    cfg = vllm_cfg()
    cfg["backend"]["name"] = "nope"
    with pytest.raises(
        ConfigError, match=r"backend\.name='nope' is not a backend: use one of 'pytorch', 'vllm'"
    ):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"backend\.gpu_memory_utilization=1\.5 is out of range"):
        exp("backend.gpu_memory_utilization=1.5")
    with pytest.raises(ConfigError, match=r"backend\.tensor_parallel_size=0 is out of range"):
        exp("backend.tensor_parallel_size=0")


# --------------------------------------------------------------------------- engine_args checking

FIELDS = {
    "model",
    "dtype",
    "seed",
    "block_size",
    "swap_space",
    "max_logprobs",
    "tensor_parallel_size",
    "_private",
}


def test_engine_arg_names_reads_dataclass_fields():
    @dataclasses.dataclass
    class StandIn:
        model: str = "m"
        block_size: int | None = None

    assert engine_arg_names(StandIn) == {"model", "block_size"}


def test_known_engine_args_pass():
    check_engine_args({"block_size": 32, "max_logprobs": 5}, FIELDS)
    check_engine_args({}, FIELDS)


def test_unknown_engine_args_are_rejected_with_the_valid_names():
    with pytest.raises(UsageError) as err:
        check_engine_args({"blok_size": 32}, FIELDS)
    msg = str(err.value)
    assert "blok_size" in msg and "did you mean 'block_size'" in msg
    assert msg.endswith(
        "Valid names: block_size, max_logprobs, swap_space"
    )  # not llem-set or private names


@pytest.mark.parametrize(
    "key,fix",
    [
        ("dtype", "set precision"),
        ("seed", "set seed"),
        ("model", "set model.name_or_path"),
        ("tensor_parallel_size", "set backend.tensor_parallel_size"),
    ],
)
def test_engine_args_may_not_set_what_llem_sets(key, fix):
    with pytest.raises(
        UsageError, match=re.escape(f"backend.engine_args.{key}: llem sets this one: {fix}")
    ):
        check_engine_args({key: 1}, FIELDS)


# ----------------------------------------------------------------- LLM and SamplingParams arguments


def test_engine_kwargs_on_cpu_defaults():
    kw = kwargs_of(exp(), "/m", "float32", "cpu")
    assert kw == {
        "model": "/m",
        "tokenizer": "/m",
        "dtype": "float32",
        "seed": 42,
        "trust_remote_code": False,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "enforce_eager": False,
        "enable_prefix_caching": False,
        "kv_cache_dtype": "auto",
        "disable_log_stats": False,
        "gpu_memory_utilization": CPU_MEMORY_UTILIZATION,
    }


def test_engine_kwargs_on_gpu_keeps_vllm_defaults_and_passes_every_key():
    assert "gpu_memory_utilization" not in kwargs_of(exp(), "/m", "bfloat16", "cuda")
    e = exp(
        "seed=7",
        "backend.tensor_parallel_size=2",
        "backend.pipeline_parallel_size=2",
        "backend.gpu_memory_utilization=0.8",
        "backend.max_model_len=2048",
        "backend.max_num_seqs=16",
        "backend.max_num_batched_tokens=4096",
        "backend.enforce_eager=true",
        "backend.enable_prefix_caching=true",
        "backend.kv_cache_dtype=fp8",
        "backend.quantization=awq",
        "backend.trust_remote_code=true",
        "+backend.engine_args.block_size=32",
    )
    kw = kwargs_of(e, "org/model", "bfloat16", "cuda", revision="abc")
    assert kw["revision"] == "abc" and kw["seed"] == 7
    assert {
        k: kw[k]
        for k in (
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "gpu_memory_utilization",
            "max_model_len",
            "max_num_seqs",
            "max_num_batched_tokens",
            "enforce_eager",
            "enable_prefix_caching",
            "kv_cache_dtype",
            "quantization",
            "trust_remote_code",
            "block_size",
        )
    } == {
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "max_model_len": 2048,
        "max_num_seqs": 16,
        "max_num_batched_tokens": 4096,
        "enforce_eager": True,
        "enable_prefix_caching": True,
        "kv_cache_dtype": "fp8",
        "quantization": "awq",
        "trust_remote_code": True,
        "block_size": 32,
    }


def test_sampling_kwargs_fixed_length_greedy():
    assert sampling_kwargs(exp("max_new_tokens=8"), 8, seed=3) == {
        "n": 1,
        "max_tokens": 8,
        "min_tokens": 8,
        "ignore_eos": True,
        "detokenize": False,
        "temperature": 0.0,
    }
    assert sampling_kwargs(exp("max_new_tokens=8"), 1)["min_tokens"] == 1  # prefill pass


def test_sampling_kwargs_stop_at_eos_and_sampling():
    kw = sampling_kwargs(
        exp(
            "stop_at_eos=true",
            "decoding.strategy=sample",
            "decoding.temperature=0.7",
            "decoding.top_p=0.9",
            "decoding.top_k=50",
        ),
        16,
        seed=45,
    )
    assert kw == {
        "n": 1,
        "max_tokens": 16,
        "min_tokens": 0,
        "ignore_eos": False,
        "detokenize": False,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 50,
        "seed": 45,
    }


def test_device_must_match_the_vllm_build():
    assert resolve_device("auto", "cpu") == "cpu" and resolve_device("cuda", "cuda") == "cuda"
    with pytest.raises(
        UsageError, match=r"backend\.device=cuda but the installed vLLM is a CPU build"
    ):
        resolve_device("cuda", "cpu")
    with pytest.raises(
        UsageError, match=r"backend\.device=cpu but the installed vLLM is vLLM's CUDA build"
    ):
        resolve_device("cpu", "cuda")


# --------------------------------------------------------------------------- request records


def _out(prompt_len: int, n: int, first: float | None, last: float | None):
    metrics = None if first is None else SimpleNamespace(first_token_ts=first, last_token_ts=last)
    return SimpleNamespace(
        prompt_token_ids=list(range(prompt_len)),
        outputs=[SimpleNamespace(token_ids=list(range(n)))],
        metrics=metrics,
    )


BATCH = [Prompt(0, (1, 2, 3)), Prompt(5, (1, 2))]


def test_spread():
    assert spread(1.0, 2.0, 5) == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert spread(1.0, 1.0, 1) == [1.0] and spread(1.0, 1.0, 0) == []


def test_records_from_vllm_metrics():
    # engine clock = host clock - 100 s: the offset moves it back
    outs = [_out(3, 4, 10.2 - 100, 10.5 - 100), _out(2, 1, 10.3 - 100, 10.3 - 100)]
    records, problem = to_records(BATCH, outs, 10.0, 10.6, clock_offset=100.0)
    assert problem is None
    a, b = records
    assert (a.index, a.input_tokens, a.output_tokens, a.start_s) == (0, 3, 4, 10.0)
    assert a.token_times_s == pytest.approx([10.2, 10.3, 10.4, 10.5])
    assert (b.index, b.output_tokens) == (5, 1) and b.token_times_s == pytest.approx([10.3])


@pytest.mark.parametrize(
    "outs,why",
    [
        ([_out(3, 4, None, None), _out(2, 1, 10.3, 10.3)], "no request metrics"),
        ([_out(3, 4, 10.2, 10.5), _out(2, 1, 11.3, 11.3)], "clock mismatch"),
    ],
)
def test_records_fall_back_to_batch_timing(outs, why):
    records, problem = to_records(BATCH, outs, 10.0, 10.6, clock_offset=0.0)
    assert why in problem
    assert [r.token_times_s for r in records] == [[10.6], [10.6]]  # TTFT = E2E = batch time, no ITL
    assert [r.output_tokens for r in records] == [4, 1]


def test_records_refuse_outputs_that_do_not_match_the_batch():
    with pytest.raises(RuntimeError, match="1 outputs for 2 prompts"):
        to_records(BATCH, [_out(3, 4, 1.0, 1.0)], 0.0, 2.0, 0.0)
    with pytest.raises(RuntimeError, match="expected 3"):
        to_records(BATCH, [_out(4, 4, 1.0, 1.0), _out(2, 1, 1.0, 1.0)], 0.0, 2.0, 0.0)


# -------------------------------------------------------------------------- parameters, GPUs, FLOPs


def test_checkpoint_parameters_reads_safetensors_headers(tmp_path: Path):
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
        "b": {"dtype": "F32", "shape": [5], "data_offsets": [48, 68]},
    }
    raw = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(68))
    assert checkpoint_parameters(tmp_path) == 17
    assert checkpoint_parameters(tmp_path / "missing") is None


def test_checkpoint_parameters_of_the_tiny_model_match_torch(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert checkpoint_parameters(tiny_model_dir) == sum(p.numel() for p in model.parameters())


def test_count_flops_is_analytic_per_request():
    backend = object.__new__(VllmBackend)  # no engine needed
    backend.experiment = exp("max_new_tokens=8")
    backend._output_tokens = {0: 8}
    count = backend.count_flops([BATCH])
    assert count.flops is None and count.reason == FLOPS_REASON
    assert count.batches == [(1, 3, 8), (1, 2, 8)]  # unmeasured prompt 5: max_new_tokens
    assert (count.requests, count.input_tokens, count.output_tokens) == (2, 5, 16)
    backend._warnings, backend._timing_problems = [], set()
    assert backend.warnings() == [ITL_NOTE]


def test_harness_batches_without_sort_by_length(monkeypatch):
    from llem.harness import make_batches

    e = exp("n=4", "batch=2")
    assert not hasattr(e.backend, "sort_by_length")
    prompts = [Prompt(i, (1,) * (10 - i)) for i in range(4)]
    assert make_batches(prompts, 2, getattr(e.backend, "sort_by_length", False)) == [
        prompts[:2],
        prompts[2:],
    ]


# --------------------------------------------------------------------------- the real engine


@pytest.mark.skipif(
    not HAS_VLLM, reason="vLLM is not installed (scripts/check_vllm_cpu.sh makes a venv with it)"
)
def test_real_vllm_engine_generates_exact_token_counts(tiny_model_dir):
    from llem.backends import load_backend
    from llem.datasets import load_prompts
    from llem.harness import make_batches

    e = exp(
        "n=4",
        "batch=2",
        "max_new_tokens=5",
        "precision=fp32",
        "backend.enforce_eager=true",
        "backend.gpu_memory_utilization=0.15",
    )
    backend = load_backend(e)
    ps, idx, _ = load_prompts(e.dataset, e.n, 0)
    prompts = backend.prepare(ps, idx)
    try:
        model = backend.load()
        assert (model.dtype, model.device, model.architecture) == (
            "float32",
            "cpu",
            "LlamaForCausalLM",
        )
        assert model.parameters == checkpoint_parameters(tiny_model_dir)
        backend.reset_peak_memory()
        records = []
        for batch in make_batches(prompts, 2):
            records += backend.generate(batch)
        assert [r.output_tokens for r in records] == [5] * 4
        assert [r.input_tokens for r in records] == [p.input_tokens for p in prompts]
        for r in records:
            assert len(r.token_times_s) == 5 and r.token_times_s == sorted(r.token_times_s)
            assert r.start_s < r.token_times_s[0]
        assert backend._timing_problems == set()
        backend.prefill(prompts[:2])
        peak, what = backend.peak_memory()
        assert peak and "child" in what
        assert backend.count_flops([prompts[:2]]).batches == [
            (1, p.input_tokens, 5) for p in prompts[:2]
        ]
    finally:
        backend.close()
    assert backend.llm is None
