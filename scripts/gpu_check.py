"""GPU energy check (run through scripts/gpu_check.sh on a machine with an NVIDIA GPU).

1. Builds a random-weight Llama (~1.1B parameters, bf16) locally from llem's tiny tokenizer: no hub.
2. Runs the real ``llem`` command on CUDA with ``energy=nvml`` (2 repeats of a window > 10 s,
   synthetic 512-token prompts, 128 new tokens, idle baseline 10 s).
3. For each repeat compares the NVML counter energy with the integral of the instant-power samples
   in ``timeseries.parquet``; with Zeus installed, runs once more with ``energy=zeus`` and compares
   J/token.
4. With vLLM installed, runs the same model, prompts and output length under ``backend=vllm`` and
   prints the two engines side by side (throughput, latency, energy per token).
5. Prints a table and exits 1 when any energy pair disagrees by more than 10% (2 when it could not
   run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOLERANCE = 0.10
WORK = Path(os.environ.get("LLEM_GPU_CHECK_DIR", "/tmp/llem-gpu-check"))


def build_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llem.models.tiny import ensure_tiny_llama

    tiny = ensure_tiny_llama()
    folder.mkdir(parents=True, exist_ok=True)
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, folder / f.name)
    src = json.loads((tiny / "config.json").read_text())
    config = LlamaConfig(
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=src["vocab_size"],
        max_position_embeddings=4096,
        bos_token_id=src["bos_token_id"],
        eos_token_id=src["eos_token_id"],
        pad_token_id=src["pad_token_id"],
        dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters in {folder}")
    del model
    torch.cuda.empty_cache()


def run_llem(
    model: Path, out: Path, energy: str, n: int, repeats: int, backend: str = "pytorch"
) -> dict:
    args = [
        sys.executable,
        "-m",
        "llem",
        f"backend={backend}",
        f"model.name_or_path={model}",
        "backend.device=cuda",
        "precision=bf16",
        f"energy={energy}",
        "energy.codecarbon=false",
        "energy.baseline.duration_s=10",
        "energy.baseline.max_age_h=0",
        "energy.sample_interval_ms=50",
        "dataset=synthetic",
        "dataset.input_tokens=512",
        f"n={n}",
        "batch=64",
        "max_new_tokens=128",
        "warmup_batches=1",
        f"repeats={repeats}",
        "repeat_gap_s=2",
        "flops.max_batches=1",
        f"output_dir={out}",
        "quiet=true",
    ]
    print("$", " ".join(args[2:]))
    t0 = time.time()
    proc = subprocess.run(args, text=True, capture_output=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(2)
    (path,) = sorted(out.glob("*/result.json"))[-1:]
    print(f"  done in {time.time() - t0:.0f} s -> {path}")
    return json.loads(path.read_text()) | {"_folder": str(path.parent)}


def integrated(folder: Path, window: str) -> float | None:
    import pyarrow.parquet as pq

    rows = [
        r
        for r in pq.read_table(folder / "timeseries.parquet").to_pylist()
        if r["phase"] == window and r["device"] == "gpu0" and r["power_w"] is not None
    ]
    pts = sorted((r["time_unix_s"], r["power_w"]) for r in rows)
    if len(pts) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(pts))


def disagreement(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else abs(a - b) / a


def compare_engines(model: Path, pytorch: dict, opts) -> None:
    """With vLLM installed here: the same model, prompts and output length under vLLM."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        print("vLLM not installed here: engine comparison skipped")
        return
    vllm = run_llem(model, WORK / "results-vllm", "nvml", opts.n, 1, backend="vllm")
    rows = (
        ("output tok/s", ("throughput", "output_tokens_per_s"), 1),
        ("TTFT p50 (ms)", ("latency", "ttft_ms", "p50"), 1),
        ("E2E p50 (ms)", ("latency", "e2e_ms", "p50"), 1),
        ("energy (mJ/output token)", ("energy", "per_output_token_j"), 1e3),
        ("energy (Wh/1k requests)", ("energy", "wh_per_1k_requests"), 1),
    )
    print(f"\n{'metric':<26} {'pytorch':>12} {'vllm':>12}")
    for label, path, scale in rows:
        values = []
        for result in (pytorch, vllm):
            v = result
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            values.append("null" if v is None else f"{v * scale:.4g}")
        print(f"{label:<26} {values[0]:>12} {values[1]:>12}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=512, help="prompts per window (512 keeps an H200 busy > 10 s)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU visible to torch: nothing to check")
        return 2
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    model = WORK / "model"
    if not (model / "config.json").exists():
        build_model(model)
    rows, failed = [], False
    nvml = run_llem(model, WORK / "results-nvml", "nvml", opts.n, opts.repeats)
    e = nvml["energy"]
    for r in e["readings"]:
        if not r["window"].startswith("repeat-"):
            continue
        power = integrated(Path(nvml["_folder"]), r["window"])
        d = disagreement(r["energy_j"], power)
        failed |= d is None or d > TOLERANCE
        rows.append(
            (
                r["window"],
                f"{r['duration_s']:.1f} s",
                f"{r['energy_j']:.1f} J" if r["energy_j"] else "null",
                f"{power:.1f} J" if power else "null",
                f"{d * 100:.1f}%" if d is not None else "n/a",
            )
        )
    print(
        "\ncounter (nvmlDeviceGetTotalEnergyConsumption) vs integrated POWER_INSTANT samples (50 "
        "ms)"
    )
    print(f"{'window':<10} {'length':>8} {'counter':>12} {'integrated':>12} {'diff':>7}")
    for row in rows:
        print(f"{row[0]:<10} {row[1]:>8} {row[2]:>12} {row[3]:>12} {row[4]:>7}")
    for b in e["baseline"]:
        print(
            f"idle baseline {b['device']}: {b['idle_power_w']:.1f} W over {b['duration_s']:.0f} s "
            f"({b['source']})"
        )
    print(
        f"NVML total {e['total_j']:.1f} J, {e['per_output_token_j'] * 1e3:.3f} mJ/output token, "
        f"{e['average_power_w']:.0f} W average, {e['wh_per_1k_requests']:.3f} Wh/1k requests; "
        f"baseline-adjusted {e['adjusted_total_j']:.1f} J"
    )
    print(
        f"throughput {nvml['throughput']['output_tokens_per_s']:.0f} output tok/s; warnings: "
        f"{nvml['warnings']}"
    )

    try:
        from llem.energy.zeus import zeus_status

        zeus_why = zeus_status()
    except Exception as exc:  # zeus import problems must not hide the NVML result
        zeus_why = str(exc)
    if zeus_why is None:
        zeus = run_llem(model, WORK / "results-zeus", "zeus", opts.n, 1)
        z, nv = zeus["energy"]["per_output_token_j"], e["per_output_token_j"]
        d = disagreement(nv, z)
        failed |= d is None or d > TOLERANCE
        print(
            f"Zeus {z * 1e3 if z else float('nan'):.3f} mJ/token vs NVML {nv * 1e3:.3f} mJ/token: "
            f"{d * 100 if d is not None else float('nan'):.1f}% apart"
        )
    else:
        print(f"Zeus not compared: {zeus_why}")
    compare_engines(model, nvml, opts)
    print("RESULT:", "FAIL (> 10% apart)" if failed else "PASS (all within 10%)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
