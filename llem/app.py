"""The Hydra application: one job = validate the composed config, run the harness, write
``result.json``.

Kept free of test helpers: ``@hydra.main`` sets process-wide state when this module is imported.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llem import resolvers
from llem.errors import EXIT_FAILED, EXIT_USAGE, RunFailed, UsageError
from llem.plugins import register_plugins
from llem.records import RESULT_FILE, discard_run

if TYPE_CHECKING:
    from hydra.conf import HydraConf

    from llem.result import Result
    from llem.signals import Stopped

resolvers.register()
register_plugins()


def _discard(hc: HydraConf, output_root: Path) -> None:
    """Remove what the run ``hc`` wrote into its folder, which holds no result (bad input found
    inside the job, a stop)."""
    run_dir = Path(hc.runtime.output_dir)
    discard_run(run_dir, output_root, f"{hc.job.name}.log", hc.output_subdir)


def run_job(cfg: DictConfig) -> dict[str, str | float]:
    """The task function body; returns the key metrics (Hydra stores them in the JobReturn).

    Ctrl-C, SIGTERM and SIGHUP stop the run: the backend (and any engine process it started) is
    closed by the harness, the folder without a result is removed, the exit code is 128 + signal.
    """
    from llem.config import validate
    from llem.harness import Harness
    from llem.lock import FolderLock
    from llem.signals import Stopped, ignore_signals, stop_on_signals
    from llem.summary import print_summary

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    logging.raiseExceptions = False  # a log line a full disk cannot take is dropped, no traceback
    lock = FolderLock(run_dir, what="run")
    try:
        lock.acquire()
    except UsageError as exc:  # another llem owns the folder: leave it alone
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None
    except OSError as exc:  # a full or vanished disk: nothing measured yet
        _discard(hc, Path(str(cfg.output_dir)))
        sys.stderr.write(f"Error: cannot write into {run_dir} ({exc.strerror}); nothing was run\n")
        raise SystemExit(1) from None
    try:
        with stop_on_signals():
            experiment = validate(cfg)
            result = Harness(experiment, run_dir, overrides=list(hc.overrides.task)).run()
    except Stopped as stopped:
        ignore_signals()
        _record_stop(hc, stopped, Path(str(cfg.output_dir)))
        raise SystemExit(stopped.exit_code) from None
    except RunFailed as exc:  # the run's record is its error.json
        _record_failure(run_dir, str(exc), list(hc.overrides.task))
        raise SystemExit(EXIT_FAILED) from None
    except UsageError as exc:
        _discard(hc, Path(str(cfg.output_dir)))
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(EXIT_USAGE) from None
    finally:
        lock.release()
    path = _keep(result, run_dir)
    if not experiment.quiet:
        print_summary(result, path)
    if path.parent != run_dir:  # kept, but not where it was asked for: the run did not succeed
        raise SystemExit(1)
    return {"result": str(path), "output_tokens_per_s": result.throughput.output_tokens_per_s}


def _record_stop(hc: HydraConf, stopped: Stopped, output_root: Path) -> None:
    """A stopped run is never a result. A served run stopped during its load is kept, marked
    interrupted in ``error.json`` with what it had served (its server log beside it); any other
    stopped run's folder is removed."""
    from llem.records import ErrorRecord, JobStatus, write_error

    run_dir = Path(hc.runtime.output_dir)
    if stopped.progress is None:
        _discard(hc, output_root)
        sys.stderr.write(f"Error: stopped by {stopped.description}; nothing was recorded\n")
        return
    what = f"stopped by {stopped.description} ({stopped.progress}): a cut run is not a measurement"
    record = ErrorRecord(
        status=JobStatus.INTERRUPTED,
        error=what,
        exit_code=stopped.exit_code,
        overrides=list(hc.overrides.task),
    )
    try:
        write_error(run_dir, record)
        where = f"; recorded as interrupted in {run_dir / 'error.json'}"
    except OSError as exc:
        where = f"; error.json not written ({exc.strerror})"
    sys.stderr.write(f"Error: {what}{where}\n")


def _record_failure(run_dir: Path, message: str, overrides: list[str]) -> None:
    """``error.json`` of a run that failed (a study records the job as failed), then the line."""
    from llem.records import ErrorRecord, write_error

    try:
        write_error(run_dir, ErrorRecord(error=message, exit_code=EXIT_FAILED, overrides=overrides))
    except OSError as exc:  # the line below is then the only record
        message += f" (error.json not written: {exc.strerror})"
    sys.stderr.write(f"Error: {message}\n")


def _keep(result: Result, run_dir: Path) -> Path:
    """Write ``result.json`` into the run folder, or, when that fails (a full or vanished disk, a
    read-only folder), into the first fallback that takes it (:func:`llem.records.fallbacks`),
    saying where in one ``Error:`` line: a finished measurement is never lost."""
    from llem.records import fallbacks
    from llem.result import write_result

    try:
        return write_result(result, run_dir)
    except OSError as exc:
        first = f"cannot write {run_dir / RESULT_FILE} ({exc.strerror or exc})"
    for folder in fallbacks(run_dir.name):
        try:
            path = write_result(result, folder())
        except OSError:
            continue
        sys.stderr.write(f"Error: {first}; the result was saved to {path}\n")
        return path
    sys.stderr.write(f"Error: {first}, nor in any fallback folder; the result follows\n")
    sys.stderr.write(result.model_dump_json(indent=2) + "\n")
    raise SystemExit(1)


@hydra.main(version_base="1.3", config_path="pkg://llem.conf", config_name="llem")
def hydra_app(cfg: DictConfig) -> dict[str, str | float]:
    return run_job(cfg)
