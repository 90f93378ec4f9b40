"""llem.backends.memory: peak RSS of this process, and of it with its children (engine workers)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from llem.backends.memory import PeakRSS


def test_peak_rss_of_this_process():
    meter = PeakRSS()
    meter.reset()
    peak, what = meter.read()
    assert peak is not None and peak > 0
    assert what in ("process peak RSS during the window", "process peak RSS since start")


def test_peak_rss_summed_over_children():
    pytest.importorskip("psutil")
    own, _ = PeakRSS().read()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        meter = PeakRSS(children="a sleeping interpreter")
        meter.reset()
        total, what = meter.read()
    finally:
        child.kill()
        child.wait()
    assert own is not None and total is not None and total > own  # the child's peak is added
    counted = re.search(
        r"summed over llem and its (\d+) child processes \(a sleeping interpreter;", what
    )
    assert counted and int(counted.group(1)) >= 1
