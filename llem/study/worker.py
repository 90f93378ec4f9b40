"""One study job in its own process: ``python -m llem.study.worker <spec.pkl> <module:task>``.

The spec is the job's full composed config, pickled by the launcher (Hydra node included, sweep folders
frozen).
Hydra's ``run_job`` writes ``.hydra/`` and runs the job's callbacks exactly as it would in-process.
Exit status: 0 done, 1 the task raised (``error.json`` written), 2 bad input found inside the job.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    spec, task = argv
    from hydra.core.plugins import Plugins

    Plugins.instance()  # let Hydra's plugin scan run before any Hydra object is created
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from hydra.types import HydraContext

    from llem import resolvers

    resolvers.register()
    setup_globals()
    import pickle

    config = pickle.loads(Path(spec).read_bytes())
    module, name = task.rsplit(":", 1)
    task_function = inspect.unwrap(getattr(_import(module), name))  # undo @hydra.main
    ret = run_job(
        hydra_context=HydraContext(config_loader=None, callbacks=Callbacks(config)),
        task_function=task_function,
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if ret.status == JobStatus.FAILED:
        exc = ret._return_value
        traceback.print_exception(type(exc), exc, exc.__traceback__)
        _write_error(Path(str(config.hydra.runtime.output_dir)), exc, list(ret.overrides or []))
        return 1
    return 0


def _import(module: str):
    """A module by name, or a script file by path (imported under another name than __main__)."""
    if not module.endswith(".py"):
        return importlib.import_module(module)
    spec = importlib.util.spec_from_file_location("llem_study_task", module)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(module).parent))
    spec.loader.exec_module(mod)
    return mod


def _write_error(folder: Path, exc: BaseException, overrides: list[str]) -> None:
    from datetime import datetime, timezone

    from llem.paths import write_json_atomic

    if (folder / "error.json").exists():  # the summary callback may have written it already
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        folder / "error.json",
        {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
            "exit_code": 1,
            "overrides": overrides,
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
