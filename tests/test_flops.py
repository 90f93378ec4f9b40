"""Closed-form FLOPs against hand arithmetic and against torch's FLOP counter on real models."""

from __future__ import annotations

import pytest

from llem.flops import DecoderShape, analytic_flops, decoder_shape

LLAMA = {
    "model_type": "llama",
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 16,
    "vocab_size": 10,
}


def test_shape_from_configs():
    s = decoder_shape(LLAMA)
    assert (s.head_dim, s.kv_heads, s.gated_mlp) == (4, 1, True)
    g = decoder_shape(
        {
            "model_type": "gpt2",
            "n_embd": 8,
            "n_layer": 2,
            "n_head": 2,
            "n_inner": None,
            "vocab_size": 10,
        }
    )
    assert (g.intermediate, g.gated_mlp, g.kv_heads) == (32, False, 2)
    assert decoder_shape({"model_type": "mamba"}) is None
    assert analytic_flops({"model_type": "mamba"}, [(1, 2, 3)]) is None


def test_generate_flops_by_hand():
    s = decoder_shape(LLAMA)
    # per position: q 8x8, k,v 8x4 each, o 8x8 -> 2*8*(8+8)+2*8*8 = 384; gated MLP 3 * 2*8*16 = 768
    assert s.linear_per_position() == 384 + 768
    # prefill of 3 positions: 3*1152 + attention 4*3*3*8 = 288 + head 2*8*10 = 160
    prefill = 3 * 1152 + 288 + 160
    # one decode step (i=1): 1152 + 4*1*4*8 = 128 + 160
    decode = 1152 + 128 + 160
    assert s.generate(batch=2, input_len=3, new_tokens=2) == 2 * (prefill + decode)
    assert s.generate(1, 3, 0) == 0


@pytest.fixture(scope="module")
def backend_factory(tiny_model_dir):
    from llem.backends import load_backend
    from llem.config import validate
    from llem.datasets import load_prompts
    from tests.helpers import config_with

    def make(**changes):
        exp = validate(config_with(**changes))
        backend = load_backend(exp)
        ps, idx, _ = load_prompts(exp.dataset, exp.n, 0)
        prompts = backend.prepare(ps, idx)
        backend.load()
        return backend, prompts

    return make


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_counter_equals_closed_form_on_tiny_llama(backend_factory, attn):
    backend, prompts = backend_factory(
        **{
            "n": 4,
            "batch": 2,
            "max_new_tokens": 5,
            "precision": "fp32",
            "backend.attn_implementation": attn,
        }
    )
    batches = [prompts[:2], prompts[2:]]
    count = backend.count_flops(batches)
    assert count.flops > 0 and count.output_tokens == 4 * 5
    assert count.flops == analytic_flops(backend.hf_config.to_dict(), count.batches)


def test_cpu_sdpa_attention_is_counted(backend_factory):
    """Without the registered formula torch counts CPU flash attention as 0 FLOPs."""
    backend, prompts = backend_factory(**{"n": 1, "max_new_tokens": 2, "precision": "fp32"})
    count = backend.count_flops([prompts])
    s = DecoderShape(**vars(decoder_shape(backend.hf_config.to_dict())))
    without_attention = count.flops - sum(
        s.attention(q, k)
        for q, k in [
            (prompts[0].input_tokens, prompts[0].input_tokens),
            (1, prompts[0].input_tokens + 1),
        ]
    )
    assert 0 < without_attention < count.flops


def test_counting_each_distinct_shape_once_equals_the_full_count(backend_factory):
    """Batches of the same shape are counted once: the total equals counting every batch."""
    backend, prompts = backend_factory(
        **{"n": 3, "max_new_tokens": 3, "precision": "fp32", "max_input_tokens": 32}
    )
    assert len({p.input_tokens for p in prompts}) == 1  # truncated to one shape
    batches = [[p] for p in prompts] + [prompts[:2], prompts[1:]]
    once = backend.count_flops(batches)
    each = [backend.count_flops([b]) for b in batches]
    assert once.flops == sum(c.flops for c in each) > 0
    assert once.batches == [s for c in each for s in c.batches]
    assert once.output_tokens == sum(c.output_tokens for c in each) == 7 * 3


@pytest.mark.parametrize(
    ("batch", "n", "new"), [(1, 1, 8), (2, 4, 6), (3, 3, 33)], ids=["1x8", "2x6", "3x33"]
)
def test_summing_decode_steps_equals_counting_every_step(backend_factory, batch, n, new):
    """The FLOP pass counts the prefill and first decode steps and sums the rest: the total equals
    counting every step under torch's FLOP counter, with padded batches too."""
    backend, prompts = backend_factory(
        **{"n": n, "batch": batch, "max_new_tokens": new, "precision": "fp32"}
    )
    batches = [prompts[i : i + batch] for i in range(0, n, batch)]
    assert backend._sampled_count(batches[0]) is not None  # the sampled path is the one tested
    sampled = backend.count_flops(batches)
    full = backend.count_flops(batches, every_step=True)
    assert sampled.flops == full.flops > 0
    assert (sampled.batches, sampled.output_tokens) == (full.batches, full.output_tokens)
    assert "first 3 decode steps" in sampled.method and "first" not in full.method


def test_sliding_window_attention_the_run_reaches_counts_every_step(backend_factory):
    backend, prompts = backend_factory(**{"n": 1, "max_new_tokens": 8, "precision": "fp32"})
    backend.hf_config.sliding_window = prompts[0].input_tokens + 4
    assert backend._sampled_count(prompts) is None
    backend.hf_config.sliding_window = prompts[0].input_tokens + 8
    assert backend._sampled_count(prompts) is not None
