"""The ``llem`` command: subcommands, pre-flight checks, then the Hydra app.

``llem [overrides]`` and ``llem -m ...`` go to Hydra (its override grammar, ``--cfg``, ``--help``).
Before Hydra creates any folder, every job of the command line is composed and validated
(:mod:`llem.preflight`), so bad input exits with code 2 and leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from llem.errors import EXIT_USAGE, UsageError


def fail(exc: UsageError) -> NoReturn:
    """Print ``Error: <message>`` to stderr and exit 2 (no traceback)."""
    sys.stderr.write(f"Error: {exc}\n")
    raise SystemExit(EXIT_USAGE)


def experiment_file_args(args: list[str]) -> list[str]:
    """``run exp.yaml k=v`` -> Hydra arguments that make ``exp.yaml`` the primary config.

    The file's folder becomes the primary config path (so the user's files win) and the packaged
    configs stay reachable through ``hydra.searchpath``; the file extends them with
    ``defaults: [llem, _self_]``. The file is read size-capped and alias-free first
    (:mod:`llem.yamlguard`).
    """
    if not args or args[0].startswith("-") or "=" in args[0]:
        raise UsageError(
            "llem run needs an experiment file: llem run path/to/experiment.yaml [key=value ...]"
        )
    path = Path(args[0]).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"experiment file {args[0]} not found: give the path of a .yaml file")
    from llem.yamlguard import read_experiment_yaml

    data = read_experiment_yaml(path)  # size-capped, aliases refused: hostile files stop at once
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if not isinstance(defaults, list) or "llem" not in defaults:
        raise UsageError(
            f"{args[0]} must extend the packaged experiment: add 'defaults: [llem, _self_]' at "
            "its top (see llem/examples/experiment.yaml.example)"
        )
    if path.suffix not in {".yaml", ".yml"}:
        path = _yaml_copy(path)
    return [
        "--config-path",
        str(path.parent),
        "--config-name",
        path.stem,
        "hydra.searchpath=[pkg://llem.conf]",
        *args[1:],
    ]


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
        if args and args[0] in ("--version", "-V"):
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
        if args and args[0] == "reproduce":
            from llem.study.reproduce import main as reproduce_main

            raise SystemExit(reproduce_main(args[1:]))
        if args and args[0] == "run":
            args = experiment_file_args(args[1:])
        from llem import preflight

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
