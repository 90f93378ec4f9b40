"""``hydra/launcher=llem``: every study job in a fresh process (subprocess or container), one per
GPU.

The config dataclass lives beside the launcher (like Hydra's joblib/submitit launchers); the work is
in
:mod:`llem.study.launcher`. No ``from __future__ import annotations`` here: Hydra's plugin scanner
executes this module and reads the dataclass annotations at run time, and OmegaConf 2.3 structured
configs need ``typing.Optional``/``List`` rather than ``X | None``/``list[X]``.
"""
# ruff: noqa: UP006, UP035, UP045

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


def _default_images() -> Dict[str, str]:
    """Each registered backend's container image (llem.backends.registry)."""
    from llem.backends.registry import backends

    return {entry.name: entry.image for entry in backends() if entry.image}


@dataclass
class DockerConf:
    """How a job runs in a container (``mode=docker``, or ``auto`` over several backends):
    ``docker run`` argv parts, all configurable."""

    executable: str = "docker"
    host: Optional[str] = None  # DOCKER_HOST for the client (e.g. unix:///tmp/podman.sock)
    image: Optional[str] = None  # one image for every backend; else images[backend]
    images: Dict[str, str] = field(default_factory=_default_images)
    python: str = (
        "python"  # interpreter inside the image (the worker runs as `python -m llem.study.worker`)
    )
    gpus: bool = True  # pass the job's GPU(s) with --gpus device=<uuid>
    runtime: Optional[str] = None  # --runtime (e.g. runc, nvidia)
    ulimits: List[str] = field(default_factory=list)  # e.g. ["nofile=1024:1024"]
    network: Optional[str] = None  # --network (none for offline jobs)
    hf_cache: Optional[str] = (
        "${oc.env:HF_HOME,${oc.env:HOME,/root}/.cache/huggingface}"  # mounted read-write
    )
    mounts: List[str] = field(default_factory=list)  # extra -v host:container[:ro]
    env: List[str] = field(
        default_factory=lambda: [
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE",
            "LLEM_CACHE_DIR",
        ]
    )  # passed by name only
    extra_args: List[str] = field(default_factory=list)


class LaunchMode(Enum):
    """Where each job's process runs (OmegaConf matches the names: ``mode=docker``)."""

    auto = "auto"  # docker when the study spans several backends, else subprocess
    subprocess = "subprocess"  # a fresh Python process on this host
    docker = "docker"  # the same inside its backend's container image


# ``continue`` is a keyword: the functional form (OmegaConf matches the names: ``on_failure=stop``)
OnFailure = Enum("OnFailure", [("continue", "continue"), ("stop", "stop")])


@dataclass
class LlemLauncherConf:
    """``hydra.launcher.*``: typed by OmegaConf; ranges checked once at setup
    (llem.study.launcher)."""

    _target_: str = "hydra_plugins.llem_plugins.llem_launcher.LlemLauncher"
    mode: LaunchMode = LaunchMode.auto
    timeout_s: Optional[float] = None  # per job, > 0; None = no limit
    cooldown_s: float = 0.0  # >= 0: idle gap before each job after the first (thermal)
    on_failure: OnFailure = OnFailure["continue"]  # continue | stop (the study after a failed job)
    resume: bool = True  # skip jobs whose result exists with the same config hash
    gpus_per_job: int = 1  # >= 1
    max_parallel: Optional[int] = None  # >= 1; None: one job per GPU group (1 without GPUs)
    docker: DockerConf = field(default_factory=DockerConf)
    # fork each job from a pre-imported server (no repeated imports); false: fresh interpreters
    fork: bool = True
    # >= 1: run a job whose measured windows were CPU-contended again, up to this many attempts
    max_attempts: int = 1


ConfigStore.instance().store(
    group="hydra/launcher", name="llem", node=LlemLauncherConf, provider="llem"
)


class LlemLauncher(Launcher):
    """Thin: checks its options (one ``Error:`` line, exit 2) and hands the sweep to a Study."""

    def __init__(self, **params: object) -> None:
        from llem.study.launcher import launcher_options

        self.options = launcher_options(params)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from llem.study.launcher import Study

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None, "setup() runs first"
        study = Study(self.options, self.config, self.hydra_context, self.task_function)
        return study.run(job_overrides, initial_job_idx)
