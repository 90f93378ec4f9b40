"""Energy arithmetic against hand-computed values: simulated NVML, a temporary powercap tree, real
Zeus/CodeCarbon on this (GPU-less) machine."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest

from llem.energy import EnergySession
from llem.energy.base import COUNTER, ESTIMATE, GPU_BOARD, INTEGRATED, MODELLED, Reading
from llem.energy.config import EnergyConfig
from llem.energy.nvml import NvmlMeter, visible_gpus
from llem.energy.quality import device_problems, sample_problems, short_window
from llem.energy.rapl import RaplMeter, find_zones
from llem.energy.report import energy_metrics, hardware_total
from llem.energy.sampler import Sampler, write_timeseries
from llem.stats import LOG_T, summarize, t_quantile
from tests.fake_nvml import Clock, FakeGpu, make_nvml

UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]


def _nvml(gpus, clock):
    return make_nvml(gpus, clock=clock, origin=clock())


# ---------------------------------------------------------------- NVML counter and device mapping


def test_counter_delta_matches_the_trace_integral():
    clock = Clock(1000.0)
    gpu = FakeGpu(UUIDS[0], trace=[(0, 100.0), (1004.0, 300.0)])  # 100 W, then 300 W from t=1004
    nv = _nvml([gpu], clock)
    gpus, _ = visible_gpus(nv, cuda_visible="")
    assert gpus == []  # an empty CUDA_VISIBLE_DEVICES hides every GPU
    gpus, _ = visible_gpus(nv, cuda_visible=None)
    meter = NvmlMeter(nv, gpus, integrate=lambda *a: None, clock=clock)
    meter.start()
    clock.t = 1010.0
    (r,) = meter.stop()
    assert r.method == COUNTER and r.covers == GPU_BOARD
    assert r.energy_j == pytest.approx(4 * 100 + 6 * 300)  # 2,200 J
    assert r.duration_s == pytest.approx(10.0) and UUIDS[0] in r.device


def test_every_visible_gpu_is_measured_in_cuda_order():
    clock = Clock()
    gpus = [FakeGpu(u, trace=[(0, 100.0 * (i + 1))]) for i, u in enumerate(UUIDS)]
    nv = _nvml(gpus, clock)
    seen, _ = visible_gpus(nv, cuda_visible="2,0", device_order="PCI_BUS_ID")
    assert [(g.cuda_index, g.nvml_index) for g in seen] == [(0, 2), (1, 0)]
    meter = NvmlMeter(nv, seen, integrate=lambda *a: None, clock=clock)
    meter.start()
    clock.t += 2.0
    assert [r.energy_j for r in meter.stop()] == pytest.approx([600.0, 200.0])


def test_uuid_mig_and_invalid_entries():
    nv = _nvml([FakeGpu(UUIDS[0], mig_children=("MIG-x1",)), FakeGpu(UUIDS[1])], Clock())
    by_uuid, _ = visible_gpus(nv, cuda_visible="GPU-bbbb,GPU-aaaa-0000")
    assert [g.nvml_index for g in by_uuid] == [1, 0]
    mig, warns = visible_gpus(nv, cuda_visible="MIG-x1")
    assert [g.nvml_index for g in mig] == [0] and "MIG" in warns[0]
    stops, _ = visible_gpus(
        nv, cuda_visible="1,7,0"
    )  # CUDA ignores everything from an invalid entry on
    assert [g.nvml_index for g in stops] == [1]


def test_mixed_models_without_pci_order_warn():
    nv = _nvml(
        [FakeGpu(UUIDS[0], name="NVIDIA H200"), FakeGpu(UUIDS[1], name="NVIDIA A100")], Clock()
    )
    _, warns = visible_gpus(nv, cuda_visible="0,1", device_order="FASTEST_FIRST")
    assert any("CUDA_DEVICE_ORDER=PCI_BUS_ID" in w for w in warns)


def test_counter_reset_and_zero_reading_are_null_with_reason():
    clock = Clock(1000.0)
    nv = _nvml([FakeGpu(UUIDS[0], reset_at=1005.0), FakeGpu(UUIDS[1], trace=[(0, 0.0)])], clock)
    gpus, _ = visible_gpus(nv, cuda_visible=None)
    meter = NvmlMeter(nv, gpus, integrate=lambda *a: None, clock=clock)
    clock.t = 1004.0
    meter.start()
    clock.t = 1006.0
    reset, zero = meter.stop()
    assert reset.energy_j is None and "backwards" in reset.reason
    assert zero.energy_j is None and "did not advance" in zero.reason
    total, why = hardware_total([reset, zero])
    assert total is None and "backwards" in why


def test_no_counter_falls_back_to_integrated_instant_power():
    clock = Clock(1000.0)
    gpu = FakeGpu(UUIDS[0], counter_supported=False, trace=[(0, 200.0), (1001.0, 400.0)])
    nv = _nvml([gpu], clock)
    gpus, _ = visible_gpus(nv, cuda_visible=None)
    sampler = Sampler(0.1, nv, gpus, clock=clock)
    meter = NvmlMeter(nv, gpus, integrate=sampler.integrate, clock=clock)
    meter.start()
    for step in range(21):  # samples at 1000.0, 1000.1, ... 1002.0
        clock.t = 1000.0 + step / 10
        sampler.sample_once()
    (r,) = meter.stop()
    # trapezoid over 0.1 s steps: 200 W for 1 s, one ramp step (200->400) of 0.1 s, 400 W for 0.9 s
    assert r.method == INTEGRATED and r.energy_j == pytest.approx(200 * 0.9 + 300 * 0.1 + 400 * 1.0)
    rows = sampler.gpu_rows(gpus[0], 1000.0, 1002.0)
    assert rows[0]["power_source"] == "field:POWER_INSTANT" and rows[0]["sm_util_pct"] == 97


def test_instant_field_missing_falls_back_with_label():
    clock = Clock()
    nv = _nvml([FakeGpu(UUIDS[0], instant_supported=False)], clock)
    gpus, _ = visible_gpus(nv, cuda_visible=None)
    sampler = Sampler(0.1, nv, gpus, clock=clock)
    sampler.sample_once()
    (row,) = [r for r in sampler.rows if r["device"] == "gpu0"]
    assert row["power_source"] == "power_usage" and row["power_w"] == 100.0


def test_quality_warnings_from_samples_and_devices(tmp_path):
    clock = Clock()
    gpu = FakeGpu(UUIDS[0], throttle=0x4 | 0x40, pids=(1, 2), persistence=0)
    nv = _nvml([gpu], clock)
    gpus, _ = visible_gpus(nv, cuda_visible=None)
    sampler = Sampler(0.1, nv, gpus, clock=clock)
    for t, temp in ((0, 40.0), (1, 55.0)):
        clock.t, gpu.temperature = 1000.0 + t, temp
        sampler.sample_once()
    warns = " | ".join(sample_problems(sampler.rows, gpus, 0.1) + device_problems(nv, gpus))
    for text in (
        "software power cap",
        "hardware thermal slowdown",
        "drifted 40 -> 55",
        "fewer than 10",
        "pids [1, 2]",
        "persistence mode is off",
    ):
        assert text in warns
    assert (
        short_window(1.0) is not None and "±20%" in short_window(1.0) and short_window(6.0) is None
    )
    write_timeseries(sampler.rows, tmp_path / "ts.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ts.parquet")
    assert table.num_rows == 4 and set(table.column("device").to_pylist()) == {"process", "gpu0"}


# ---------------------------------------------------------------- RAPL


def _powercap(root, package_uj=1_000, dram_uj=50, max_range=10_000):
    for zone, name, value in (
        ("intel-rapl:0", "package-0", package_uj),
        ("intel-rapl:0:0", "core", 0),
        ("intel-rapl:0:1", "dram", dram_uj),
    ):
        d = root / zone
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def _set(root, zone, value):
    (root / zone / "energy_uj").write_text(f"{value}\n")


def test_rapl_package_and_dram_with_wraparound(tmp_path):
    root = _powercap(tmp_path)
    zones, why = find_zones(root)
    assert why is None and [z.label for z in zones] == [
        "package-0",
        "dram-0",
    ]  # core is inside the package
    meter = RaplMeter(zones)
    meter.start()  # package at 1,000 uJ
    _set(root, "intel-rapl:0", 9_000)
    meter.poll()  # +8,000
    _set(root, "intel-rapl:0", 500)  # wrapped at 10,000: +1,500
    _set(root, "intel-rapl:0:1", 350)
    meter.poll()
    _set(root, "intel-rapl:0", 2_500)  # +2,000
    package, dram = meter.stop()
    assert package.energy_j == pytest.approx(11_500e-6) and package.covers == "CPU package"
    assert dram.energy_j == pytest.approx(300e-6) and dram.covers == "DRAM"


def test_rapl_missing_or_unreadable(tmp_path):
    assert "no powercap" in find_zones(tmp_path / "absent")[1]
    root = _powercap(tmp_path / "pc")
    (root / "intel-rapl:0" / "energy_uj").unlink()
    (root / "intel-rapl:0" / "energy_uj").mkdir()  # reading it fails like an unreadable counter
    zones, why = find_zones(root)
    assert zones == [] and "unreadable" in why


# ---------------------------------------------------------------- the session and the Zeus rule


class _FakeZeus:
    """Stands in for Zeus's meter: no NVML use, no reading."""

    name = "zeus"

    def start(self) -> None:
        pass

    def stop(self) -> list[Reading]:
        return []

    def poll(self) -> None:
        pass

    def baseline_keys(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def _zeus(monkeypatch, works: bool) -> list[int]:
    """Replace the registry's Zeus entry by one that works (or not) here; returns its open count."""
    import dataclasses

    from llem.energy import registry
    from llem.energy.base import MeterUnavailable

    opened: list[int] = []

    def factory(ctx):
        if not works:
            raise MeterUnavailable("Zeus found no GPU")
        opened.append(1)
        return _FakeZeus()

    status = (lambda: None) if works else (lambda: "Zeus found no GPU")
    replaced = dataclasses.replace(registry.meter_spec("zeus"), status=status, factory=factory)
    monkeypatch.setitem(registry._METERS, "zeus", replaced)
    return opened


def test_zeus_is_preferred_to_nvml_for_gpus():
    from llem.energy.registry import meters

    gpu = [s.name for s in meters() if s.devices == "gpu"]
    assert gpu.index("zeus") < gpu.index("nvml")


def test_session_auto_with_zeus_does_not_poll_nvml(monkeypatch):
    import sys

    fake = make_nvml([FakeGpu(UUIDS[0])])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    opened = _zeus(monkeypatch, works=True)
    session = EnergySession(EnergyConfig(codecarbon=False))
    session.open()
    assert opened == [1] and session.nvml is None and fake.state["inits"] == 0
    assert [m.name for m in session.meters] == ["zeus"]
    assert session.sampler.gpus == []
    session.close(None)


def test_session_auto_without_zeus_uses_nvml_and_pairs_init(monkeypatch, tmp_path):
    import sys

    fake = make_nvml([FakeGpu(UUIDS[0])])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _zeus(monkeypatch, works=False)
    session = EnergySession(EnergyConfig(codecarbon=False), powercap_root=tmp_path / "none")
    session.open()
    assert [m.name for m in session.meters] == ["nvml"] and session.sampler.gpus == session.gpus
    assert session.unavailable == [
        "Zeus found no GPU",
        f"no powercap interface at {tmp_path / 'none'}",
    ]
    session.close(None)
    assert fake.state["inits"] == fake.state["shutdowns"] >= 1


def test_zeus_zero_joules_is_not_a_measurement(monkeypatch):
    import sys
    import types

    from llem.energy.zeus import ZeusMeter

    class FakeMonitor:
        def __init__(self, **kw):
            pass

        def begin_window(self, key, sync_execution=True):
            pass

        def end_window(self, key, sync_execution=True):
            return types.SimpleNamespace(gpu_energy={0: 0.0, 1: 12.5})

    monkeypatch.setitem(sys.modules, "zeus.monitor", types.SimpleNamespace(ZeusMonitor=FakeMonitor))
    meter = ZeusMeter([0, 1], {0: ("gpu0 X", "u0"), 1: ("gpu1 X", "u1")})
    meter.start()
    zero, ok = meter.stop()
    assert (
        zero.energy_j is None and "0 J is not a measurement" in zero.reason and ok.energy_j == 12.5
    )


def test_zeus_is_imported_only_where_a_gpu_driver_is(monkeypatch, tmp_path):
    """No NVML and no amdgpu driver: Zeus could see no GPU, so it is not imported to say so."""
    from llem.energy import zeus

    monkeypatch.setitem(sys.modules, "zeus", None)  # importing Zeus would now fail
    monkeypatch.setattr(zeus, "load_nvml", lambda: (None, "NVML unavailable: no driver"))
    monkeypatch.setattr(zeus, "AMDGPU_DRIVER", str(tmp_path / "absent"))
    assert (
        zeus.zeus_status()
        == "no GPU for Zeus (NVML unavailable: no driver; no amdgpu driver loaded)"
    )
    not_installed = "zeus is not installed (pip install llenergymeasure[zeus])"
    monkeypatch.setattr(zeus, "AMDGPU_DRIVER", str(tmp_path))  # an AMD driver: Zeus decides
    assert zeus.zeus_status() == not_installed
    monkeypatch.setattr(zeus, "AMDGPU_DRIVER", str(tmp_path / "absent"))
    nvml = SimpleNamespace(nvmlShutdown=lambda: None)
    monkeypatch.setattr(zeus, "load_nvml", lambda: (nvml, None))  # NVML works: Zeus decides
    assert zeus.zeus_status() == not_installed


def test_real_zeus_here_is_unavailable():
    pytest.importorskip("zeus")
    from llem.energy.zeus import zeus_status

    assert zeus_status() is not None  # no GPU on this machine: never 0 J


def test_real_codecarbon_is_a_labelled_estimate():
    pytest.importorskip("codecarbon")
    import time

    from llem.energy.codecarbon import CodeCarbonMeter

    meter = CodeCarbonMeter("FRA")
    meter.start()
    busy_until = time.process_time() + 0.5  # CodeCarbon counts this process's CPU time only
    while time.process_time() < busy_until:
        pass
    (r,) = meter.stop()
    assert r.covers == ESTIMATE and r.method == MODELLED and not r.hardware and r.energy_j > 0
    sums = meter.figures.sums
    assert sums["emissions_kg_co2eq"] > 0 and "gpu_estimate_j" in meter.figures.null_reasons
    cpu_ram = sums["cpu_estimate_j"] + sums["ram_estimate_j"]
    assert cpu_ram == pytest.approx(r.energy_j, rel=1e-6)  # CPU + RAM: its GPU part is off


# ---------------------------------------------------------------- result arithmetic and statistics


def _reading(joules, covers=GPU_BOARD, meter="nvml", device="gpu0"):
    return Reading(
        meter, device, covers, COUNTER if covers != ESTIMATE else MODELLED, joules, 0.0, 10.0
    )


def test_energy_metrics_by_hand():
    from llem.energy.baseline import IdlePower

    windows = [
        (
            "repeat-1",
            [
                _reading(600.0),
                _reading(100.0, "CPU package", "rapl", "package-0"),
                _reading(50.0, ESTIMATE, "codecarbon", "process"),
            ],
            4.0,
        ),
        (
            "repeat-2",
            [
                _reading(400.0),
                _reading(100.0, "CPU package", "rapl", "package-0"),
                _reading(50.0, ESTIMATE, "codecarbon", "process"),
            ],
            4.0,
        ),
    ]
    idle = [
        IdlePower("gpu0", "u", GPU_BOARD, "nvml", 60.0, 15.0, 0.0),
        IdlePower("p", "z", "CPU package", "rapl", 10.0, 15.0, 0.0),
    ]
    e = energy_metrics(
        meters=["nvml", "rapl", "codecarbon"],
        windows=windows,
        output_tokens=2000,
        requests=200,
        baseline=idle,
        baseline_reason=None,
        reason_if_none="-",
    )
    assert (
        e.total_j == 1200.0 and e.gpu_j == 1000.0 and e.cpu_package_j == 200.0 and e.dram_j is None
    )
    assert e.covers == "GPU board + CPU package" and e.window_s == 8.0
    assert e.per_output_token_j == 0.6 and e.per_request_j == 6.0
    assert e.output_tokens_per_j == pytest.approx(2000 / 1200)
    assert (
        e.wh_per_1k_requests == pytest.approx(1200 / 3600 / 200 * 1000)
        and e.average_power_w == 150.0
    )
    assert e.adjusted_total_j == pytest.approx(1200 - 70 * 8) and e.estimate_j == 100.0
    assert e.reason is None and len(e.readings) == 6


def test_energy_metrics_none_is_null_never_zero():
    e = energy_metrics(
        meters=[],
        windows=[("repeat-1", [], 3.0)],
        output_tokens=10,
        requests=1,
        baseline=[],
        baseline_reason="no hardware meter",
        reason_if_none="no usable meter (no driver)",
    )
    assert e.total_j is None and e.per_output_token_j is None and e.wh_per_1k_requests is None
    assert e.average_power_w is None and e.reason == "no usable meter (no driver)"


def test_student_t_interval():
    assert t_quantile(2) == pytest.approx(4.303, abs=5e-4)
    assert t_quantile(4) == pytest.approx(2.776, abs=5e-4)
    assert t_quantile(10_000) == pytest.approx(1.96, abs=0.002)
    iv = summarize([10.0, 12.0, 14.0])  # logs: mean m, sd s; interval exp(m -+ 4.303 s / sqrt(3))
    logs = [math.log(v) for v in (10.0, 12.0, 14.0)]
    m = sum(logs) / 3
    half = t_quantile(2) * math.sqrt(sum((x - m) ** 2 for x in logs) / 2) / math.sqrt(3)
    assert (iv.mean, iv.std, iv.estimate) == (12.0, 2.0, "geometric mean")
    assert iv.point == pytest.approx(math.exp(m)) and iv.method == LOG_T and iv.reason is None
    assert iv.ci95_low == pytest.approx(math.exp(m - half))
    assert iv.ci95_high == pytest.approx(math.exp(m + half))
    single = summarize([5.0])
    assert single.std is None and single.ci95_low is None and summarize([]) is None
