"""One study job in its own process:
``python -m llem.study.worker <spec.pkl> <module:task> [launcher pid]``.

The spec is the job's full composed config, pickled by the launcher (Hydra node included, sweep
folders frozen).
Hydra's ``run_job`` writes ``.hydra/`` and runs the job's callbacks exactly as it would in-process.
Exit status: 0 done, 1 the task raised (``error.json`` written), 2 bad input found inside the job.
Given the launcher's pid, the worker dies with the launcher however it ends (even SIGKILL), taking
the helper processes of its process group with it.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pickle
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType, ModuleType

from hydra.types import HydraContext
from omegaconf import DictConfig

# the Hydra releases hydra_context() was written for (it uses Hydra's internal Callbacks class)
HYDRA_RANGE = ((1, 3, 2), (1, 4))


def hydra_context(config: DictConfig) -> HydraContext:
    """What ``run_job`` needs to run the job's callbacks: the one use of ``hydra._internal`` in
    llem."""
    from hydra._internal.callbacks import Callbacks

    return HydraContext(config_loader=None, callbacks=Callbacks(config))  # type: ignore[arg-type]


def _end_group(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (the launcher died, or timed the job out): end this process group, helpers
    included."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.killpg(os.getpgrp(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    spec, task, *parent = argv
    if parent:
        from llem.signals import die_with_parent

        signal.signal(signal.SIGTERM, _end_group)
        die_with_parent(int(parent[0]))
    from hydra.core.plugins import Plugins

    Plugins.instance()  # let Hydra's plugin scan run before any Hydra object is created
    from hydra.core.utils import JobStatus, run_job, setup_globals

    from llem import resolvers
    from llem.records import ErrorRecord, write_error

    resolvers.register()
    setup_globals()
    config = pickle.loads(Path(spec).read_bytes())
    module, name = task.rsplit(":", 1)
    task_function = inspect.unwrap(getattr(_import(module), name))  # undo @hydra.main
    ret = run_job(
        hydra_context=hydra_context(config),
        task_function=task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if ret.status == JobStatus.FAILED:
        exc = ret._return_value
        assert isinstance(exc, BaseException)
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        record = ErrorRecord(
            error=f"{type(exc).__name__}: {exc}".splitlines()[0],
            exit_code=1,
            overrides=[str(o) for o in ret.overrides or []],
        )
        # the summary callback may have written it already
        write_error(Path(str(config.hydra.runtime.output_dir)), record, keep_existing=True)
        return 1
    return 0


def _import(module: str) -> ModuleType:
    """A module by name, or a script file by path (imported under another name than __main__)."""
    if not module.endswith(".py"):
        return importlib.import_module(module)
    spec = importlib.util.spec_from_file_location("llem_study_task", module)
    assert spec is not None and spec.loader is not None, module
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(module).parent))
    spec.loader.exec_module(mod)
    return mod


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
