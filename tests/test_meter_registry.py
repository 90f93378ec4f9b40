"""The meter registry: Hydra choices and schema defaults from it, validation against it, and a
meter registered only by a plugin (tests/stand_ins/constant_meter.py) in real ``llem`` runs."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from llem.config import validate
from llem.energy import registry
from llem.energy.config import EnergyConfig
from llem.errors import ConfigError
from tests.helpers import REPO, run_llem
from tests.helpers import compose_config as _compose

# the stand-in is only imported by the llem subprocesses (imported here, it would stay registered
# for every later test of the session): its constants, as tests/stand_ins/constant_meter.py has them
PLUGIN = {"LLEM_PLUGINS": "tests.stand_ins.constant_meter", "PYTHONPATH": str(REPO)}
NAME, WATTS = "constant", 42.0
COVERS, METHOD = "stand-in constant power", "constant power x window time"


# ---------------------------------------------------------------- in process


@pytest.mark.parametrize("choice", registry.choices())
def test_each_energy_choice_is_the_schema_defaults_with_its_meter(choice):
    energy = OmegaConf.to_container(_compose(f"energy={choice}").energy)
    assert energy == EnergyConfig(meter=choice).model_dump(mode="json")
    assert validate(_compose(f"energy={choice}")).energy.meter == choice


def test_no_energy_yaml_can_drift_from_the_registry():
    assert not list((REPO / "conf" / "energy").glob("*.yaml"))
    assert registry.choices()[0] == "auto" and registry.choices()[-1] == "none"


def test_an_unknown_meter_lists_the_registered_ones():
    with pytest.raises(ConfigError) as exc:
        validate(_compose("energy.meter=bogus"))
    assert "energy.meter='bogus' is not a meter: use one of 'auto', 'zeus', 'nvml'" in str(
        exc.value
    )


def test_register_meter_refuses_a_taken_name():
    spec = registry.meter_spec("nvml")
    for name in ("nvml", "auto", "none"):
        with pytest.raises(ValueError, match="already registered"):
            registry.register_meter(registry.MeterSpec(**{**spec.__dict__, "name": name}))


@pytest.mark.parametrize(
    "devices,covers", [("gpu", ("GPU board", "modelled estimate")), ("estimate", ("GPU board",))]
)
def test_register_meter_keeps_estimates_and_hardware_apart(devices, covers):
    spec = registry.meter_spec("nvml")
    bad = registry.MeterSpec(**{**spec.__dict__, "name": "x", "devices": devices, "covers": covers})
    with pytest.raises(ValueError, match="an estimate covers exactly"):
        registry.register_meter(bad)
    assert "x" not in registry.choices()


def test_a_missing_module_names_the_pip_extra():
    spec = registry.MeterSpec(
        **{**registry.meter_spec("zeus").__dict__, "requires": ("llem_no_such_module",)}
    )
    assert spec.why_not() == (
        "llem_no_such_module is not installed (pip install llenergymeasure[zeus])"
    )


def test_reasons_when_nothing_is_measured():
    class Estimate:
        name = "codecarbon"

    why = registry.nothing_measured(EnergyConfig(), [Estimate()], ["no GPU", "no RAPL"])
    assert why == (
        "no hardware meter (no GPU; no RAPL); "
        "CodeCarbon's modelled estimate is in energy.estimate_j"
    )
    assert registry.nothing_measured(EnergyConfig(), [], ["no GPU"]) == "no usable meter (no GPU)"
    assert registry.nothing_measured(EnergyConfig(meter="none"), [], []) == "disabled (energy=none)"
    assert registry.nothing_measured(EnergyConfig(meter="codecarbon"), [], []).startswith(
        "energy=codecarbon measures nothing"
    )


# ---------------------------------------------------------------- a plugin meter, real llem runs


def test_plugin_meter_is_a_group_choice_and_listed_by_llem_config(tmp_path):
    helped = run_llem("--help", cwd=tmp_path, env=PLUGIN)
    assert helped.returncode == 0, helped.stderr
    (line,) = [ln for ln in helped.stdout.splitlines() if ln.startswith("energy: ")]
    assert NAME in line.removeprefix("energy: ").split(", ")
    assert "constant" not in run_llem("--help", cwd=tmp_path).stdout  # only with the plugin

    config = run_llem("config", cwd=tmp_path, env=PLUGIN)
    assert config.returncode == 0, config.stderr
    assert "energy constant" in config.stdout and "usable: a fake constant 42 W" in config.stdout


def test_plugin_meter_unusable_here_fails_pre_flight(tmp_path):
    proc = run_llem(
        f"energy={NAME}", "n=2", cwd=tmp_path, env=PLUGIN | {"LLEM_STANDIN_METER_OFF": "1"}
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "Error: energy=constant cannot work here: switched off by LLEM_STANDIN_METER_OFF. "
        "Unset LLEM_STANDIN_METER_OFF"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_bad_plugin_module_is_one_error_line(tmp_path):
    proc = run_llem("n=2", cwd=tmp_path, env={"LLEM_PLUGINS": "llem_no_such_plugin"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: LLEM_PLUGINS: cannot import plugin module")


def test_plugin_meter_reading_lands_in_result_json_from_a_study(tmp_path):
    proc = run_llem(
        "-m",
        f"energy={NAME}",
        "n=2",
        "max_new_tokens=2",
        "repeats=2",
        "energy.baseline.duration_s=0.3",
        "quiet=true",
        "output_dir=out",
        cwd=tmp_path,
        env=PLUGIN,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "out").glob("study_*/0_*/result.json")
    energy = json.loads(path.read_text())["energy"]
    assert energy["meters"] == [NAME] and energy["reason"] is None
    assert (energy["covers"], energy["method"]) == (COVERS, METHOD)
    windows = [r for r in energy["readings"] if r["window"].startswith("repeat-")]
    assert [r["window"] for r in windows] == ["repeat-1", "repeat-2"]
    for r in windows:  # a constant 42 W: exactly 42 W x the reading's own window
        assert r["energy_j"] == pytest.approx(WATTS * r["duration_s"], rel=1e-9)
    assert energy["total_j"] == pytest.approx(sum(r["energy_j"] for r in windows))
    (idle,) = energy["baseline"]
    assert idle["meter"] == NAME and idle["idle_power_w"] == pytest.approx(WATTS)
