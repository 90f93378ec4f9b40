"""The schema: defaults, strictness, cross-field rules, messages, and that the packaged YAML matches it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from llem.config import ExperimentConfig, validate
from llem.errors import ConfigError
from tests.helpers import base
from tests.helpers import compose_config as _compose

GROUPS = {
    "backend": ["pytorch", "vllm", "tensorrt"],
    "model": ["tiny", "gpt2", "smollm2", "qwen2.5-0.5b", "llama3"],
    "dataset": ["builtin", "aienergyscore", "synthetic", "jsonl"],
    "energy": ["auto", "nvml", "zeus", "rapl", "codecarbon", "none"],
}


def test_packaged_defaults_validate():
    exp = validate(_compose())
    assert (exp.n, exp.batch, exp.seed, exp.precision) == (100, 1, 42, "bf16")
    assert exp.model.name_or_path == "llem://tiny-llama" and exp.dataset.name == "builtin"
    assert exp.stop_at_eos is False and exp.decoding.strategy == "greedy"


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_spells_out_every_schema_key(group, option):
    """A key missing from the YAML could not be overridden without '+': YAML and schema must agree."""
    extra = ["dataset.path=/tmp/x.jsonl"] if option == "jsonl" else []
    cfg = OmegaConf.to_container(_compose(f"{group}={option}", *extra), resolve=True)
    exp = validate(cfg)
    section = getattr(exp, group)
    assert set(cfg[group]) == set(type(section).model_fields), (
        f"{group}/{option}.yaml and schema differ"
    )


def test_top_level_yaml_keys_match_schema():
    cfg = base()
    assert set(cfg) == set(ExperimentConfig.model_fields)
    for nested in ("decoding", "flops"):
        assert set(cfg[nested]) == set(
            type(getattr(ExperimentConfig.model_validate(cfg), nested)).model_fields
        )


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
