"""The harness with a simulated GPU: energy flows into result.json and timeseries.parquet."""

from __future__ import annotations

import sys

import pytest

from llem.config import validate
from llem.harness import Harness
from tests.fake_nvml import FakeGpu, make_nvml
from tests.helpers import base

WATTS = 250.0


@pytest.fixture
def fake_gpu(monkeypatch):
    gpu = FakeGpu("GPU-1234-abcd", trace=[(0.0, WATTS)], persistence=0)
    fake = make_nvml([gpu])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def _config(**energy):
    cfg = base() | {"n": 6, "batch": 3, "max_new_tokens": 6, "repeats": 3, "quiet": True}
    cfg["energy"] |= {"meter": "nvml", "sample_interval_ms": 20} | energy
    cfg["energy"]["baseline"] = {"enabled": True, "duration_s": 0.3, "max_age_h": 24.0}
    return validate(cfg)


def test_energy_section_from_a_simulated_gpu(tmp_path, fake_gpu, tiny_model_dir):
    result = Harness(_config(prefill_split=True), tmp_path).run()
    e = result.energy
    window_readings = [r for r in e.readings if r.window.startswith("repeat-")]
    assert [r.window for r in window_readings] == ["repeat-1", "repeat-2", "repeat-3"]
    assert all(r.method == "counter delta" and r.covers == "GPU board" for r in window_readings)
    # constant 250 W: each reading is 250 W x its own window (counter in whole mJ)
    for r in window_readings:
        assert r.energy_j == pytest.approx(WATTS * r.duration_s, rel=1e-3, abs=2e-3)
    assert e.total_j == pytest.approx(sum(r.energy_j for r in window_readings))
    assert e.gpu_j == e.total_j and e.covers == "GPU board" and e.meters == ["nvml"]
    assert e.per_output_token_j == pytest.approx(e.total_j / result.tokens.output)
    assert result.tokens.output == 3 * 6 * 6
    assert e.wh_per_1k_requests == pytest.approx(e.total_j / 3600 / 18 * 1000)

    (idle,) = e.baseline
    assert idle.idle_power_w == pytest.approx(WATTS, rel=1e-2) and idle.source == "measured"
    assert e.adjusted_total_j == pytest.approx(e.total_j - idle.idle_power_w * e.window_s)
    assert e.prefill is not None and 0 < e.prefill.prefill_j < e.total_j

    stats = result.repeats.stats["energy_per_output_token_j"]
    assert stats.n == 3 and 0 < stats.ci95_low <= stats.point <= stats.ci95_high
    assert [p.repeat for p in result.repeats.per_repeat] == [1, 2, 3]
    assert any("persistence mode is off" in w for w in result.warnings)
    assert fake_gpu.state["inits"] == fake_gpu.state["shutdowns"]  # one init per session, paired

    import pyarrow.parquet as pq

    ts = pq.read_table(tmp_path / e.timeseries).to_pylist()
    gpu_rows = [r for r in ts if r["device"] == "gpu0"]
    assert gpu_rows and all(r["power_w"] == WATTS for r in gpu_rows)
    assert {"baseline", "warmup", "repeat-1", "repeat-3", "prefill"} <= {r["phase"] for r in ts}

    second = tmp_path / "second"
    second.mkdir()
    again = Harness(_config(), second).run()
    assert again.energy.baseline[0].source == "cache" and again.energy.prefill is None


def test_energy_nvml_without_a_driver_fails_before_loading(tmp_path):
    from llem.errors import UsageError

    with pytest.raises(UsageError, match="energy=nvml cannot work here"):
        Harness(_config(), tmp_path).run()
