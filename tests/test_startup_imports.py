"""Commands that run no model never import torch (a start-up cost, not a timing assertion)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = (
    "import atexit, sys; "
    "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules)); "
    "from llem.cli import main; main({args!r})"
)


@pytest.mark.parametrize("args", [["--help"], ["config"]])
def test_command_does_not_import_torch(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "torch imported: False"


def test_the_probe_sees_torch_when_it_is_imported():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=["config"]).replace("from", "import torch; from")],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout.strip().splitlines()[-1] == "torch imported: True"
