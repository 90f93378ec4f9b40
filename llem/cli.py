"""The ``llem`` command: subcommands, pre-flight checks, then the Hydra app.

``llem [overrides]`` and ``llem -m ...`` go to Hydra (its override grammar, ``--cfg``, ``--help``),
its flags anywhere among the overrides (:mod:`llem.commandline`).
Before Hydra creates any folder, every job of the command line is composed and validated
(:mod:`llem.preflight`), so bad input exits with code 2 and leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from llem.commandline import CommandLine, parse
from llem.errors import EXIT_USAGE, UsageError


def fail(exc: UsageError) -> NoReturn:
    """Print ``Error: <message>`` to stderr and exit 2 (no traceback)."""
    sys.stderr.write(f"Error: {exc}\n")
    raise SystemExit(EXIT_USAGE)


def experiment_file_args(args: list[str]) -> list[str]:
    """``run exp.yaml k=v`` -> Hydra arguments that make ``exp.yaml`` the primary config.

    The file is the first argument that is neither a Hydra flag nor a flag's value (``llem run -m
    exp.yaml`` works as ``llem run exp.yaml -m``). Its folder becomes the primary config path (so
    the user's files win) and the packaged configs stay reachable through ``hydra.searchpath``;
    the file extends them with ``defaults: [llem, _self_]``. The file is read size-capped and
    alias-free first (:mod:`llem.yamlguard`).
    """
    cl = parse(args)
    if not cl.overrides or "=" in cl.overrides[0]:
        raise UsageError(
            "llem run needs an experiment file: llem run path/to/experiment.yaml [key=value ...]"
        )
    if cl.config_path is not None or cl.config_name != "llem":
        raise UsageError(
            "llem run takes the config from its file: drop --config-path/--config-name "
            "(or drop run and the file)"
        )
    name = cl.overrides[0]
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"experiment file {name} not found: give the path of a .yaml file")
    from llem.yamlguard import read_experiment_yaml

    data = read_experiment_yaml(path)  # size-capped, aliases refused: hostile files stop at once
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if not isinstance(defaults, list) or "llem" not in defaults:
        raise UsageError(
            f"{name} must extend the packaged experiment: add 'defaults: [llem, _self_]' at "
            "its top (see llem/examples/experiment.yaml.example)"
        )
    if path.suffix not in {".yaml", ".yml"}:
        path = _yaml_copy(path)
    return [
        *cl.flags,
        f"--config-path={path.parent}",
        f"--config-name={path.stem}",
        "hydra.searchpath=[pkg://llem.conf]",
        *cl.overrides[1:],
    ]


def saved_run_args(cl: CommandLine) -> list[str] | None:
    """Hydra's way to rerun a run, ``--config-path <run>/.hydra --config-name config [k=v]``, as
    llem runs it: re-composed from ``<run>/.hydra/hydra.yaml`` (primary config, group choices,
    overrides: what ``llem reproduce`` runs), the new overrides last. The frozen ``config.yaml``
    alone has no defaults list, so Hydra would compose it without llem's run folder, launcher and
    callbacks (into ``outputs/<date>/<time>/``). ``None`` when the line is not that shape."""
    if cl.config_path is None or cl.config_name != "config":
        return None
    hydra_dir = Path(cl.config_path).expanduser().resolve()
    if not (hydra_dir / "hydra.yaml").is_file() or not (hydra_dir / "config.yaml").is_file():
        return None
    from llem.study.reproduce import recompose

    args = recompose(hydra_dir.parent)
    sys.stderr.write(
        f"[llem] rerunning {hydra_dir.parent} as composed by its .hydra/hydra.yaml "
        f"(llem reproduce {hydra_dir.parent} also compares the results)\n"
    )
    kept = [f for f in cl.flags if not f.startswith(("--config-path=", "--config-name="))]
    return [*args, *kept, *cl.overrides]


def _yaml_copy(path: Path) -> Path:
    """Hydra reads only ``*.yaml``: a stable ``.yaml`` twin (in the cache) of e.g. ``*.example``."""
    import hashlib

    from llem.paths import cache_dir, write_atomic

    text = path.read_text(encoding="utf-8")
    stem = path.name.split(".", 1)[0] or "experiment"
    folder = cache_dir("experiments", hashlib.sha256(text.encode()).hexdigest()[:16])
    target = folder / f"{stem}.yaml"
    if not target.exists():
        write_atomic(target, text)
    return target


def print_version() -> None:
    """``llem --version``: llem's version, then Hydra's."""
    import hydra

    from llem import __version__

    print(f"llenergymeasure {__version__} (Hydra {hydra.__version__})")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] in (["--version"], ["-V"]):
            print_version()
            return
        if args in (["--help"], ["-h"]):  # Hydra's text for the packaged experiment, sans Hydra
            from llem.apphelp import render

            print(render())
            return
        if args and args[0] == "config":
            from llem.envreport import main as config_main

            config_main(args[1:])
            return
        if args and args[0] == "schema":
            from llem.result import print_schema

            print_schema()
            return
        if args and args[0] == "examples":
            from llem.examplefiles import main as examples_main

            examples_main(args[1:])
            return
        if args and args[0] == "compare":
            from llem.compare.command import main as compare_main

            raise SystemExit(compare_main(args[1:]))
        if args and args[0] == "reproduce":
            from llem.study.reproduce import main as reproduce_main

            raise SystemExit(reproduce_main(args[1:]))
        if "--version" in args:  # Hydra's flag, wherever it stands: llem's version
            print_version()
            return
        if args and args[0] == "run":
            args = experiment_file_args(args[1:])
        from llem import preflight

        cl = parse(args)
        args = parse(saved_run_args(cl) or cl.argv()).argv()  # Hydra's flags first
        preflight.check(args)
    except UsageError as exc:
        fail(exc)

    from llem.app import hydra_app

    sys.argv = [sys.argv[0], *args]
    hydra_app()


def entry() -> NoReturn:
    """The ``llem`` console script: :func:`main`, then end the process without tearing down every
    module one by one (about 1 s once torch is imported, and nothing is left to do by then).

    What a normal exit does that matters still happens: non-daemon threads are joined and thread
    pools shut down (their worker processes end), exit handlers run (logging flushed and closed),
    stdout and stderr flushed. Every file llem writes is
    closed (and renamed into place) before :func:`main` returns, and every process llem starts is
    stopped by then. An uncaught exception keeps Python's usual exit and traceback.
    """
    from llem.signals import Stopped, stop_on_signals

    try:
        with stop_on_signals():  # from the first line: no moment where a signal kills llem bare
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(f"{exc.code}\n")
    except Stopped as stopped:  # outside a run's or a study's own handling (start-up, Hydra)
        code = stopped.exit_code
        kept = False
        if "llem.records" in sys.modules:  # the run's folder may be made (by Hydra's resolver)
            from llem.paths import CLAIMED
            from llem.records import discard_run

            kept = not all([discard_run(d, d.parent) for d in CLAIMED])
        sys.stderr.write(
            f"Error: stopped by {stopped.description}"
            + ("\n" if kept else "; nothing was recorded\n")
        )
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    import atexit
    import threading

    # what the interpreter's own exit does first: join non-daemon threads and run the hooks
    # thread-pool users registered (joblib's and concurrent.futures' workers stop there)
    shutdown: Callable[[], None] | None = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
