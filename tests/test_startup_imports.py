"""Commands that run no model never import torch; ``llem --help`` and ``llem config`` compose
nothing and never import Hydra (start-up costs, checked as module sets, not timings)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = (
    "import atexit, sys; "
    "atexit.register(lambda: print('imported:', {module!r} in sys.modules)); "
    "from llem.cli import main; main({args!r})"
)


def _imports(module: str, args: list[str], before: str = "") -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", before + PROBE.format(module=module, args=args)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1] == "imported: True"


@pytest.mark.parametrize("args", [["--help"], ["config"]])
@pytest.mark.parametrize("module", ["torch", "hydra"])
def test_command_does_not_import(module, args):
    assert not _imports(module, args)


def test_the_probe_sees_a_module_when_it_is_imported():
    assert _imports("torch", ["config"], before="import torch; ")
    assert _imports("hydra", ["--cfg", "job"])
