"""``pynvml`` for a real ``llem`` run on a machine without a GPU: this directory first on
PYTHONPATH (with the repository root, for ``tests.fake_nvml``) makes every ``import pynvml`` get one
simulated GPU drawing 200 W. Each NVML call is logged as a JSON line ``{"call", "caller"}`` (the
calling module) to the file named by ``LLEM_TEST_NVML_LOG``, so a test can count NVML's owners.

It has the real nvidia-ml-py's ``NVML_*`` constants (Zeus's module needs them at import) but not its
private ``_nvmlGetFunctionPointer``, so Zeus takes it for an unofficial pynvml and stands aside."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

from tests.fake_nvml import FakeGpu, make_nvml

_HERE = str(Path(__file__).resolve().parent)
_LOG = os.environ.get("LLEM_TEST_NVML_LOG")


def _real_constants() -> dict[str, int]:
    path = [p for p in sys.path if p and str(Path(p).resolve()) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("pynvml", path)
    if spec is None or spec.loader is None:
        return {}
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    return {k: v for k, v in vars(real).items() if k.startswith("NVML_") and isinstance(v, int)}


def _logged(name, fn):
    def call(*args, **kwargs):
        if _LOG:
            caller = sys._getframe(1).f_globals.get("__name__", "?")
            with open(_LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps({"call": name, "caller": caller, "pid": os.getpid()}) + "\n")
        return fn(*args, **kwargs)

    return call


_fake = make_nvml([FakeGpu("GPU-5151-feed", trace=[(0.0, 200.0)])])
for _name, _value in _real_constants().items():
    if not hasattr(_fake, _name):
        setattr(_fake, _name, _value)
for _name in [n for n in vars(_fake) if n.startswith("nvml")]:
    setattr(_fake, _name, _logged(_name, getattr(_fake, _name)))
sys.modules[__name__] = _fake
