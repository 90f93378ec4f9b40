"""One owner of NVML with CodeCarbon left on (issue 19, item 5).

CodeCarbon 3.x calls ``nvmlInit`` when it is imported and polls every GPU from its tracker; llem
imports it with its GPU part off, so only Zeus or llem's NVML meter read the GPUs. The simulated
NVML (tests/stand_ins/simulated_nvml, one 200 W GPU) logs every NVML call with the calling
module; the runs here are fresh processes (a real ``llem`` run where Zeus is not needed), because
CodeCarbon's import-time side effect happens once per process. Also: with no GPU, no GPU field of
result.json is 0.0 (null, with the reason)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import REPO, run_llem

pytest.importorskip("codecarbon")

SIMULATED_NVML = REPO / "tests" / "stand_ins" / "simulated_nvml"
SMALL_RUN = ("n=2", "max_new_tokens=4", "quiet=true", "plots=false", "flops.enabled=false")


def _env(log: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": f"{SIMULATED_NVML}:{REPO}",
        "LLEM_TEST_NVML_LOG": str(log),
        "OMP_NUM_THREADS": "1",
    }


def _calls(log: Path) -> Counter[tuple[str, str]]:
    """(NVML function, calling module) -> how many calls."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return Counter((c["call"], c["caller"]) for c in map(json.loads, lines))


def _python(code: str, log: Path) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **_env(log)},
        cwd=REPO,
    )


