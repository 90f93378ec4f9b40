"""Hydra callback keeping the study summary of a multirun sweep current
(``hydra/callbacks=llem_summary``).

``on_job_end`` runs where the job ran (the child process with joblib/submitit): it writes
``error.json`` for a failed job that has none and rebuilds the summary, so the summary is current
even when Hydra skips ``on_multirun_end`` (it does whenever a job failed). ``on_multirun_end``
writes the final summary. llem's own launchers (local and SLURM) write the summary themselves, as
each job ends and at the end, so under them the callback does nothing. Hydra turns a callback's
exception into a warning; here every error is logged with its traceback instead and never fails
the job or the study.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.conf import HydraConf
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("llem.study")
LLEM_LAUNCHERS = "hydra_plugins.llem_plugins."


def _hydra(config: DictConfig) -> DictConfig | HydraConf:
    if "hydra" in config:
        node = config.hydra
        assert isinstance(node, DictConfig)
        return node
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get()


def _is_multirun(hc: DictConfig | HydraConf) -> bool:
    mode = OmegaConf.select(hc, "mode") if isinstance(hc, DictConfig) else getattr(hc, "mode", None)
    return mode == RunMode.MULTIRUN or str(mode).rsplit(".", 1)[-1] == "MULTIRUN"


def _llem_launched(hc: DictConfig | HydraConf) -> bool:
    """Whether one of llem's launchers runs the study (it writes the summary itself)."""
    target = OmegaConf.select(hc, "launcher._target_") if isinstance(hc, DictConfig) else None
    if target is None and not isinstance(hc, DictConfig):
        target = getattr(hc.launcher, "_target_", None)
    return str(target).startswith(LLEM_LAUNCHERS)


def sweep_dir_of_job(hc: DictConfig | HydraConf) -> Path:
    """The sweep folder of the running job: its output dir minus ``hydra.sweep.subdir``.

    Derived from the already resolved output dir rather than by resolving ``hydra.sweep.dir`` again.
    """
    output_dir = Path(str(hc.runtime.output_dir))
    try:
        parts = Path(str(hc.sweep.subdir)).parts
    except Exception:  # an unresolvable subdir: fall back to hydra.sweep.dir below
        parts = ()
    if parts and output_dir.parts[-len(parts) :] == parts:
        return Path(*output_dir.parts[: -len(parts)])
    return Path(str(hc.sweep.dir)).resolve()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unwritten(exc: OSError) -> str:
    """``cannot write <file> (<reason>)``, or the reason alone when no file is named."""
    from llem.study.studyfiles import unwritten, why

    return unwritten(exc, Path(exc.filename)) if exc.filename else why(exc)


def write_error_json(folder: Path, job_return: JobReturn) -> None:
    """``error.json`` of a job whose task raised (only where the folder has no result and no
    error.json)."""
    from llem.records import RESULT_FILE, ErrorRecord, write_error

    if not folder.is_dir() or (folder / RESULT_FILE).exists():
        return
    exc = job_return._return_value  # .return_value would re-raise the job's exception
    record = ErrorRecord(
        error=_one_line(exc) if isinstance(exc, BaseException) else "the job failed",
        overrides=[str(o) for o in (job_return.overrides or [])],
    )
    write_error(folder, record, keep_existing=True)


class StudySummaryCallback(Callback):
    """Rebuilds ``study_summary.*`` in the sweep folder as each job ends, and once more at the
    end."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: object) -> None:
        try:
            hc = _hydra(config)
            if not _is_multirun(hc) or _llem_launched(hc):
                return
            from llem.study.summary import write_summary

            if job_return.status == JobStatus.FAILED:
                write_error_json(Path(str(hc.runtime.output_dir)), job_return)
            write_summary(sweep_dir_of_job(hc))
        except OSError as exc:  # the disk: one line naming the file, no traceback
            log.error(
                "llem: could not update the study summary after this job: %s "
                "(the job itself is unaffected)",
                _unwritten(exc),
            )
        except Exception:
            log.exception(
                "llem: could not update the study summary after this job "
                "(the job itself is unaffected)"
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        try:
            hc = _hydra(config)
            if not _is_multirun(hc) or _llem_launched(hc):
                return
            sweep_dir = Path(str(hc.sweep.dir)).resolve()
            if not sweep_dir.is_dir():  # no job ran
                return
            from llem.study.remeasure import contention_line
            from llem.study.summary import write_summary

            if line := contention_line(write_summary(sweep_dir, final=True).rows):
                print(line, flush=True)
        except OSError as exc:
            log.error(
                "llem: could not write the final study summary: %s (the job results are kept)",
                _unwritten(exc),
            )
        except Exception:
            log.exception("llem: could not write the final study summary")
