"""The schema: defaults, strictness, cross-field rules, messages, and that the packaged YAML matches
it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from llem.backends.registry import backends
from llem.config import ExperimentConfig, validate
from llem.errors import ConfigError
from llem.load.config import LOADS
from tests.helpers import REPO, base
from tests.helpers import compose_config as _compose

CONF = REPO / "conf"
# Every option of every group: backends from the registry, the rest from conf/<group>/*.yaml.
GROUPS = {
    "backend": [entry.name for entry in backends()],
    "load": [str(load.model_fields["name"].default) for load in LOADS],
    **{
        g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("model", "dataset", "energy")
    },
}
# Keys whose value an option exists to choose (every other value must be the schema default).
SELECTORS = {"energy": ("meter",), "model": ("name_or_path",)}


def test_packaged_defaults_validate():
    exp = validate(_compose())
    assert (exp.n, exp.batch, exp.seed, exp.precision) == (100, 1, 42, "bf16")
    assert exp.model.name_or_path == "llem://tiny-llama" and exp.dataset.name == "builtin"
    assert exp.stop_at_eos is False and exp.decoding.strategy == "greedy"


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_is_the_schema_defaults_plus_its_selector(group, option):
    """The schema is the only source of defaults: an option's YAML (or ConfigStore node) holds every
    key (else it could not be overridden without '+') and each value equals the schema default,
    except the keys that select the option and the required ones."""
    extra = ["dataset.path=/tmp/x.jsonl"] if option == "jsonl" else []
    extra += ["load=poisson"] if option == "openai" else []  # a server is measured under a load
    extra += ["backend=openai"] if group == "load" and option != "batch" else []
    cfg = OmegaConf.to_container(_compose(f"{group}={option}", *extra), resolve=True)
    section = type(getattr(validate(cfg), group))
    chosen = {
        k: v
        for k, v in cfg[group].items()
        if k in SELECTORS.get(group, ()) or section.model_fields[k].is_required()
    }
    expected = section.model_validate(chosen).model_dump(mode="json")
    assert cfg[group] == expected, f"{group}={option} differs from {section.__name__}'s defaults"


def test_top_level_yaml_values_are_the_schema_defaults():
    cfg = base()
    groups = {g: cfg.pop(g) for g in GROUPS}
    expected = ExperimentConfig.model_validate(groups).model_dump(mode="json")
    assert cfg == {k: v for k, v in expected.items() if k not in GROUPS}


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"batch": "abc"}, "batch='abc' has the wrong type"),
        ({"batch": True}, "batch=true has the wrong type"),
        ({"batch": 0}, "batch=0 is out of range"),
        ({"n": -1}, "n=-1 is out of range"),
        ({"precision": "fp8"}, "precision='fp8' is not allowed: use one of"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ({"batch": 8, "n": 4}, "batch=8 is larger than n=4"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(change, needle):
    with pytest.raises(ConfigError) as err:
        validate(base() | change)
    assert needle in str(err.value)


def test_nested_unknown_key_and_dataset_key_paths():
    cfg = base()
    cfg["backend"]["devise"] = "cpu"
    with pytest.raises(ConfigError, match=r"unknown key 'backend\.devise'"):
        validate(cfg)
    cfg = base()
    cfg["dataset"]["chat_template"] = "sometimes"
    with pytest.raises(ConfigError, match=r"dataset\.chat_template='sometimes' is not allowed"):
        validate(cfg)


def test_missing_required_value_is_named():
    with pytest.raises(ConfigError, match=r"'dataset\.path' has no value"):
        validate(_compose("dataset=jsonl"))


def test_device_map_needs_gpus():
    cfg = base()
    cfg["backend"] |= {"device": "cpu", "device_map": "auto"}
    with pytest.raises(ConfigError, match="device_map needs GPUs"):
        validate(cfg)


def test_config_hash_ignores_output_location_but_not_measurement_settings():
    a = validate(base())
    assert (
        a.config_hash()
        == validate(base() | {"output_dir": "elsewhere", "quiet": True}).config_hash()
    )
    assert a.config_hash() != validate(base() | {"batch": 2}).config_hash()
    assert len(a.config_hash()) == 16


def test_experiment_helper_composes_the_packaged_config():
    from llem.errors import UsageError
    from llem.preflight import experiment

    exp = experiment("batch=4", "n=8", "dataset=synthetic", "dataset.input_tokens=16")
    assert (exp.batch, exp.n, exp.dataset.name, exp.dataset.input_tokens) == (4, 8, "synthetic", 16)
    with pytest.raises(UsageError, match="batch=0 is out of range"):
        experiment("batch=0")