def _result(root: Path) -> dict:
    (path,) = root.rglob("result.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_codecarbon_alone_would_open_nvml(tmp_path: Path) -> None:
    """Why llem guards it: CodeCarbon's own import initialises NVML and never shuts it down."""
    log = tmp_path / "nvml.jsonl"
    proc = _python("import codecarbon", log)
    assert proc.returncode == 0, proc.stderr
    calls = _calls(log)
    assert calls[("nvmlInit", "codecarbon.core.gpu_nvidia")] == 1
    assert not any(call == "nvmlShutdown" for call, _ in calls)


def test_llem_nvml_meter_is_the_only_owner_with_codecarbon_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run, energy=auto with CodeCarbon on (the default): Zeus stands aside (it refuses the
    simulated pynvml), llem's NVML meter measures the GPU and CodeCarbon never touches NVML."""
    log = tmp_path / "nvml.jsonl"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # NVML maps the simulated GPU
    # a window long enough for CodeCarbon (it measures nothing under 0.05 s)
    proc = run_llem(*SMALL_RUN, "n=8", "max_new_tokens=64", cwd=tmp_path, env=_env(log))
    assert proc.returncode == 0, proc.stderr
    energy = _result(tmp_path)["energy"]
    assert energy["window_s"] > 0.1
    assert energy["meters"] == ["nvml", "codecarbon"]
    assert energy["gpu_j"] > 0 and energy["covers"] == "GPU board"

    calls = _calls(log)
    callers = {caller for _, caller in calls}
    assert not [c for c in callers if c.startswith(("codecarbon", "zeus"))], callers
    assert callers <= {"llem.energy.nvml", "llem.energy.zeus", "llem.energy.sampler",
                       "llem.energy.quality", "llem.environment"}  # fmt: skip
    readers = {caller for call, caller in calls if call == "nvmlDeviceGetTotalEnergyConsumption"}
    assert readers == {"llem.energy.nvml"}  # one meter reads the GPU's energy
    inits = sum(n for (call, _), n in calls.items() if call == "nvmlInit")
    assert inits >= 1 and inits == sum(
        n for (call, _), n in calls.items() if call == "nvmlShutdown"
    )

    co2 = energy["co2"]
    assert co2["coverage"] == "CPU + RAM only; GPU measured by NVML"
    assert (
        co2["gpu_estimate_j"] is None
        and "measured by NVML" in co2["null_reasons"]["gpu_estimate_j"]
    )
    assert co2["energy_estimate_j"] > 0 and co2["cpu_estimate_j"] > 0 and co2["ram_estimate_j"] > 0
    assert co2["energy_estimate_j"] == pytest.approx(co2["cpu_estimate_j"] + co2["ram_estimate_j"])
    (reading,) = [r for r in energy["readings"] if r["meter"] == "codecarbon"]
    assert "CPU + RAM only; GPU measured by NVML" in reading["device"]


ZEUS_OWNER = """
import dataclasses, json, time
import pynvml
from llem.energy import registry
from llem.energy.base import COUNTER, GPU_BOARD, Reading
from llem.energy.config import EnergyConfig
from llem.energy.report import energy_metrics
from llem.energy.session import EnergySession

class ZeusOwner:
    '''Zeus's place in the registry: it owns NVML (init at open, shutdown at close).'''
    name = "zeus"
    def __init__(self):
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    def start(self):
        self.t0, self.mj = time.time(), pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
    def stop(self):
        j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.mj) / 1000
        return [Reading("zeus", "gpu0", GPU_BOARD, COUNTER, j, self.t0, time.time(), None, "g")]
    def poll(self):
        pass
    def baseline_keys(self):
        return {}
    def close(self):
        pynvml.nvmlShutdown()

spec = registry.meter_spec("zeus")
registry._METERS["zeus"] = dataclasses.replace(
    spec, requires=(), status=lambda: None, factory=lambda ctx: ZeusOwner()
)
session = EnergySession(EnergyConfig())
session.open()
with session.window("repeat-1", lambda: None) as win:
    time.sleep(0.3)
cc = next(m for m in session.meters if m.name == "codecarbon")
session.close(None)
e = energy_metrics(meters=[m.name for m in session.meters], windows=[(win.name, win.readings, 0.3)],
                   output_tokens=1, requests=1, baseline=[], baseline_reason="off",
                   reason_if_none="none", carbon=cc.figures)
print(json.dumps({"meters": e.meters, "gpu_j": e.gpu_j, "co2": e.co2.model_dump(),
                  "sampled": [g.uuid for g in session.gpus]}))
"""


def test_zeus_is_the_only_owner_with_codecarbon_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The energy session with Zeus's place taken by a meter that owns the simulated NVML, and
    CodeCarbon on: nothing else initialises or reads NVML (llem's NVML meter and sampler stand
    aside, CodeCarbon's GPU part is off) and the estimate says the GPU is Zeus's."""
    log = tmp_path / "nvml.jsonl"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    proc = _python(ZEUS_OWNER, log)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["meters"] == ["zeus", "codecarbon"] and out["sampled"] == []
    assert out["gpu_j"] == pytest.approx(200 * 0.3, rel=0.2)
    assert {caller for _, caller in _calls(log)} == {"__main__"}  # the Zeus stand-in, alone
    assert _calls(log)[("nvmlInit", "__main__")] == 1
    co2 = out["co2"]
    assert co2["coverage"] == "CPU + RAM only; GPU measured by Zeus"
    assert (
        co2["gpu_estimate_j"] is None
        and "measured by Zeus" in co2["null_reasons"]["gpu_estimate_j"]
    )


def test_no_gpu_field_is_zero_without_a_gpu(tmp_path: Path) -> None:
    """This machine has no GPU: a real run (energy=auto, CodeCarbon on) leaves every GPU figure
    null with a reason; CodeCarbon's estimate says it covers the CPU and RAM only."""
    proc = run_llem(*SMALL_RUN, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    result = _result(tmp_path)
    if result["environment"]["nvml"].get("gpus"):
        pytest.skip("this machine has a GPU")

    def gpu_values(node: object, path: str = "") -> list[tuple[str, object]]:
        if isinstance(node, dict):
            out = [(f"{path}.{k}", v) for k, v in node.items() if "gpu" in k.lower()]
            return out + [x for k, v in node.items() for x in gpu_values(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [x for i, v in enumerate(node) for x in gpu_values(v, f"{path}[{i}]")]
        return []

    numbers = [(p, v) for p, v in gpu_values(result) if isinstance(v, int | float)]
    assert not [(p, v) for p, v in numbers if v == 0], numbers
    energy = result["energy"]
    assert energy["gpu_j"] is None and energy["reason"]
    co2 = energy["co2"]
    assert co2 is not None, "CodeCarbon is installed: its estimate is expected"
    assert co2["gpu_estimate_j"] is None
    assert "no GPU meter here" in co2["null_reasons"]["gpu_estimate_j"]
    assert co2["coverage"] == "CPU + RAM only; no GPU estimate"
    for key in ("cpu_estimate_j", "ram_estimate_j", "energy_estimate_j", "emissions_kg_co2eq"):
        assert (co2[key] is None and key in co2["null_reasons"]) or co2[key] > 0, key


def test_codecarbon_modules_alone_are_refused_the_gpu_libraries() -> None:
    """The guard is narrow: only a CodeCarbon module's import of pynvml/amdsmi fails."""
    from llem.energy.codecarbon import gpu_libraries_refused

    with gpu_libraries_refused():
        with pytest.raises(ImportError, match="off the GPUs"):
            exec("import pynvml", {"__name__": "codecarbon.core.gpu_nvidia"})
        exec("import json", {"__name__": "codecarbon.core.gpu_nvidia"})  # other imports work
        exec("import pynvml", {"__name__": "zeus.device.gpu.nvidia"})  # other importers too
    exec("import pynvml", {"__name__": "codecarbon.core.gpu_nvidia"})  # and afterwards


@pytest.mark.slow
def test_study_jobs_forked_after_codecarbon_prewarm_leave_nvml_to_llem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study's fork server imports CodeCarbon before forking its jobs (to warm its caches): that
    import, too, leaves NVML alone, and every job's estimate says the GPU is NVML's."""
    log = tmp_path / "nvml.jsonl"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    proc = run_llem("-m", "batch=1,2", *SMALL_RUN, cwd=tmp_path, env=_env(log), timeout=400)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(p.read_text(encoding="utf-8")) for p in tmp_path.rglob("result.json")]
    assert len(results) == 2
    for r in results:
        assert r["energy"]["meters"] == ["nvml", "codecarbon"] and r["energy"]["gpu_j"] > 0
        assert r["energy"]["co2"]["coverage"] == "CPU + RAM only; GPU measured by NVML"
    calls = _calls(log)
    assert not [c for _, c in calls if c.startswith(("codecarbon", "zeus"))], calls
    readers = {caller for call, caller in calls if call == "nvmlDeviceGetTotalEnergyConsumption"}
    assert readers == {"llem.energy.nvml"}


def test_a_figure_codecarbon_did_not_give_is_null_with_its_reason() -> None:
    """By hand: a window where CodeCarbon gave no CPU energy makes the CPU sum null for good (never
    a partial sum, never 0.0); the GPU estimate is null with the owner's name."""
    from llem.energy.base import ESTIMATE, MODELLED, Reading
    from llem.energy.codecarbon import CarbonFigures, gpu_reason
    from llem.energy.report import energy_metrics

    fig = CarbonFigures("FRA", "CPU + RAM only; GPU measured by NVML")
    fig.null_reasons["gpu_estimate_j"] = gpu_reason("NVML")
    fig.add({"cpu_estimate_j": 2.0, "ram_estimate_j": 3.0, "emissions_kg_co2eq": 1e-7})
    fig.add({"cpu_estimate_j": 0.0, "ram_estimate_j": 3.0, "emissions_kg_co2eq": 1e-7})
    fig.add({"cpu_estimate_j": 2.0, "ram_estimate_j": 3.0, "emissions_kg_co2eq": 1e-7})
    readings = [Reading("codecarbon", "process", ESTIMATE, MODELLED, 5.0, 0.0, 1.0)]
    e = energy_metrics(
        meters=["codecarbon"],
        windows=[("repeat-1", readings, 1.0)],
        output_tokens=10,
        requests=1,
        baseline=[],
        baseline_reason="no hardware meter",
        reason_if_none="no hardware meter",
        carbon=fig,
    )
    co2 = e.co2
    assert co2 is not None and co2.coverage == "CPU + RAM only; GPU measured by NVML"
    assert co2.cpu_estimate_j is None and "cpu_estimate_j" in co2.null_reasons
    assert co2.ram_estimate_j == pytest.approx(9.0)
    assert co2.emissions_kg_co2eq == pytest.approx(3e-7)
    assert co2.gpu_estimate_j is None and "measured by NVML" in co2.null_reasons["gpu_estimate_j"]
    assert co2.energy_estimate_j == 5.0 and "energy_estimate_j" not in co2.null_reasons
