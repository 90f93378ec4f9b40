"""``hydra/launcher=llem_slurm_base`` (under the ``llem_slurm`` preset): jobs as SLURM array tasks.

submitit's SLURM launcher with llem's watch over the jobs; the work is in
:mod:`llem.study.slurm_launcher`. Defined only when hydra-submitit-launcher is installed (else
Hydra's plugin scan would warn on every run). No ``from __future__ import annotations`` here:
Hydra's plugin scanner executes this module and OmegaConf reads the dataclass annotations at run
time (``typing.Optional``, not ``X | None``).
"""
# ruff: noqa: UP045

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

try:
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    SUBMITIT = True
except ImportError:  # pragma: no cover - hydra-submitit-launcher not installed
    SUBMITIT = False

if SUBMITIT:

    @dataclass
    class LlemSlurmConf(SlurmQueueConf):  # type: ignore[misc]  # untyped plugin package
        """submitit's SLURM options plus llem's: resume and the bounds on every wait."""

        _target_: str = "hydra_plugins.llem_plugins.llem_slurm_launcher.LlemSlurmLauncher"
        resume: bool = True  # skip jobs whose result.json has the same config hash
        poll_s: float = 1.0  # how often llem asks SLURM for the jobs' states (s)
        pending_timeout_min: Optional[float] = None  # jobs pending this long, no progress: give up
        grace_min: float = 5.0  # stop waiting this long after a job's time limit (min)
        lost_after_s: float = 300.0  # a job SLURM stops reporting is failed after this long (s)

    ConfigStore.instance().store(
        group="hydra/launcher", name="llem_slurm_base", node=LlemSlurmConf, provider="llem"
    )

    class LlemSlurmLauncher(SlurmLauncher):  # type: ignore[misc]  # untyped plugin package
        def __call__(  # one pre-composed job per SLURM task
            self, job: object, singleton_state: dict[type, Singleton]
        ) -> JobReturn:
            from llem.study.slurm_launcher import run_in_job

            return run_in_job(self, job, singleton_state)

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            from llem.study.slurm_launcher import launch

            return launch(self, job_overrides, initial_job_idx)
