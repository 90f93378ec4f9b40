"""The PyTorch backend on real (random-weight) models: tokens, EOS handling, precision rule,
FLOPs."""

from __future__ import annotations

import pytest
import torch

from llem.backends import load_backend
from llem.backends.precision import resolve_dtype
from llem.config import validate
from llem.datasets import load_prompts
from llem.errors import UsageError
from llem.flops import analytic_flops
from llem.harness import make_batches
from tests.helpers import config_with


def _backend(**changes):
    exp = validate(config_with(**changes))
    backend = load_backend(exp)
    ps, idx, _ = load_prompts(exp.dataset, exp.n, 0)
    return backend, ps, idx


def test_precision_rule_on_cpu():
    assert resolve_dtype("bf16", "cpu", native_bf16=True) == ("bfloat16", None)
    dtype, warning = resolve_dtype("bf16", "cpu", native_bf16=False)
    assert dtype == "float32" and "no native bf16" in warning
    dtype, warning = resolve_dtype("fp16", "cpu", native_bf16=True)
    assert dtype == "float32" and "fp16" in warning
    assert resolve_dtype("fp16", "cuda", native_bf16=False) == ("float16", None)


def test_fixed_length_generation_counts_exact_tokens(tiny_model_dir):
    backend, ps, idx = _backend(n=3, batch=3, max_new_tokens=7)
    prompts = backend.prepare(ps, idx)
    backend.load()
    records = backend.generate(prompts)
    assert [r.output_tokens for r in records] == [7, 7, 7]
    assert [r.input_tokens for r in records] == [p.input_tokens for p in prompts]
    assert len({p.input_tokens for p in prompts}) > 1  # padding was needed and not counted
    assert all(
        len(r.token_times_s) == 7 and r.token_times_s == sorted(r.token_times_s) for r in records
    )
    assert records[0].token_times_s[0] > records[0].start_s


def test_output_count_stops_at_first_eos(tiny_model_dir):
    backend, ps, idx = _backend(n=2, stop_at_eos=True)
    backend.prepare(ps, idx)
    backend.load()
    eos, pad = backend.tokenizer.eos_token_id, backend.tokenizer.pad_token_id
    new = torch.tensor([[5, 6, eos, pad], [5, 6, 7, 8]])
    assert backend._output_counts(new) == [3, 4]


def test_chat_template_and_truncation_keep_the_generation_prompt(tiny_model_dir):
    backend, ps, idx = _backend(n=20, max_input_tokens=40)
    prompts = backend.prepare(ps, idx)
    assert backend.chat_template_applied
    assert max(p.input_tokens for p in prompts) <= 40 and any(p.truncated for p in prompts)
    suffix = backend.tokenizer("<|assistant|>\n", add_special_tokens=False)["input_ids"]
    assert all(list(p.token_ids[-len(suffix) :]) == suffix for p in prompts)


def test_chat_template_always_without_template_is_an_error(gpt2_model_dir):
    backend, ps, idx = _backend(
        **{"n": 2, "model.name_or_path": str(gpt2_model_dir), "dataset.chat_template": "always"}
    )
    with pytest.raises(UsageError, match="has no chat template"):
        backend.prepare(ps, idx)


def test_local_gpt2_folder_without_pad_token(gpt2_model_dir):
    backend, ps, idx = _backend(
        **{
            "n": 4,
            "batch": 2,
            "max_new_tokens": 3,
            "precision": "fp32",
            "max_input_tokens": 64,
            "model.name_or_path": str(gpt2_model_dir),
        }
    )
    prompts = backend.prepare(ps, idx)
    model = backend.load()
    assert model.source == "local" and not model.random_weights and not model.chat_template_applied
    assert model.context_length == 256 and model.architecture == "GPT2LMHeadModel"
    count = backend.count_flops(make_batches(prompts, 2))
    assert count.flops == analytic_flops(model.config, count.batches)


def test_context_too_short_is_a_usage_error(gpt2_model_dir):
    backend, ps, idx = _backend(**{"n": 20, "model.name_or_path": str(gpt2_model_dir)})
    with pytest.raises(
        UsageError, match=r"context of 256 tokens.*lower max_input_tokens or max_new_tokens"
    ):
        backend.prepare(ps, idx)


def test_make_batches_sorted_and_ragged():
    from llem.backends.base import Prompt

    prompts = [Prompt(i, tuple(range(n))) for i, n in enumerate([5, 1, 3, 2, 4])]
    assert [[p.index for p in b] for b in make_batches(prompts, 2)] == [[0, 1], [2, 3], [4]]
    assert [[p.input_tokens for p in b] for b in make_batches(prompts, 2, sort_by_length=True)] == [
        [1, 2],
        [3, 4],
        [5],
    ]
