"""timeseries.png of a real run: the measured windows are shaded where the meters' readings put
them (not where the 100 ms samples fell), the CPU axis is in % of one core, and other processes'
CPU is drawn beside llem's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from llem.hostcpu import others_cpu_s
from llem.records import TIMESERIES_PNG
from llem.result import Result
from llem.runplot import CPU_LABEL, OTHER_CPU, SPANS_KEY, run_figure
from tests.helpers import run_llem

TOLERANCE_S = 0.001


def system_busy() -> float:
    """All CPUs' busy seconds since boot (/proc/stat, iowait as idle)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks[:3]) + sum(ticks[5:8])) / os.sysconf("SC_CLK_TCK")


def child_cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_windows_shaded_from_the_meters_readings(tmp_path: Path) -> None:
    proc = run_llem("n=4", "repeats=2", "max_new_tokens=8", "flops.enabled=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("results/*/result.json")
    result = Result.model_validate_json(path.read_text())
    readings = result.energy.readings
    assert {r.window for r in readings} == {"repeat-1", "repeat-2"}, readings
    parquet = pq.read_table(path.parent / "timeseries.parquet").to_pydict()
    t0 = min(parquet["time_unix_s"])  # the plot's origin: the first sample
    expected = {
        w: (
            min(r.start_unix_s for r in readings if r.window == w) - t0,
            max(r.end_unix_s for r in readings if r.window == w) - t0,
        )
        for w in ("repeat-1", "repeat-2")
    }
    # the picture llem drew: its spans are written into the PNG
    drawn = json.loads(Image.open(path.parent / TIMESERIES_PNG).text[SPANS_KEY])
    spans = {name: (start, end) for name, start, end in drawn}
    for w, (start, end) in expected.items():
        assert abs(spans[w][0] - start) < TOLERANCE_S and abs(spans[w][1] - end) < TOLERANCE_S
    # no sampled phase overlaps a measured window
    for name, start, end in drawn:
        for w, (w_start, w_end) in expected.items():
            assert name == w or end <= w_start + 1e-9 or start >= w_end - 1e-9, (name, w)
    # the same figure redrawn from result.json's readings
    windows = [(r.window, r.start_unix_s, r.end_unix_s) for r in readings]
    fig = run_figure(path.parent / "timeseries.parquet", windows)
    assert fig is not None
    patches = {p.get_gid(): p for p in fig.axes[0].patches}
    for w, (start, end) in expected.items():
        x0 = patches[w].get_x()  # type: ignore[attr-defined]
        x1 = x0 + patches[w].get_width()  # type: ignore[attr-defined]
        assert abs(x0 - start) < TOLERANCE_S and abs(x1 - end) < TOLERANCE_S
    (cpu,) = [ax for ax in fig.axes if ax.get_ylabel() == CPU_LABEL]
    assert "% of one core" in CPU_LABEL
    other = [line for line in cpu.lines if line.get_label() == OTHER_CPU]
    assert other and len(other[0].get_xdata()) >= 5
    assert any(v is not None for v in parquet["other_cpu_pct"])


def test_other_cpu_leaves_out_llems_own_children() -> None:
    """A child of this process spinning on one core is llem's, not another process's: all CPUs'
    busy time minus ``others_cpu_s`` moves by exactly this process's and the child's CPU time."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        before = (system_busy(), others_cpu_s(), child_cpu(child.pid), sum(os.times()[:4]))
        time.sleep(0.5)
        after = (system_busy(), others_cpu_s(), child_cpu(child.pid), sum(os.times()[:4]))
    finally:
        child.kill()
        child.wait()
    busy, others, kid, own = (b - a for a, b in zip(before, after, strict=True))
    assert kid > 0.05  # the child ran
    assert abs((busy - others) - (kid + own)) < 0.05  # a few 10 ms ticks between the reads
