"""The built-in random-weight model: deterministic, cached, a normal HF folder, loaded offline."""

from __future__ import annotations

import hashlib

from llem.models import tiny


def _digest(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_build_is_byte_identical(tmp_path, tiny_model_dir):
    (tmp_path / "a").mkdir()
    tiny.build(tmp_path / "a")
    assert _digest(tmp_path / "a") == _digest(tiny_model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json", tiny.PROVENANCE_FILE} <= set(
        _digest(tiny_model_dir)
    )


def test_cached_folder_is_reused(tiny_model_dir):
    mtime = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_tiny_llama() == tiny_model_dir
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_provenance_says_random_weights(tiny_model_dir, tmp_path):
    prov = tiny.provenance(tiny_model_dir)
    assert prov["random_weights"] is True and prov["parameters"] > 500_000
    assert tiny.provenance(tmp_path) is None


def test_loads_with_from_pretrained_and_generates(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM" and tok.padding_side == "left"
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Explain photosynthesis."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
    assert ids["input_ids"][0, 0].item() == tok.bos_token_id
    assert (
        len(tok("Summarise the meeting notes below.")["input_ids"]) < 12
    )  # a trained BPE, not bytes
    assert torch.isfinite(model(**ids).logits).all()
