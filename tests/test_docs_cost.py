"""docs/results.md, "What does my run cost?": every result path it names exists in the schema,
its worked example's arithmetic holds, and CodeCarbon's RAM model and grid intensity are what it
says."""

from __future__ import annotations

import json
import platform
import re
import time
import types
from typing import Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from llem.result import Result
from tests.helpers import REPO

HEADING = "## What does my run cost?"
PATH = re.compile(r"`([a-z_]+(?:\[\])?(?:\.[a-z_0-9]+(?:\[\])?)+)`")
FILE_SUFFIXES = (".json", ".md", ".png", ".parquet")
J_PER_WH = 3600.0
J_PER_KWH = 3.6e6


def _section() -> str:
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    return text[start : end if end != -1 else None]


def _models(annotation: object) -> list[object]:
    """The types inside an annotation (``X | None``, ``list[X]``, ``dict[str, X]``), flattened."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list, dict):
        return [t for arg in get_args(annotation) for t in _models(arg)]
    return [annotation]


def _resolves(model: type[BaseModel], path: list[str]) -> bool:
    """Whether ``path`` (field names, ``[]`` stripped) names a field under ``model``; a free-form
    dict (``environment``, ``config``) accepts any sub-path."""
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    inner = _models(field.annotation)
    if object in inner:
        return True
    return any(
        isinstance(t, type) and issubclass(t, BaseModel) and _resolves(t, path[1:]) for t in inner
    )


def _json_paths(value: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _json_paths(v, (*prefix, k))]
    if isinstance(value, list):
        return [p for v in value for p in _json_paths(v, prefix)]
    return [prefix]


def _excerpt() -> dict[str, object]:
    block = re.search(r"```json\n(.*?)```", _section(), re.S)
    assert block is not None, "the worked example's JSON excerpt is missing"
    return json.loads(block.group(1))


def _table(section: str) -> dict[str, str]:
    """The worked example's derived quantities: name -> value cell."""
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", section, re.M)
    return {name: value for name, _, value in rows}


def test_every_result_path_the_section_names_is_in_the_schema():
    named = {p for p in PATH.findall(_section()) if not p.endswith(FILE_SUFFIXES)}
    assert {"energy.total_j", "energy.adjusted_total_j", "energy.wh_per_1k_requests"} <= named
    for path in named:
        assert _resolves(Result, path.replace("[]", "").split(".")), f"not in result.json: {path}"
    for path in _json_paths(_excerpt()):
        assert _resolves(Result, list(path)), f"the excerpt's {'.'.join(path)} is not in the schema"


def test_the_worked_example_adds_up():
    ex = _excerpt()
    tokens, energy = ex["tokens"], ex["energy"]
    co2 = energy["co2"]
    window = ex["timing"]["measured_window_s"]
    cores = [w["llem_cores"] for w in ex["cpu_contention"]]
    logical = ex["host_cpu"]["logical_cores"]
    estimate, cpu, ram = energy["estimate_j"], co2["cpu_estimate_j"], co2["ram_estimate_j"]
    assert energy["total_j"] is None and energy["wh_per_1k_requests"] is None
    assert estimate == pytest.approx(cpu + ram, rel=1e-9)
    tdp_w = 4 * logical  # CodeCarbon's fallback, as the section says
    expected = {
        "estimate": (estimate, "J"),
        "RAM share of the estimate": (100 * ram / estimate, "%"),
        "RAM power": (ram / window, "W"),
        "CPU power": (cpu / window, "W"),
        "CPU power, CodeCarbon's model": (tdp_w * sum(cores) / len(cores) / logical, "W"),
        "estimate per output token": (estimate / tokens["output"], "J"),
        "estimate, Wh per 1,000 requests": (estimate / tokens["requests"] * 1000 / J_PER_WH, "Wh"),
        "CO2-eq": (co2["emissions_kg_co2eq"] * 1000, "g"),
        "grid intensity": (co2["emissions_kg_co2eq"] / (estimate / J_PER_KWH) * 1000, "g/kWh"),
    }
    table = _table(_section())
    for name, (value, unit) in expected.items():
        cell = table[name].strip()
        number, quoted_unit = cell.split(" ", 1)
        assert quoted_unit == unit, f"{name}: unit {quoted_unit!r}, expected {unit!r}"
        assert float(number) == pytest.approx(value, rel=5e-3), f"{name}: {cell} vs {value:.4g}"
    wh = f"{estimate / tokens['requests'] * 1000 / J_PER_WH:.3f} Wh per 1,000 requests"
    assert wh in _section(), "the sentence to quote has another Wh figure than the table"
    assert f"{tdp_w} W is CodeCarbon's fallback TDP" in " ".join(_section().split())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 RAM model only")
def test_codecarbon_charges_10_w_of_ram_and_the_documented_grid_intensity():
    codecarbon = pytest.importorskip("codecarbon")
    from llem.energy.codecarbon import CodeCarbonMeter

    meter = CodeCarbonMeter("USA")
    meter.start()
    time.sleep(1.0)  # idle: the RAM part is charged all the same
    (reading,) = meter.stop()
    sums = meter.figures.sums
    assert reading.energy_j is not None and reading.energy_j > 0
    assert sums["ram_estimate_j"] / reading.duration_s == pytest.approx(10.0, rel=0.1)
    section = " ".join(_section().split())
    documented = re.search(r"([\d.]+) g CO2-eq/kWh for USA in CodeCarbon ([\d.]+)", section)
    assert documented is not None
    if codecarbon.__version__ == documented.group(2):
        kwh = reading.energy_j / J_PER_KWH  # CPU + RAM (the CPU part may be 0 while idle)
        intensity_g = sums["emissions_kg_co2eq"] / kwh * 1000
        assert intensity_g == pytest.approx(float(documented.group(1)), rel=1e-3)
