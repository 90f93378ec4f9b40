"""How much does llem cost on top of a bare ``model.generate`` loop?

Two measurements, one process:

1. Throughput: for each batch size, llem's :class:`~llem.harness.Harness` (tiny model, built-in
   prompts, no energy meter, no FLOP pass) against a bare loop that calls ``model.generate``
   directly on the SAME token ids (tokenised by llem's own backend, chat template included), same
   dtype, greedy, fixed output length, left padding, same batches, same warm-up, under
   ``torch.inference_mode``. Runs alternate (llem first on even repeats, bare first on odd ones);
   the median of the repeats is reported.
2. Fixed overhead of the ``llem`` command: wall time of ``llem n=1 batch=1 max_new_tokens=1 ...``
   in a subprocess minus the model load and measured window it reports in result.json, next to
   the wall time of ``python -c "import torch, transformers"`` for reference.

3. ``--process ROUNDS`` (instead of 1 and 2): whole processes, interleaved round by round — the
   ``llem`` command with its defaults (20 prompts, 32 tokens in / 32 out, batch 1) against
   ``bench/bare_generate.py`` (imports transformers, loads the same model, generates the same
   token ids with the same warm-up); wall ratio (goal <= 1.10) and measured output tok/s ratio
   (goal >= 0.97); the same bare script ending with ``os._exit`` as the ``llem`` command does
   (``--fast-exit``) gives the stricter ratio of what llem adds to the work itself; then
   ``llem --help`` (goal <= 0.8 s) and ``llem config`` (goal <= 0.5 s) wall and whether either
   imported torch.

A report, not a test: nothing is asserted and the exit code is 0.

    python bench/bench_overhead.py [--n 64] [--repeats 3] [--batches 1,8]
    python bench/bench_overhead.py --process 5
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.97  # llem throughput / bare throughput
MAX_NEW_TOKENS = 32
WARMUP_BATCHES = 2


def experiment_config(n: int, batch: int, output_dir: str):
    """The packaged experiment (pytorch, tiny, builtin) with this benchmark's settings."""
    from llem.preflight import experiment

    return experiment(
        f"n={n}",
        f"batch={batch}",
        f"max_new_tokens={MAX_NEW_TOKENS}",
        "energy=none",
        f"warmup_batches={WARMUP_BATCHES}",
        "flops.enabled=false",
        f"output_dir={output_dir}",
        "quiet=true",
    )


# --------------------------------------------------------------------------- the bare baseline


