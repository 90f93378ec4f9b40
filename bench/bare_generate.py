"""The bare baseline of ``bench_overhead.py --process``: a script doing only what any user would —
import transformers, load the model, generate — on the workload llem ran (no llem import).

    python bench/bare_generate.py workload.json [--fast-exit]

``workload.json``: ``{"model": path, "dtype": "float32", "max_new_tokens": 32, "warmup": [[ids]],
"measured": [[ids]]}`` (batch 1). Prints ``{"output_tokens": N, "window_s": S}`` (measured loop).
``--fast-exit`` ends the process as the ``llem`` console script does (``os._exit`` after flushing,
skipping the interpreter's teardown of torch's modules): the stricter baseline.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, GenerationConfig


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        work = json.load(f)
    model = AutoModelForCausalLM.from_pretrained(
        work["model"], dtype=getattr(torch, work["dtype"]), local_files_only=True
    ).eval()
    n = work["max_new_tokens"]
    eos = model.generation_config.eos_token_id
    pad = eos[0] if isinstance(eos, list) else eos
    gen = GenerationConfig(
        max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=pad
    )
    tokens = 0
    with torch.inference_mode():
        for ids in work["warmup"]:
            model.generate(torch.tensor([ids]), generation_config=gen)
        start = time.perf_counter()
        for ids in work["measured"]:
            out = model.generate(torch.tensor([ids]), generation_config=gen)
            tokens += out.shape[1] - len(ids)
        window = time.perf_counter() - start
    print(json.dumps({"output_tokens": tokens, "window_s": window}))


if __name__ == "__main__":
    main(sys.argv[1])
    if "--fast-exit" in sys.argv[2:]:
        sys.stdout.flush()
        os._exit(0)
