"""``llem reproduce <run or job folder> [overrides]``: run a saved experiment again and compare.

The experiment is re-composed from the folder's ``.hydra/hydra.yaml`` — primary config (packaged or the
user's file), its group choices and every override — not from the frozen ``config.yaml``, which loses
group choices. It runs in a fresh ``llem`` process into a new folder; then the resolved configs are
compared (identical, or the differences listed) and the key metrics printed side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml

from llem.errors import UsageError

# Hydra overrides that belong to the original run's place and mode, not to the experiment
_PLACE = (
    "hydra.mode=",
    "hydra.run.dir=",
    "hydra.sweep.dir=",
    "hydra.sweep.subdir=",
    "hydra.job.num=",
    "hydra.job.id=",
)
METRICS = (
    ("output tok/s", ("throughput", "output_tokens_per_s")),
    ("total tok/s", ("throughput", "total_tokens_per_s")),
    ("TTFT p50 (ms)", ("latency", "ttft_ms", "p50")),
    ("ITL p50 (ms)", ("latency", "itl_ms", "p50")),
    ("E2E p50 (ms)", ("latency", "e2e_ms", "p50")),
    ("energy (J)", ("energy", "total_j")),
    ("energy / output token (J)", ("energy", "per_output_token_j")),
    ("FLOPs / output token", ("flops", "analytic_per_output_token")),
    ("peak memory (bytes)", ("memory", "peak_bytes")),
)


def command_line(folder: Path, extra: list[str], run_dir: Path) -> list[str]:
    """The llem arguments that re-compose the experiment saved in ``folder``."""
    hydra_yaml = folder / ".hydra" / "hydra.yaml"
    if not hydra_yaml.is_file():
        raise UsageError(
            f"{folder} has no .hydra/hydra.yaml: give a run folder or a study job folder"
        )
    h = yaml.safe_load(hydra_yaml.read_text())["hydra"]
    args: list[str] = []
    main = next((s for s in h["runtime"]["config_sources"] if s.get("provider") == "main"), None)
    if main and main["schema"] == "file":
        if not Path(main["path"]).is_dir():
            raise UsageError(f"the experiment's config folder {main['path']} no longer exists")
        args += ["--config-path", main["path"]]
    args += ["--config-name", h["job"]["config_name"]]
    args += [o for o in h["overrides"]["hydra"] if not o.startswith(_PLACE)]
    args += list(h["overrides"]["task"]) + extra
    return [*args, "hydra.mode=RUN", f"hydra.run.dir={run_dir}"]


def _get(data: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    a, b = _flat(old), _flat(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and k != "output_dir"
    ]


def main(args: list[str]) -> int:
    if not args:
        raise UsageError(
            "llem reproduce needs a folder: llem reproduce results/<run> [key=value ...]"
        )
    folder = Path(args[0]).expanduser().resolve()
    original_path = folder / "result.json"
    if not original_path.is_file():
        raise UsageError(
            f"{folder} has no result.json to compare with: give a finished run or job folder"
        )
    original = json.loads(original_path.read_text())
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    from llem.paths import claim_unique_dir

    run_dir = Path(
        claim_unique_dir(
            str(
                Path(original["config"]["output_dir"]).resolve()
                / f"{folder.name}_reproduced_{stamp}"
            )
        )
    )
    argv = command_line(folder, args[1:], run_dir)
    print(f"[llem] reproducing {folder}\n  llem {' '.join(argv)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "llem", *argv], check=False).returncode
    new_path = run_dir / "result.json"
    if code != 0 or not new_path.is_file():
        print(f"[llem] the reproduction failed (exit code {code})", file=sys.stderr)
        return code or 1
    new = json.loads(new_path.read_text())
    report(original, new, new_path)
    return 0


def report(original: dict, new: dict, new_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    diffs = config_differences(original["config"], new["config"])
    console = Console()
    if diffs:
        console.print(f"resolved config differs in {len(diffs)} key(s):", highlight=False)
        for d in diffs:
            console.print(f"  {d}", highlight=False, markup=False)
    else:
        console.print(
            "resolved config: identical (config hash "
            f"{new['config_hash']}{'' if new['config_hash'] == original['config_hash'] else ' CHANGED'})"
        )
    table = Table("metric", "original", "reproduced", "difference", title="original vs reproduced")
    for label, path in METRICS:
        a, b = _get(original, path), _get(new, path)
        numbers = isinstance(a, int | float) and isinstance(b, int | float) and a
        diff = f"{(b - a) / a * 100:+.1f}%" if numbers else "n/a"
        table.add_row(label, _fmt(a), _fmt(b), diff)
    console.print(table)
    print(f"result: {new_path}")


def _fmt(value) -> str:
    return "null" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
