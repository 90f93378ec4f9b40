"""The Hydra application: one job = validate the composed config, run the harness, write
``result.json``.

Kept free of test helpers: ``@hydra.main`` sets process-wide state when this module is imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llem import resolvers
from llem.errors import EXIT_USAGE, UsageError
from llem.plugins import register_plugins
from llem.records import RESULT_FILE

resolvers.register()
register_plugins()


def _discard(run_dir: Path, output_root: Path) -> None:
    """Remove a run folder that holds no result (bad input found inside the job), and an emptied
    root."""
    import contextlib
    import shutil

    if run_dir.is_dir() and not (run_dir / RESULT_FILE).exists():
        shutil.rmtree(run_dir, ignore_errors=True)
    for parent in (run_dir.parent, output_root):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty


def run_job(cfg: DictConfig) -> dict[str, str | float]:
    """The task function body; returns the key metrics (Hydra stores them in the JobReturn)."""
    from llem.config import validate
    from llem.harness import Harness
    from llem.result import write_result
    from llem.summary import print_summary

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        experiment = validate(cfg)
        result = Harness(experiment, run_dir, overrides=list(hc.overrides.task)).run()
    except UsageError as exc:
        _discard(run_dir, Path(str(cfg.output_dir)))
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None
    path = write_result(result, run_dir)
    if not experiment.quiet:
        print_summary(result, path)
    return {"result": str(path), "output_tokens_per_s": result.throughput.output_tokens_per_s}


@hydra.main(version_base="1.3", config_path="pkg://llem.conf", config_name="llem")
def hydra_app(cfg: DictConfig) -> dict[str, str | float]:
    return run_job(cfg)
