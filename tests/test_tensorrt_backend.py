"""The TensorRT-LLM backend's config mapping and result assembly, against a stand-in
``tensorrt_llm`` (the real package cannot be installed on these machines); and its pre-flight
message when absent."""

from __future__ import annotations

import sys

import pytest

from llem.backends.tensorrt.config import TensorRTConfig
from llem.config import validate
from tests.helpers import REPO, config_with, run_llem

STAND_INS = REPO / "tests" / "stand_ins"


def test_preflight_names_the_extra_when_tensorrt_llm_is_missing(tmp_path):
    proc = run_llem("backend=tensorrt", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "Error: backend 'tensorrt' is not installed: pip install llenergymeasure[tensorrt]  "
        "(TensorRT-LLM, NVIDIA-optimised)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_llm_and_sampling_kwargs():
    from llem.backends.tensorrt.backend import llm_kwargs, sampling_kwargs

    exp = validate(
        config_with(
            **{
                "backend": {
                    "name": "tensorrt",
                    "engine_dir": None,
                    "tensor_parallel_size": 2,
                    "pipeline_parallel_size": 1,
                    "max_batch_size": 64,
                    "max_num_tokens": None,
                    "max_seq_len": 4096,
                    "trust_remote_code": False,
                    "engine_args": {"enable_chunked_prefill": True},
                },
                "precision": "fp16",
                "max_new_tokens": 10,
            }
        )
    )
    assert isinstance(exp.backend, TensorRTConfig)
    kw = llm_kwargs(exp.backend, exp.precision, "/models/m")
    assert kw == {
        "model": "/models/m",
        "tokenizer": "/models/m",
        "dtype": "float16",
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 1,
        "trust_remote_code": False,
        "max_batch_size": 64,
        "max_seq_len": 4096,
        "enable_chunked_prefill": True,
    }
    assert llm_kwargs(exp.backend, exp.precision, "org/m", revision="abc")["revision"] == "abc"
    assert sampling_kwargs(exp, 10) == {
        "max_tokens": 10,
        "seed": 42,
        "min_tokens": 10,
        "ignore_eos": True,
        "temperature": 0.0,
        "top_k": 1,
    }
    eos = validate(
        config_with(
            **{
                "backend": exp.backend.model_dump(),
                "stop_at_eos": True,
                "decoding.strategy": "sample",
                "decoding.temperature": 0.7,
            }
        )
    )
    assert sampling_kwargs(eos, 5) == {
        "max_tokens": 5,
        "seed": 42,
        "temperature": 0.7,
        "top_p": 1.0,
    }


def test_result_assembly_through_the_harness(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.syspath_prepend(str(STAND_INS))
    sys.modules.pop("tensorrt_llm", None)
    import tensorrt_llm

    from llem.harness import Harness

    cfg = config_with(
        **{
            "n": 4,
            "batch": 2,
            "max_new_tokens": 6,
            "quiet": True,
            "energy.meter": "none",
            "backend": {
                "name": "tensorrt",
                "engine_dir": None,
                "tensor_parallel_size": 1,
                "pipeline_parallel_size": 1,
                "max_batch_size": None,
                "max_num_tokens": None,
                "max_seq_len": None,
                "trust_remote_code": False,
                "engine_args": {},
            },
        }
    )
    result = Harness(validate(cfg), tmp_path).run()
    assert result.tokens.output == 4 * 6 and result.tokens.requests == 4
    assert (
        result.latency.ttft_ms is None and result.latency.itl_ms is None
    )  # not measured: null, not invented
    assert result.latency.e2e_ms.count == 4 and result.latency.e2e_ms.min > 0
    assert (
        result.flops.counted is None
        and result.flops.analytic > 0
        and "closed form" in result.flops.reason
    )
    from llem.flops import analytic_flops

    unpadded = analytic_flops(
        result.model.config, [(1, q.input_tokens, 6) for q in result.requests]
    )
    assert (
        result.flops.analytic_window_total == unpadded
    )  # no padding in an engine that batches in flight
    assert result.model.parameters == 1016448 and result.model.random_weights
    assert any("TTFT and ITL are not measured" in w for w in result.warnings)
    assert any(w.startswith("random weights") for w in result.warnings)  # the shared HF base
    llm_calls = [kw for name, kw in tensorrt_llm.CALLS if name == "LLM"]
    assert llm_calls[-1]["model"] == str(tiny_model_dir) and llm_calls[-1]["dtype"] == "bfloat16"
    sys.modules.pop("tensorrt_llm", None)


def test_missing_engine_dir_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(STAND_INS))
    from llem.backends.tensorrt.backend import TensorRTBackend
    from llem.errors import UsageError

    cfg = config_with(
        **{
            "backend": {
                "name": "tensorrt",
                "engine_dir": str(tmp_path / "none"),
                "tensor_parallel_size": 1,
                "pipeline_parallel_size": 1,
                "max_batch_size": None,
                "max_num_tokens": None,
                "max_seq_len": None,
                "trust_remote_code": False,
                "engine_args": {},
            }
        }
    )
    exp = validate(cfg)
    assert isinstance(exp.backend, TensorRTConfig)
    with pytest.raises(UsageError, match=r"backend\.engine_dir"):
        TensorRTBackend(exp.backend, exp)
