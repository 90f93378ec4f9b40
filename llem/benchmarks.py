"""Benchmark presets: public measurement protocols as key -> value tables, and their report.

A preset is a Hydra experiment (``conf/experiment/<name>.yaml``, run as
``llem +experiment=<name>``) that sets every key of its protocol and ``protocol: <name>``. The table
here is the protocol's single definition: the YAML is tested equal to it, and a run compares its
validated config (and what ran: device, weights' dtype, trained or random weights) with it to list
the keys it departs from. The model is the user's choice, not a protocol key.

The figures (``result.benchmark``) come from llem's hardware GPU meters only (NVML or Zeus readings
of the GPU boards), never from CodeCarbon's estimate or CPU/DRAM meters; without a GPU meter they
are ``null`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from llem.config import ExperimentConfig
from llem.energy.base import GPU_BOARD
from llem.energy.report import J_PER_WH
from llem.result import (
    BenchmarkReport,
    EnergyMetrics,
    EnergyReading,
    ModelRecord,
    ProtocolDeparture,
)

JSONScalar = str | int | float | bool | None
PREFILL_WINDOW = "prefill"  # llem.harness's name for the prefill-only pass


@dataclass(frozen=True)
class Protocol:
    """A public benchmark protocol: the config keys it fixes and what it requires of the run."""

    name: str
    version: str  # version of llem's statement of the protocol: bumped when ``keys`` change
    title: str
    keys: Mapping[str, JSONScalar]  # dotted config key -> the protocol's value
    device_type: str  # torch device type the model must run on
    dtype: str  # torch dtype the weights must run in


AIENERGYSCORE = Protocol(
    name="aienergyscore",
    version="1",
    title="AI Energy Score, text generation (optimum-benchmark energy_star scenario)",
    keys={
        "backend.name": "pytorch",  # transformers generate, as optimum-benchmark's pytorch backend
        "backend.device_map": None,  # one GPU: no sharding
        "dataset.name": "aienergyscore",
        "dataset.hub_id": "AIEnergyScore/text_generation",
        "dataset.revision": "2dc92b2ee2cd9776a51ccf08c6c2ab04138370c3",
        "dataset.chat_template": "never",  # raw text
        "n": 1000,  # the whole prompt set
        "batch": 1,
        "max_new_tokens": 10,
        "stop_at_eos": False,  # min = max new tokens = 10
        "max_input_tokens": None,  # truncated to the model's context minus max_new_tokens
        "precision": "bf16",
        "decoding.strategy": "greedy",
        "energy.prefill_split": True,  # prefill and decode reported separately
    },
    device_type="cuda",
    dtype="bfloat16",
)

PROTOCOLS: Mapping[str, Protocol] = {p.name: p for p in (AIENERGYSCORE,)}


def _show(value: object) -> str:
    """A value as a user types it on the command line (bf16, 1000, null, true)."""
    return value if isinstance(value, str) else json.dumps(value)


def _lookup(config: Mapping[str, object], dotted: str) -> object:
    """The value at a dotted key (None where the config has no such key)."""
    node: object = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def config_departures(protocol: Protocol, config: ExperimentConfig) -> list[ProtocolDeparture]:
    """The protocol keys whose value in ``config`` differs from the protocol's; the keys of a group
    whose option (``<group>.name``) differs are not listed again."""
    dumped = config.model_dump(mode="json")
    out: list[ProtocolDeparture] = []
    for key, value in protocol.keys.items():
        group = key.split(".")[0]
        if any(d.key == f"{group}.name" for d in out):
            continue
        if (actual := _lookup(dumped, key)) != value:
            out.append(ProtocolDeparture(key=key, protocol=_show(value), actual=_show(actual)))
    return out


def departures(
    protocol: Protocol, config: ExperimentConfig, model: ModelRecord, gpus_measured: int
) -> list[ProtocolDeparture]:
    """Where the run departs from the protocol: config keys first, then what actually ran
    (``gpus_measured``: GPUs whose energy the meters read)."""
    out = config_departures(protocol, config)
    if model.random_weights:
        out.append(
            ProtocolDeparture(
                key="model",
                protocol="a trained model",
                actual=f"random weights ({model.name_or_path})",
            )
        )
    if model.device.split(":")[0] != protocol.device_type:
        out.append(
            ProtocolDeparture(
                key="backend.device",
                protocol=f"one {protocol.device_type} GPU",
                actual=model.device,
            )
        )
    if model.dtype != protocol.dtype and not any(d.key == "precision" for d in out):
        out.append(ProtocolDeparture(key="precision", protocol=protocol.dtype, actual=model.dtype))
    if gpus_measured > 1:
        out.append(
            ProtocolDeparture(
                key="gpus",
                protocol="1 measured",
                actual=f"{gpus_measured} (CUDA_VISIBLE_DEVICES=<the model's GPU> measures one)",
            )
        )
    return out


def label(protocol: str, modified: list[ProtocolDeparture]) -> str:
    """``aienergyscore`` or ``aienergyscore (modified: n, model)``."""
    keys = ", ".join(dict.fromkeys(d.key for d in modified))
    return f"{protocol} (modified: {keys})" if keys else protocol


def wh_per_1k(energy_j: float, queries: int) -> float:
    """Energy (J) spent on ``queries`` requests -> Wh per 1,000 queries."""
    return energy_j / J_PER_WH * 1000 / queries


def _gpu_energy(readings: list[EnergyReading]) -> tuple[float | None, str | None]:
    """Sum of GPU-board readings (J), or (None, why) when there are none or one is missing."""
    if not readings:
        return None, "no GPU energy meter (NVML or Zeus) measured this run"
    missing = [r for r in readings if r.energy_j is None]
    if missing:
        return None, "; ".join(f"{r.meter} {r.device} {r.window}: {r.reason}" for r in missing)
    return sum(r.energy_j for r in readings if r.energy_j is not None), None


def gpu_figures(
    energy: EnergyMetrics, requests: int, repeats: int
) -> tuple[float | None, float | None, float | None, str | None]:
    """(GPU, prefill, decode) Wh per 1,000 queries and why any is null, from GPU-board readings.

    GPU: the measured windows (``requests`` = n x ``repeats`` queries). Prefill: the prefill-only
    pass, which runs each of the n prompts once. Decode: GPU minus prefill (per query, derived).
    """
    gpu = [r for r in energy.readings if r.covers == GPU_BOARD]
    measured = [r for r in gpu if r.window != PREFILL_WINDOW]
    total_j, why = _gpu_energy(measured)
    if total_j is None:
        return None, None, None, why if energy.reason is None else f"{why} (see energy.reason)"
    total = wh_per_1k(total_j, requests)
    if energy.prefill is None:
        return total, None, None, "prefill/decode not measured: energy.prefill_split=false"
    prefill_j, why = _gpu_energy([r for r in gpu if r.window == PREFILL_WINDOW])
    if prefill_j is None:
        return total, None, None, f"prefill not measured: {why}"
    prefill = wh_per_1k(prefill_j, requests // repeats)
    return total, prefill, total - prefill, None


def benchmark_report(
    config: ExperimentConfig, model: ModelRecord, energy: EnergyMetrics, requests: int
) -> BenchmarkReport | None:
    """The ``benchmark`` section of a preset run (None when the run follows no protocol)."""
    if config.protocol is None:
        return None
    protocol = PROTOCOLS[config.protocol]
    gpus = {r.device for r in energy.readings if r.covers == GPU_BOARD}
    modified = departures(protocol, config, model, len(gpus))
    total, prefill, decode, reason = gpu_figures(energy, requests, config.repeats)
    return BenchmarkReport(
        protocol=protocol.name,
        version=protocol.version,
        title=protocol.title,
        label=label(protocol.name, modified),
        modified=modified,
        queries=requests,
        gpu_wh_per_1k_queries=total,
        prefill_wh_per_1k_queries=prefill,
        decode_wh_per_1k_queries=decode,
        meters=sorted({r.meter for r in energy.readings if r.covers == GPU_BOARD}),
        reason=reason,
    )


def summary_line(report: BenchmarkReport) -> str:
    """One line for the terminal summary."""
    if report.gpu_wh_per_1k_queries is None:
        return f"{report.label}: GPU Wh/1k queries not measured: {report.reason}"
    split = (
        f" (prefill {report.prefill_wh_per_1k_queries:.4g}, "
        f"decode {report.decode_wh_per_1k_queries:.4g})"
        if report.prefill_wh_per_1k_queries is not None
        and report.decode_wh_per_1k_queries is not None
        else f" ({report.reason})"
    )
    return f"{report.label}: {report.gpu_wh_per_1k_queries:.4g} GPU Wh/1k queries{split}"