class Bare:
    """Everything the bare loop needs, prepared once per batch size (outside any timing)."""

    def __init__(self, cfg) -> None:
        from llem.backends import load_backend
        from llem.datasets import load_prompts
        from llem.harness import make_batches

        backend = load_backend(cfg)  # used for tokenisation and dtype/device resolution only
        prompt_set, measured_idx, warmup_idx = load_prompts(
            cfg.dataset, cfg.n, cfg.warmup_batches * cfg.batch
        )
        prompts = backend.prepare(prompt_set, measured_idx + warmup_idx)
        measured, warm = prompts[: cfg.n], prompts[cfg.n :]
        self.path = backend.source.path
        self.local_files_only = backend.source.local_files_only
        self.dtype = backend.dtype
        self.device = backend.device
        self.tokenizer = backend.tokenizer
        self.chat_template_applied = backend.chat_template_applied
        self.batches = [self._collate(b) for b in make_batches(measured, cfg.batch)]
        self.warm = [self._collate(b) for b in make_batches(warm, cfg.batch)]
        self.expected_tokens = cfg.n * cfg.max_new_tokens
        backend.close()

    def _collate(self, batch) -> dict:
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(p.input_tokens for p in batch)
        ids = [[pad] * (width - p.input_tokens) + list(p.token_ids) for p in batch]
        mask = [[0] * (width - p.input_tokens) + [1] * p.input_tokens for p in batch]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def run(self) -> tuple[float, int]:
        """Load, warm up, then time the loop over the measured batches: (output tok/s, tokens)."""
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=self.dtype, local_files_only=self.local_files_only
        )
        model = model.to(self.device).eval()
        eos = model.generation_config.eos_token_id
        gen = GenerationConfig(
            max_new_tokens=MAX_NEW_TOKENS,
            min_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=eos if eos is not None else self.tokenizer.eos_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        batches = [{k: v.to(model.device) for k, v in b.items()} for b in self.batches]
        warm = [{k: v.to(model.device) for k, v in b.items()} for b in self.warm]
        cuda = model.device.type == "cuda"
        outs = []
        with torch.inference_mode():
            for b in warm:
                model.generate(**b, generation_config=gen)
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for b in batches:
                outs.append(model.generate(**b, generation_config=gen))
            if cuda:
                torch.cuda.synchronize()
            window = time.perf_counter() - start
        tokens = sum(
            (o.shape[1] - b["input_ids"].shape[1]) * o.shape[0]
            for o, b in zip(outs, batches, strict=True)
        )
        del model, outs
        return tokens / window, tokens


def run_llem(cfg) -> tuple[float, int, list[str]]:
    from llem.harness import Harness

    with tempfile.TemporaryDirectory(prefix="llem-bench-run-") as run_dir:
        result = Harness(cfg, Path(run_dir)).run()
    return result.throughput.output_tokens_per_s, result.tokens.output, result.warnings


# ------------------------------------------------------------------ fixed overhead (subprocess)


def llem_command() -> list[str]:
    local = Path(sys.executable).parent / "llem"
    exe = str(local) if local.exists() else shutil.which("llem")
    if exe is None:
        raise SystemExit("the llem console command is not installed in this environment")
    return [exe]


def startup_overhead(tmp_root: str) -> tuple[float, float, float, float]:
    """(wall, model_load_s, measured_window_s, wall - load - window) of one `llem` subprocess."""
    out = tempfile.mkdtemp(prefix="llem-startup-", dir=tmp_root)
    cmd = [
        *llem_command(),
        "n=1",
        "batch=1",
        "max_new_tokens=1",
        "warmup_batches=0",
        "quiet=true",
        "energy=none",
        "flops.enabled=false",
        f"output_dir={out}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    found = glob.glob(os.path.join(out, "**", "result.json"), recursive=True)
    if len(found) != 1:
        raise SystemExit(f"expected one result.json under {out}, found {found}")
    timing = json.loads(Path(found[0]).read_text())["timing"]
    load, window = timing["model_load_s"], timing["measured_window_s"]
    return wall, load, window, wall - load - window


def import_wall() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers"], check=True)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- whole processes

PROCESS_ARGS = ("n=20", "batch=1", f"max_new_tokens={MAX_NEW_TOKENS}", "max_input_tokens=32")
BARE = Path(__file__).with_name("bare_generate.py")
WALL_GOAL, HELP_GOAL_S, CONFIG_GOAL_S = 1.10, 0.8, 0.5


def write_workload(folder: str) -> str:
    """The token ids llem's backend makes for :data:`PROCESS_ARGS` (batch 1), for the bare run."""
    from llem.backends import load_backend
    from llem.datasets import load_prompts
    from llem.preflight import experiment

    cfg = experiment(*PROCESS_ARGS)
    backend = load_backend(cfg)
    prompt_set, measured_idx, warmup_idx = load_prompts(cfg.dataset, cfg.n, cfg.warmup_batches)
    prompts = backend.prepare(prompt_set, measured_idx + warmup_idx)
    work = {
        "model": str(backend.source.path),
        "dtype": str(backend.dtype).removeprefix("torch."),
        "max_new_tokens": MAX_NEW_TOKENS,
        "measured": [list(p.token_ids) for p in prompts[: cfg.n]],
        "warmup": [list(p.token_ids) for p in prompts[cfg.n :]],
    }
    path = os.path.join(folder, "workload.json")
    Path(path).write_text(json.dumps(work))
    return path


def timed(cmd: list[str]) -> tuple[float, str]:
    """(wall s, stdout) of a command that must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def llem_process(folder: str) -> tuple[float, float]:
    """(wall s, measured output tok/s) of one ``llem`` run with its defaults."""
    out = tempfile.mkdtemp(prefix="llem-run-", dir=folder)
    wall, _ = timed([*llem_command(), *PROCESS_ARGS, "quiet=true", f"output_dir={out}"])
    (found,) = glob.glob(os.path.join(out, "**", "result.json"), recursive=True)
    return wall, json.loads(Path(found).read_text())["throughput"]["output_tokens_per_s"]


def bare_process(workload: str, fast_exit: bool = False) -> tuple[float, float]:
    flags = ["--fast-exit"] if fast_exit else []
    wall, out = timed([sys.executable, str(BARE), workload, *flags])
    got = json.loads(out.strip().splitlines()[-1])
    return wall, got["output_tokens"] / got["window_s"]


def command_wall(args: list[str]) -> tuple[float, bool]:
    """(wall s, torch imported) of ``llem <args>``, run as the console script does."""
    probe = (
        "import atexit, sys; "
        "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules)); "
        f"from llem.cli import main; main({args!r})"
    )
    _, out = timed([sys.executable, "-c", probe])
    wall, _ = timed([*llem_command(), *args])
    return wall, out.strip().splitlines()[-1] == "torch imported: True"


def processes(rounds: int) -> None:
    tmp_root = tempfile.mkdtemp(prefix="llem-bench-")
    try:
        workload = write_workload(tmp_root)
        runs: dict[str, list[tuple[float, float]]] = {"llem": [], "bare": [], "bare_fast": []}
        for r in range(rounds):
            order = ("llem", "bare", "bare_fast")
            for who in order if r % 2 == 0 else order[::-1]:
                run = (
                    llem_process(tmp_root)
                    if who == "llem"
                    else bare_process(workload, fast_exit=who == "bare_fast")
                )
                runs[who].append(run)
        helps = [command_wall(["--help"]) for _ in range(rounds)]
        configs = [command_wall(["config"]) for _ in range(rounds)]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    def med(who: str, i: int) -> float:
        return statistics.median(x[i] for x in runs[who])

    wall_ratio, tps_ratio = med("llem", 0) / med("bare", 0), med("llem", 1) / med("bare", 1)
    print(
        f"whole processes, {rounds} interleaved rounds (median), {os.cpu_count()} CPUs: "
        f"llem {' '.join(PROCESS_ARGS)} (defaults otherwise) vs bench/bare_generate.py"
    )
    for who in ("llem", "bare", "bare_fast"):
        walls = ", ".join(f"{w:.2f}" for w, _ in runs[who])
        print(f"  {who}: wall {med(who, 0):.2f} s (runs {walls}), {med(who, 1):.1f} output tok/s")
    print(
        f"  wall llem/bare {wall_ratio:.3f} (goal <= {WALL_GOAL}): {_met(wall_ratio <= WALL_GOAL)}"
    )
    strict = med("llem", 0) / med("bare_fast", 0)
    print(
        f"  wall llem/bare_fast {strict:.3f} (bare ending with os._exit as llem does: the "
        "overhead llem adds to the work itself; no goal)"
    )
    print(f"  output tok/s llem/bare {tps_ratio:.3f} (goal >= {GOAL}): {_met(tps_ratio >= GOAL)}")
    for name, got, goal in (("--help", helps, HELP_GOAL_S), ("config", configs, CONFIG_GOAL_S)):
        wall = statistics.median(w for w, _ in got)
        torch_in = any(t for _, t in got)
        print(
            f"  llem {name}: wall {wall:.2f} s (goal <= {goal} s): {_met(wall <= goal)}; "
            f"torch imported: {torch_in}"
        )


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="measured prompts per run (default 64)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of each measurement; the median is shown"
    )
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument(
        "--process", type=int, metavar="ROUNDS", help="whole-process comparison instead (section 3)"
    )
    args = ap.parse_args(argv)
    if args.process:
        processes(args.process)
        return 0
    batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]

    import logging

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    logging.getLogger("llem").setLevel(logging.WARNING)

    tmp_root = tempfile.mkdtemp(prefix="llem-bench-")
    try:
        print(
            f"llem vs bare model.generate: tiny-llama, builtin prompts, n={args.n}, "
            f"max_new_tokens={MAX_NEW_TOKENS}, warmup_batches={WARMUP_BATCHES}, greedy, "
            f"torch threads={torch.get_num_threads()}, repeats={args.repeats} (median shown)"
        )
        rows = []
        for batch in batch_sizes:
            cfg = experiment_config(args.n, batch, tmp_root)
            bare = Bare(cfg)
            llem_runs, bare_runs, notes = [], [], set()
            for r in range(args.repeats):
                order = ("llem", "bare") if r % 2 == 0 else ("bare", "llem")
                for who in order:
                    gc.collect()
                    if who == "llem":
                        tps, tokens, warnings = run_llem(cfg)
                        llem_runs.append(tps)
                        notes.update(w for w in warnings if w.startswith("expected"))
                    else:
                        tps, tokens = bare.run()
                        bare_runs.append(tps)
                    if tokens != bare.expected_tokens:
                        notes.add(f"{who}: {tokens} output tokens, expected {bare.expected_tokens}")
            llem_med, bare_med = statistics.median(llem_runs), statistics.median(bare_runs)
            rows.append((batch, llem_med, bare_med, llem_med / bare_med))
            print(
                f"  batch={batch} dtype={str(bare.dtype).removeprefix('torch.')} "
                f"device={bare.device} "
                f"chat_template={bare.chat_template_applied}  "
                f"llem runs: {', '.join(f'{x:.0f}' for x in llem_runs)}  "
                f"bare runs: {', '.join(f'{x:.0f}' for x in bare_runs)} tok/s"
            )
            for note in sorted(notes):
                print(f"    note: {note}")

        print()
        print(
            f"{'batch':>5}  {'llem tok/s':>11}  {'bare tok/s':>11}  {'llem/bare':>9}  "
            f"goal >= {GOAL}"
        )
        for batch, lt, bt, ratio in rows:
            print(f"{batch:>5}  {lt:>11.1f}  {bt:>11.1f}  {ratio:>9.3f}  {_met(ratio >= GOAL)}")

        print()
        print("llem fixed overhead (start-up to first measured token, excluding model load):")
        print(
            "  llem n=1 batch=1 max_new_tokens=1 warmup_batches=0 quiet=true energy=none "
            "flops.enabled=false output_dir=<tmp>"
        )
        startups, imports = [], []
        for _ in range(args.repeats):
            startups.append(startup_overhead(tmp_root))
            imports.append(import_wall())
        med = [statistics.median(s[i] for s in startups) for i in range(4)]
        print(
            f"  subprocess wall {med[0]:.2f} s - model_load_s {med[1]:.2f} s - "
            f"measured_window_s {med[2]:.3f} s"
            f" = overhead {med[3]:.2f} s   (median of {args.repeats}; runs: "
            f"{', '.join(f'{s[3]:.2f}' for s in startups)} s)"
        )
        print(
            '  reference: python -c "import torch, transformers" wall '
            f"{statistics.median(imports):.2f} s "
            f"(runs: {', '.join(f'{x:.2f}' for x in imports)} s)"
        )
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
