"""What differs between two runs besides their numbers: resolved config keys and environment facts
(host CPU, GPUs, driver, threads, other processes' CPU use, versions)."""

from __future__ import annotations

from collections.abc import Mapping

from llem.keymetrics import BY_NAME
from llem.result import Result

# config keys that name where a run was written, not what it measured
PLACE_KEYS = frozenset({"output_dir"})
CONTENDED = BY_NAME["contended"]  # any measured window over its recorded threshold
OTHER_CORES = BY_NAME["other_cpu_cores"]  # the busiest measured window's other processes' CPU
CONTENTION_FACT = "other processes' CPU (busiest window)"
VERSIONS = ("torch", "transformers", "vllm", "tensorrt-llm", "python")


def flat(d: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested mappings as one level of dotted keys (``{'a': {'b': 1}}`` -> ``{'a.b': 1}``)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out |= flat(v, key + ".") if isinstance(v, Mapping) else {key: v}
    return out


def config_differences(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """``'batch: 1 -> 4'`` for each resolved config key whose value differs (places left out)."""
    a, b = flat(old), flat(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k) and k not in PLACE_KEYS
    ]


def other_cores(result: Result) -> float | None:
    """Other processes' CPU use in the busiest measured window (cores), None if not recorded."""
    value = OTHER_CORES.of(result)
    return float(value) if isinstance(value, int | float) else None


def contended(result: Result) -> bool:
    """Whether a measured window had other processes above the threshold it was judged by
    (``cpu_contention[].contended``)."""
    return CONTENDED.of(result) is True


def _at(tree: Mapping[str, object], *keys: str) -> object:
    node: object = tree
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _gpus(env: Mapping[str, object]) -> str:
    gpus = _at(env, "nvml", "gpus")
    names = (
        [str(g.get("name")) for g in gpus if isinstance(g, Mapping)]
        if isinstance(gpus, list)
        else []
    )
    return ", ".join(names) if names else "none"


def environment(result: Result) -> dict[str, str]:
    """The facts of the machine a run measured on, as text (``'n/a'`` where not recorded)."""
    env = result.environment
    cpu = _at(env, "cpu", "model")
    cores = _at(env, "cpu", "usable_cores")
    threads = None if result.host_cpu is None else result.host_cpu.torch_threads
    busy = other_cores(result)
    facts = {
        "host CPU": f"{cpu} ({cores} usable cores)" if cpu is not None else "n/a",
        "GPU": _gpus(env),
        "NVIDIA driver": str(_at(env, "nvml", "driver") or "n/a"),
        "torch CPU threads": str(threads) if threads is not None else "n/a",
        CONTENTION_FACT: "n/a"
        if busy is None
        else f"{'contended' if contended(result) else 'quiet'} ({busy:.2f} cores)",
        "llem version": result.llem_version,
    }
    for name in VERSIONS:
        facts[name] = str(_at(env, "versions", name) or "n/a")
    return facts


def environment_differences(a: Result, b: Result) -> list[tuple[str, str, str]]:
    """``(fact, A's, B's)`` for each environment fact that differs (other processes' CPU: when one
    side was contended and the other quiet, not by its exact figure)."""
    ea, eb = environment(a), environment(b)

    def same(k: str) -> bool:
        return ea[k].split()[0] == eb[k].split()[0] if k == CONTENTION_FACT else ea[k] == eb[k]

    return [(k, ea[k], eb[k]) for k in ea if not same(k)]
