"""The one registry of inference backends: everything that names a backend reads it.

An entry says what a backend is called, its typed config, where its engine lives (imported only by
the job that runs it: engines cannot share a process), how to install it and its container image.
From it derive: validation of ``backend.*`` (dispatch on ``backend.name``), the Hydra options of
group ``backend`` (the config's defaults: the schema is the only copy, see
:mod:`llem.hydra_options`), ``llem config``, the pre-flight install hints, the launcher's default
images, the environment's package versions and the backend table of docs/configuration.md. Code
outside llem adds a backend with :func:`register_backend` in a module named by ``LLEM_PLUGINS`` or
the ``llem.plugins`` entry-point group (see :mod:`llem.plugins`)."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from pydantic_core import PydanticCustomError

from llem.backends.config import BackendConfig
from llem.errors import UsageError

if TYPE_CHECKING:
    from llem.backends.base import Backend
    from llem.config import ExperimentConfig


class BackendFactory(Protocol):
    """A backend class: built from its own typed config and the shared experiment settings."""

    def __call__(self, config: BackendConfig, experiment: ExperimentConfig) -> Backend: ...


@dataclass(frozen=True)
class BackendEntry:
    """One backend: the registry's only record of it."""

    name: str  # the Hydra option (backend=<name>) and backend.name
    config: type[BackendConfig]  # its keys; every field needs a default (the Hydra option's values)
    backend: str  # "module:Class" of the engine, imported lazily
    description: str  # one line, shown beside the install command
    requires: tuple[str, ...] = ()  # import names that must be installed
    extra: str | None = None  # llenergymeasure's pip extra installing it
    install: str | None = None  # install command when there is no extra (plugins)
    packages: tuple[str, ...] = ()  # distributions whose versions each result records
    image: str | None = None  # default container image for hydra.launcher.mode=docker
    # False: a study job must start in a fresh interpreter, never forked from llem's pre-imported
    # fork server (an engine that spawns workers or initialises a device at import)
    forkable: bool = True
    # modules the fork server imports once for every job (what the engine would import lazily)
    preload: tuple[str, ...] = ()
    # True: measures a server another engine runs (not an inference backend of its own, so not
    # listed by "No inference backend installed", the design's list of engines to install)
    client: bool = False

    @property
    def install_command(self) -> str:
        if self.install is not None:
            return self.install
        return f"pip install llenergymeasure[{self.extra or self.name}]"

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def defaults(self) -> BackendConfig:
        """The config with every key at its schema default."""
        return self.config.model_validate({"name": self.name})


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> BackendEntry:
    """Add ``entry``, whose defaults become Hydra option ``backend=<name>`` (re-registering a name
    replaces it: a plugin module imported twice)."""
    fields = entry.config.model_fields
    if "name" not in fields or fields["name"].default != entry.name:
        raise ValueError(f"{entry.config.__name__}.name must default to {entry.name!r}")
    _REGISTRY[entry.name] = entry
    return entry


def backends() -> list[BackendEntry]:
    """Every registered backend, built-ins first, in registration order."""
    return list(_REGISTRY.values())


def get_backend(name: str) -> BackendEntry:
    """The entry named ``name`` (a :class:`KeyError` names the registered ones)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown backend {name!r}: registered are {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def validate_backend(value: object) -> BackendConfig:
    """Pydantic validator of ``backend``: the config class registered under ``value['name']``."""
    if isinstance(value, BackendConfig):
        return value
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "Input should be a mapping of backend keys")
    tags = [entry.name for entry in backends()]
    name = value.get("name")
    if not isinstance(name, str) or name not in tags:
        raise PydanticCustomError(
            "union_tag_invalid",
            "backend.name {tag} is not registered",
            {"tag": name, "expected_tags": ", ".join(repr(t) for t in tags)},
        )
    return get_backend(name).config.model_validate(value)


def install_lines() -> str:
    """One aligned line per inference backend (clients of a server left out):
    ``name:  pip install ...  (description)``."""
    entries = [e for e in backends() if not e.client]
    label = max(len(e.name) for e in entries) + 3
    command = max(len(e.install_command) for e in entries) + 2
    return "\n".join(
        f"  {e.name + ':':<{label}}{e.install_command:<{command}}({e.description})" for e in entries
    )


def require_backend(name: str) -> None:
    """Raise a :class:`UsageError` with the install command when backend ``name`` cannot run
    here."""
    entry = get_backend(name)
    if entry.installed():
        return
    if not entry.client and not any(e.installed() for e in backends()):
        raise UsageError("No inference backend installed.\n" + install_lines())
    raise UsageError(
        f"backend '{name}' is not installed: {entry.install_command}  ({entry.description})"
    )


def load_backend(experiment: ExperimentConfig) -> Backend:
    """Import the configured backend's engine and build it from its own config."""
    entry = get_backend(experiment.backend.name)
    require_backend(entry.name)
    module, _, attr = entry.backend.partition(":")
    factory = cast(BackendFactory, getattr(importlib.import_module(module), attr))
    return factory(experiment.backend, experiment)


def _register_builtins() -> None:
    """llem's own backends (their configs are light; their engines stay unimported)."""
    from llem.backends.openai.config import OpenAIConfig
    from llem.backends.pytorch.config import PyTorchConfig
    from llem.backends.tensorrt.config import TensorRTConfig
    from llem.backends.vllm.config import VllmConfig

    image = "ghcr.io/llenergymeasure/{}:${{oc.env:LLEM_VERSION,2.0.0}}-cuda12.4"
    for entry in (
        BackendEntry(
            "pytorch",
            PyTorchConfig,
            "llem.backends.pytorch.backend:PyTorchBackend",
            "PyTorch + HF Transformers",
            requires=("torch", "transformers"),
            extra="pytorch",
            packages=("torch", "transformers", "accelerate"),
            preload=(
                "transformers.modeling_utils",
                "transformers.generation.utils",
                "transformers.models.auto.configuration_auto",
                "transformers.models.auto.tokenization_auto",
                "transformers.tokenization_utils_tokenizers",
            ),
            image=image.format("pytorch"),
        ),
        BackendEntry(
            "vllm",
            VllmConfig,
            "llem.backends.vllm.backend:VllmBackend",
            "vLLM, high throughput",
            forkable=False,
            requires=("vllm",),
            extra="vllm",
            packages=("vllm",),
            image=image.format("vllm"),
        ),
        BackendEntry(
            "tensorrt",
            TensorRTConfig,
            "llem.backends.tensorrt.backend:TensorRTBackend",
            "TensorRT-LLM, NVIDIA-optimised",
            forkable=False,
            requires=("tensorrt_llm",),
            extra="tensorrt",
            packages=("tensorrt-llm",),
            image=image.format("tensorrt"),
        ),
        BackendEntry(
            "openai",
            OpenAIConfig,
            "llem.backends.openai.backend:OpenAIBackend",
            "an OpenAI-compatible server under a load; llem starting vLLM: also [vllm]",
            requires=("aiohttp", "prometheus_client", "transformers"),
            extra="serving",
            packages=("vllm", "aiohttp"),
            client=True,
        ),
    ):
        register_backend(entry)


_register_builtins()
