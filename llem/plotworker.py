"""``timeseries.png`` drawn by a helper process that imports matplotlib while the run starts.

Importing matplotlib takes about 0.4 s of one core, which a run would otherwise pay after its last
measurement. :class:`PlotWorker` starts ``python -m llem.plotworker <llem pid>`` when the run
starts: it imports what drawing needs (:data:`llem.runplot.PRELOAD`) beside the engine's imports
and the model load, says ``ready``, then waits (using no CPU) for one
``<parquet>\\t<png>\\t<meter windows as JSON>`` line, draws and ends. The harness waits for
``ready`` before the warm-up, so nothing it does overlaps a measured window. The worker dies with
llem (``PR_SET_PDEATHSIG``), ignores the terminal's Ctrl-C (llem handles it and closes the worker)
and is killed by :meth:`PlotWorker.close` if still running.
A process that has matplotlib imported already (a study job forked from the fork server) draws
in-process instead: :func:`plot_worker` returns ``None``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llem.runplot import MeterWindow

READY_TIMEOUT_S = 60.0
DRAW_TIMEOUT_S = 120.0


class PlotWorker:
    """One helper process that draws one run's ``timeseries.png``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llem.plotworker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            text=True,
        )

    def ready(self) -> bool:
        """Wait until the worker has imported matplotlib; False (and closed) if it cannot."""
        assert self.proc.stdout is not None
        answer = _line_within(self.proc, READY_TIMEOUT_S)
        if answer != "ready":
            self.close()
            return False
        return True

    def draw(self, parquet: Path, png: Path, windows: Sequence[MeterWindow] = ()) -> None:
        """Draw ``png`` from ``parquet`` and the meters' ``windows``
        (:func:`llem.runplot.write_run_plot`); raises :class:`RuntimeError` with the worker's
        error."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{parquet}\t{png}\t{json.dumps(list(windows))}\n")
        self.proc.stdin.close()
        answer = _line_within(self.proc, DRAW_TIMEOUT_S)
        if answer != "drawn":
            self.close()
            assert self.proc.stderr is not None
            lines = self.proc.stderr.read().strip().splitlines() if answer is not None else []
            raise RuntimeError(lines[-1] if lines else "the plot worker gave no answer")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(READY_TIMEOUT_S)  # it ends right after drawing

    def close(self) -> None:
        """End the worker (it is killed if it has not ended by itself); stderr stays readable."""
        with contextlib.suppress(ProcessLookupError):
            if self.proc.poll() is None:
                self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _line_within(proc: subprocess.Popen[str], timeout_s: float) -> str | None:
    """The worker's next stdout line, or None when it sends none within ``timeout_s``."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    return proc.stdout.readline().strip() if ready else None


def plot_worker() -> PlotWorker | None:
    """A started worker, or None when this process draws faster itself (matplotlib imported)."""
    from llem.runplot import PRELOAD

    if all(m in sys.modules for m in PRELOAD):
        return None
    return PlotWorker()


def serve(parent_pid: int) -> int:
    """The worker: import, say ``ready``, draw the one plot asked for, say ``drawn``."""
    import importlib

    from llem.signals import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # llem handles Ctrl-C and closes the worker
    die_with_parent(parent_pid)
    from pydantic import TypeAdapter

    from llem.runplot import PRELOAD, MeterWindow, write_run_plot

    for module in PRELOAD:
        importlib.import_module(module)
    print("ready", flush=True)
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        return 0  # the run ended without a series to draw
    parquet, png, windows = line.split("\t")
    meter_windows = TypeAdapter(list[MeterWindow]).validate_json(windows)
    write_run_plot(Path(parquet), Path(png), meter_windows)
    print("drawn", flush=True)
    return 0


if __name__ == "__main__":
    code = serve(int(sys.argv[1]))
    sys.stdout.flush()
    os._exit(code)  # skip the interpreter's teardown of matplotlib's modules
