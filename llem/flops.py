"""FLOPs of autoregressive generation: a closed form, and torch's FLOP counter completed on CPU.

Convention (same as ``torch.utils.flop_counter``): a multiply-add is 2 FLOPs; only matrix products
and attention are counted (norms, activations, softmax and rotary embeddings are a few % and are
not). Generation of ``T`` new tokens for a batch of ``B`` prompts left-padded to ``L`` tokens runs
one prefill forward over ``L`` positions and ``T - 1`` decode forwards of one position each,
attending to ``L + i`` cached positions; the LM head runs on the last position only (transformers'
``logits_to_keep=1``). Attention is counted over every key position, as the kernels compute it (the
causal mask saves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

# model_type values whose MLP is gated (gate, up, down projections)
_GATED = {
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "mixtral",
    "gemma",
    "gemma2",
    "phi3",
    "olmo",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
}


@dataclass(frozen=True)
class DecoderShape:
    """The dimensions of a decoder-only transformer that decide its FLOPs."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool

    def linear_per_position(self) -> int:
        """Projection + MLP FLOPs for one position through all layers (LM head excluded)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn_proj = 2 * self.hidden * (q + 2 * kv) + 2 * q * self.hidden
        mlp = 2 * self.hidden * self.intermediate * (3 if self.gated_mlp else 2)
        return self.layers * (attn_proj + mlp)

    def attention(self, queries: int, keys: int) -> int:
        """QK^T and AV FLOPs for ``queries`` positions against ``keys`` positions, all layers."""
        return self.layers * 4 * queries * keys * self.heads * self.head_dim

    def generate(self, batch: int, input_len: int, new_tokens: int) -> int:
        """One ``generate``: ``batch`` prompts padded to ``input_len``, ``new_tokens`` steps."""
        if new_tokens < 1:
            return 0
        head = 2 * self.hidden * self.vocab
        prefill = (
            input_len * self.linear_per_position() + self.attention(input_len, input_len) + head
        )
        decode = sum(
            self.linear_per_position() + self.attention(1, input_len + i) + head
            for i in range(1, new_tokens)
        )
        return batch * (prefill + decode)


def decoder_shape(config: dict) -> DecoderShape | None:
    """The shape in an HF ``config.json`` dict; None for architectures without a formula here."""
    mt = config.get("model_type")
    if mt == "gpt2":
        h = config["n_embd"]
        return DecoderShape(
            h,
            config["n_layer"],
            config["n_head"],
            config["n_head"],
            h // config["n_head"],
            config.get("n_inner") or 4 * h,
            config["vocab_size"],
            gated_mlp=False,
        )
    if mt not in _GATED:
        return None
    h, heads = config["hidden_size"], config["num_attention_heads"]
    return DecoderShape(
        hidden=h,
        layers=config["num_hidden_layers"],
        heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or h // heads,
        intermediate=config["intermediate_size"],
        vocab=config["vocab_size"],
        gated_mlp=True,
    )


def analytic_flops(config: dict, batches: list[tuple[int, int, int]]) -> int | None:
    """Closed-form FLOPs of ``batches`` given as (batch size, padded input length, new tokens)."""
    shape = decoder_shape(config)
    if shape is None:
        return None
    return sum(shape.generate(b, L, t) for b, L, t in batches)


def register_cpu_sdpa_formula() -> None:
    """Give torch's FLOP counter a formula for CPU flash attention (it counts 0 otherwise)."""
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None or op in flop_registry or op.default in flop_registry:
        return

    def cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    register_flop_formula(op)(cpu_sdpa)
