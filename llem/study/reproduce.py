"""``llem reproduce <run or job folder> [overrides]``: run a saved experiment again and compare.

The experiment is re-composed from the folder's ``.hydra/hydra.yaml`` — primary config (packaged or
the user's file), its group choices and every override — not from the frozen ``config.yaml``, which
loses group choices. It runs in a fresh ``llem`` process into a new folder that its own command
line decides (``hydra.run.dir=``, or ``output_dir=``, by default beside the original run; never a
path the saved files name); then the resolved configs are compared (identical, or the
differences listed), the key metrics printed side by side, and the same verdicts as ``llem compare``
(:mod:`llem.compare.verdict`) close the report.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml

from llem.compare.facts import config_differences
from llem.compare.inputs import load_result
from llem.compare.report import verdict_lines
from llem.compare.verdict import judge_all
from llem.errors import UsageError
from llem.keymetrics import COMPARED, Value
from llem.paths import CLAIMED, claim_unique_dir
from llem.records import HYDRA_FILE, RESULT_FILE, STUDY_FILE
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
    """The llem arguments that re-compose the experiment saved in ``folder`` into ``run_dir``
    (``output_dir`` its parent unless ``extra`` sets it): never a folder the saved files name."""
    mine = [o for o in extra if not o.startswith(_PLACE)]
    given_root = any(o.startswith("output_dir=") for o in mine)
    root = [] if given_root else [f"output_dir={run_dir.parent}"]
    return [*recompose(folder), *mine, *root, "hydra.mode=RUN", f"hydra.run.dir={run_dir}"]


def recompose(folder: Path) -> list[str]:
    """The saved experiment's arguments, from ``.hydra/hydra.yaml`` (a damaged one, or one that
    would start a study: UsageError); its place (``output_dir``, Hydra's folders) left out."""
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
        args += ["--config-name", str(h["job"]["config_name"])]
        saved = [str(o) for o in [*h["overrides"]["hydra"], *h["overrides"]["task"]]]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{hydra_yaml} is damaged: cannot re-compose the experiment") from None
    if study := _sweeping(saved):
        raise UsageError(
            f"{hydra_yaml} would start a study ({study}): llem reproduce re-runs one run or one "
            "study job; give a job folder of the study"
        )
    return args + [o for o in saved if not o.startswith((*_PLACE, "output_dir="))]


def _sweeping(overrides: list[str]) -> str | None:
    """The first of ``overrides`` that would make a study (a flag such as ``--multirun``, a swept
    value such as ``batch=1,2``), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        if override.startswith("-"):
            return override
        try:
            if parser.parse_overrides([override])[0].is_sweep_override():
                return override
        except Exception:  # Hydra's grammar errors: the new run's pre-flight names them
            continue
    return None


def new_run_dir(folder: Path, extra: list[str]) -> Path:
    """The reproduction's folder, as its own command line says: ``hydra.run.dir=`` as given, else
    ``<output_dir>/<run>_reproduced_<time>``; ``output_dir`` defaults to beside the original run
    (beside its study's folder for a study job). Made now (with ``-2``, ``-3``… when taken)."""
    from llem.pathcheck import check_folder, check_overrides

    given = {o.partition("=")[0]: o.partition("=")[2] for o in extra if "=" in o}
    check_overrides(extra, multirun=False)  # a given hydra.run.dir: sound, holding no result
    if run_dir := given.get("hydra.run.dir"):
        return Path(run_dir).expanduser().absolute()
    beside = folder.parent.parent if (folder.parent / STUDY_FILE).is_file() else folder.parent
    root = given.get("output_dir", str(beside))
    check_folder("output_dir", root)
    stamp = datetime.now().strftime("%Y-%m-%dT%H-%M-%S")
    name = f"{folder.name}_reproduced_{stamp}"
    try:
        return Path(claim_unique_dir(str(Path(root).expanduser().absolute() / name)))
    except OSError as exc:
        raise UsageError(
            f"cannot make the reproduction's folder in {root} ({exc.strerror}): give "
            "output_dir=<folder> or hydra.run.dir=<folder>"
        ) from None


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
    original = load_result(original_path)
    recompose(folder)  # every check before the new folder is made
    run_dir = new_run_dir(folder, args[1:])
    argv = command_line(folder, args[1:], run_dir)
    print(f"[llem] reproducing {folder}\n  llem {' '.join(argv)}", flush=True)
    code = subprocess.run([sys.executable, "-m", "llem", *argv], check=False).returncode
    new_path = run_dir / RESULT_FILE
    if code != 0 or not new_path.is_file():
        if run_dir in CLAIMED:  # made here: removed when the failed run left it empty
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        why = f"exit code {code}" if code else f"no {RESULT_FILE} in {run_dir}"
        print(f"[llem] the reproduction failed ({why})", file=sys.stderr)
        return code or 1
    report(original, load_result(new_path), new_path)
    return 0


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
    print("verdicts (the reproduction against the original):")
    print("\n".join(verdict_lines(judge_all(original, new, ("the original", "the reproduction")))))
    print(f"result: {new_path}")


def _fmt(value: Value) -> str:
    return "null" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
