"""``llem reproduce <run or job folder> [overrides]``: run a saved experiment again and compare.

The experiment is re-composed from the folder's ``.hydra/hydra.yaml`` — primary config (packaged or
the user's file), its group choices and every override — not from the frozen ``config.yaml``, which
loses group choices. It runs in a fresh ``llem`` process into a new folder; then the resolved
configs are compared (identical, or the differences listed) and the key metrics printed side by
side.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from llem.errors import UsageError
from llem.keymetrics import COMPARED, Value
from llem.records import HYDRA_FILE, RESULT_FILE
from llem.result import Result

# Hydra overrides that belong to the original run's place and mode, not to the experiment
_PLACE = (
    "hydra.mode=",
    "hydra.run.dir=",
    "hydra.sweep.dir=",
    "hydra.sweep.subdir=",
    "hydra.job.num=",
    "hydra.job.id=",
)


def command_line(folder: Path, extra: list[str], run_dir: Path) -> list[str]:
    """The llem arguments that re-compose the experiment saved in ``folder``."""
    return [*recompose(folder), *extra, "hydra.mode=RUN", f"hydra.run.dir={run_dir}"]


def recompose(folder: Path) -> list[str]:
    """The saved experiment's arguments, from ``.hydra/hydra.yaml`` (a damaged one: UsageError)."""
    hydra_yaml = folder / HYDRA_FILE
    if not hydra_yaml.is_file():
        raise UsageError(
            f"{folder} has no .hydra/hydra.yaml: give a run folder or a study job folder"
        )
    try:
        h = yaml.safe_load(hydra_yaml.read_text(encoding="utf-8"))["hydra"]
        main = next(
            (s for s in h["runtime"]["config_sources"] if s.get("provider") == "main"), None
        )
        args: list[str] = []
        if main and main["schema"] == "file":
            if not Path(main["path"]).is_dir():
                raise UsageError(f"the experiment's config folder {main['path']} no longer exists")
            args += ["--config-path", main["path"]]
        args += ["--config-name", h["job"]["config_name"]]
        args += [o for o in h["overrides"]["hydra"] if not o.startswith(_PLACE)]
        return args + list(h["overrides"]["task"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{hydra_yaml} is damaged: cannot re-compose the experiment") from None


def _flat(d: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= _flat(v, key + ".") if isinstance(v, dict) else {key: v}
    return out


def config_differences(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
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
    original_path = folder / RESULT_FILE
    if not original_path.is_file():
        raise UsageError(
            f"{folder} has no {RESULT_FILE} to compare with: give a finished run or job folder"
        )
    original = _load(original_path)
    recompose(folder)  # every check before the new folder is made
    output_dir = original.config.get("output_dir")
    if not isinstance(output_dir, str):
        raise UsageError(f"{original_path} has no output_dir in its config: not an llem result")
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    from llem.paths import claim_unique_dir

    run_dir = Path(
        claim_unique_dir(str(Path(output_dir).resolve() / f"{folder.name}_reproduced_{stamp}"))
    )
    argv = command_line(folder, args[1:], run_dir)
    print(f"[llem] reproducing {folder}\n  llem {' '.join(argv)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "llem", *argv], check=False).returncode
    new_path = run_dir / RESULT_FILE
    if code != 0 or not new_path.is_file():
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only when the failed run left it empty
        print(f"[llem] the reproduction failed (exit code {code})", file=sys.stderr)
        return code or 1
    report(original, _load(new_path), new_path)
    return 0


def _load(path: Path) -> Result:
    try:
        return Result.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    except ValidationError as exc:
        raise UsageError(
            f"{path} is not a valid llem result ({exc.error_count()} problems)"
        ) from None


def report(original: Result, new: Result, new_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    diffs = config_differences(original.config, new.config)
    console = Console()
    if diffs:
        console.print(f"resolved config differs in {len(diffs)} key(s):", highlight=False)
        for d in diffs:
            console.print(f"  {d}", highlight=False, markup=False)
    else:
        console.print(
            "resolved config: identical (config hash "
            f"{new.config_hash}{'' if new.config_hash == original.config_hash else ' CHANGED'})"
        )
    table = Table("metric", "original", "reproduced", "difference", title="original vs reproduced")
    for metric in COMPARED:
        a, b = metric.of(original), metric.of(new)
        both = isinstance(a, int | float) and isinstance(b, int | float) and a
        diff = f"{(b - a) / a * 100:+.1f}%" if both else "n/a"  # type: ignore[operator]
        label = f"{metric.label} ({metric.unit})" if metric.unit else metric.label
        table.add_row(label, _fmt(a), _fmt(b), diff)
    console.print(table)
    print(f"result: {new_path}")


def _fmt(value: Value) -> str:
    return "null" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
