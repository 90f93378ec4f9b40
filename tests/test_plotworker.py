"""timeseries.png drawn by the helper process started with the run: same picture, dies with llem,
a failure costs the picture only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llem.plotworker import PlotWorker
from tests.helpers import alive, gone_within


def _series(path: Path) -> Path:
    rows = {
        "time_unix_s": [100.0 + i / 10 for i in range(20)],
        "phase": ["warmup"] * 5 + ["repeat-1"] * 15,
        "device": ["process"] * 20,
        "cpu_util_pct": [90.0 + i for i in range(20)],
        "rss_bytes": [5e8 + i * 1e6 for i in range(20)],
    }
    pq.write_table(pa.table(rows), path)
    return path


def test_the_worker_draws_the_run_plot(tmp_path):
    worker = PlotWorker()
    try:
        assert worker.ready()
        png = tmp_path / "timeseries.png"
        worker.draw(_series(tmp_path / "timeseries.parquet"), png)
    finally:
        worker.close()
    assert png.read_bytes().startswith(b"\x89PNG") and worker.proc.returncode == 0


def test_a_failed_drawing_raises_with_the_worker_error(tmp_path):
    worker = PlotWorker()
    try:
        assert worker.ready()
        try:
            worker.draw(tmp_path / "missing.parquet", tmp_path / "timeseries.png")
        except RuntimeError as exc:
            assert "missing.parquet" in str(exc)
        else:
            raise AssertionError("no error for a missing series")
    finally:
        worker.close()
    assert not (tmp_path / "timeseries.png").exists()


def test_the_worker_dies_with_llem(tmp_path):
    """A process that started a worker is SIGKILLed: the worker ends too."""
    code = (
        "import sys, time; from llem.plotworker import PlotWorker; w = PlotWorker(); "
        "assert w.ready(); print(w.proc.pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert alive(worker)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(30)
    assert gone_within(worker)
