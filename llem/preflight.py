"""Pre-flight: compose and validate every job of a command line before anything runs.

Runs in the ``llem`` process before Hydra starts, so that bad input (unknown key, wrong type,
unknown group option, missing model folder or dataset file, missing backend) exits with code 2 and
one short message, and no result folder is created. A sweep (``-m``) is expanded and each job
checked; all bad jobs are listed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from llem.commandline import CommandLine, parse
from llem.config import ExperimentConfig, validate
from llem.errors import ConfigError, UsageError
from llem.preflight_compose import compose as _compose
from llem.preflight_compose import expand, hydra_part
from llem.preflight_sweep import SweepValidator

if TYPE_CHECKING:
    from llem.preflight_compose import ComposeFn


@dataclass
class Plan:
    """What a command line will run: each job's overrides and validated experiment, and how."""

    jobs: list[tuple[list[str], ExperimentConfig]]
    launcher_mode: str  # auto | subprocess | docker (llem's launcher), or "other"
    docker_executable: str = "docker"  # hydra.launcher.docker.executable
    docker_host: str | None = None  # hydra.launcher.docker.host
    slurm_partition: str | None = None  # a SLURM launcher's partition (None: the default one)
    fork: bool = True  # hydra.launcher.fork (llem's launcher)
    compositions: int = 1  # Hydra compositions the pre-flight ran (Hydra's node included)
    chdir: bool = False  # hydra.job.chdir: each job runs inside its run folder


def compose_jobs(cl: CommandLine, per_job: bool = False) -> Plan:
    """Compose and validate every job; raises :class:`ConfigError` listing each bad job.

    A sweep composes once per distinct set of non-plain overrides (:mod:`llem.preflight_sweep`);
    ``per_job`` composes every job whole instead (the reference the fast way is tested against)."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    from llem import resolvers
    from llem.plugins import register_plugins

    resolvers.register()
    register_plugins()
    init: initialize_config_dir | initialize_config_module
    if cl.config_path:
        init = initialize_config_dir(
            config_dir=str(Path(cl.config_path).resolve()), version_base="1.3", job_name="llem"
        )
    else:
        init = initialize_config_module("llem.conf", version_base="1.3", job_name="llem")
    overrides = list(cl.overrides)
    if cl.config_dir:
        overrides.append(f"hydra.searchpath=[file://{Path(cl.config_dir).resolve()}]")
    with init:
        # a single run is composed once (Hydra's node and the job); a sweep, or a command line
        # that does not compose as one run, takes the two steps
        whole = None
        if not cl.multirun:
            with contextlib.suppress(UsageError):
                whole = _compose(compose, cl.config_name, overrides, hydra_node=True)
        if whole is None:
            whole_or_hydra = _compose(compose, cl.config_name, hydra_part(overrides), True)
        else:
            whole_or_hydra = whole
        hydra_cfg = whole_or_hydra.hydra
        multirun = cl.multirun or str(hydra_cfg.get("mode")) in ("MULTIRUN", "RunMode.MULTIRUN")
        jobs = expand(hydra_cfg, overrides) if multirun else [overrides]
        results, problems = [], []
        one = whole if not multirun else None  # a single run, composed whole above
        sweep = _sweep_validator(compose, cl.config_name, hydra_part(overrides), per_job)
        for job in jobs:
            try:
                results.append((job, validate(one) if one is not None else sweep.validate(job)))
            except UsageError as exc:
                problems.append((job, exc))
    _raise_problems(len(jobs), problems)
    _VALIDATED.update((_task_key(job), exp) for job, exp in results)
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_"))
    compositions = sweep.compositions + 1
    chdir = bool(hydra_cfg.job.get("chdir"))
    if "SlurmLauncher" in target:
        partition = launcher.get("partition")
        part = None if partition is None else str(partition)
        return Plan(results, "slurm", slurm_partition=part, compositions=compositions, chdir=chdir)
    if "llem_launcher" not in target:
        return Plan(results, "other", compositions=compositions, chdir=chdir)
    mode = launcher.get("mode")
    host = launcher.docker.get("host")
    return Plan(
        results,
        # a single run never goes through the launcher: it runs here whatever the mode says
        (mode.value if isinstance(mode, Enum) else str(mode)) if multirun else "auto",
        str(launcher.docker.executable),
        None if host is None else str(host),
        fork=bool(launcher.get("fork", True)),
        compositions=compositions,
        chdir=chdir,
    )


def _sweep_validator(
    compose_fn: ComposeFn, config_name: str, hydra_overrides: list[str], per_job: bool
) -> SweepValidator:
    """A validator of this command line's jobs; its config groups are those Hydra sees with the
    command line's search path."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_repository import CachingConfigRepository
    from hydra.core.global_hydra import GlobalHydra

    searchpath = frozenset(o for o in hydra_overrides if o.startswith("hydra.searchpath="))

    def is_group(key: str) -> bool:  # asked only when a job is validated the fast way
        if not repos:
            loader = GlobalHydra.instance().config_loader()
            assert isinstance(loader, ConfigLoaderImpl)
            repos.append(
                loader._parse_overrides_and_create_caching_repo(config_name, sorted(searchpath))[1]
            )
        return repos[0].group_exists(key)

    repos: list[CachingConfigRepository] = []
    return SweepValidator(
        lambda job: _compose(compose_fn, config_name, job), is_group, searchpath, per_job
    )


def _raise_problems(count: int, problems: list[tuple[list[str], UsageError]]) -> None:
    """Raise the one problem of a single job, or one line per bad job of ``count``."""
    if not problems:
        return
    if count == 1:
        raise problems[0][1]
    lines = [f"{len(problems)} of {count} jobs are invalid; nothing was run:"]
    lines += [f"  [{' '.join(_user_part(j)) or 'defaults'}] {exc}" for j, exc in problems]
    raise ConfigError("\n".join(lines))


# this process's validated jobs, by their task overrides: llem's study launcher reuses them
_VALIDATED: dict[tuple[str, ...], ExperimentConfig] = {}


def _task_key(overrides: Sequence[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/")))


def validated(overrides: Sequence[str]) -> ExperimentConfig | None:
    """The experiment pre-flight validated for a job with these overrides (None if not)."""
    return _VALIDATED.get(_task_key(overrides))


def _user_part(job: list[str]) -> list[str]:
    return [o for o in job if not o.startswith("hydra.")]


def check(args: list[str]) -> list[ExperimentConfig]:
    """Everything that can be checked before running: config, backend, model source (complete
    folder, context length), dataset (file, size against ``n``), meter, country code, that the
    output folders can be written. Every bad job is listed; nothing is created."""
    from llem.plugins import load_plugins

    load_plugins()  # here, so that a plugin that cannot be imported is one Error: line
    cl = parse(args)
    if cl.passthrough:
        return []
    plan = compose_jobs(cl)
    experiments = [exp for _, exp in plan.jobs]
    if plan.chdir:
        _check_chdir(experiments)
    from llem import pathcheck
    from llem.docker.engine import probe
    from llem.study.isolation import launch_mode

    mode = launch_mode(
        plan.launcher_mode,
        {exp.backend.name for exp in experiments},
        lambda: probe(plan.docker_executable, plan.docker_host),
    )
    if plan.launcher_mode == "slurm":
        from llem.study.slurm import check_cluster

        check_cluster(plan.slurm_partition)
    pathcheck.check_command_line(cl.overrides, cl.multirun, cl.config_path, cl.config_name)
    checks = _SectionChecks(in_containers=mode == "docker")
    problems = []
    for job, exp in plan.jobs:
        try:
            checks.job(exp)
        except UsageError as exc:
            problems.append((job, exc))
    _raise_problems(len(plan.jobs), problems)
    if (
        cl.multirun
        and plan.launcher_mode in ("auto", "subprocess")
        and mode == "subprocess"
        and plan.fork
    ):
        _start_fork_server(experiments)
    return experiments


APP_TASK = "llem.app:hydra_app"  # the task llem's launcher receives from the llem command


def _start_fork_server(experiments: list[ExperimentConfig]) -> None:
    """Every job is valid: start the study's fork server now, so that its imports run beside
    Hydra's set-up and composition of the jobs (the launcher claims it)."""
    from llem.backends.registry import get_backend
    from llem.harness import preload
    from llem.study.forkserver import server_modules, start_early

    forkable = [e for e in experiments if get_backend(e.backend.name).forkable]
    if forkable:
        start_early(server_modules(APP_TASK, (m for e in forkable for m in preload(e))))


class _SectionChecks:
    """The checks of one job; each distinct section (backend, model, dataset, meter, output
    folder) is checked once per command line and its outcome reused."""

    def __init__(self, in_containers: bool) -> None:
        self.in_containers = in_containers  # engines live in the images, not on this host
        self.outcomes: dict[str, UsageError | int | None] = {}

    def _once(self, ident: str, check: Callable[[], int | None]) -> int | None:
        if ident not in self.outcomes:
            try:
                self.outcomes[ident] = check()
            except UsageError as exc:
                self.outcomes[ident] = exc
        outcome = self.outcomes[ident]
        if isinstance(outcome, UsageError):
            raise outcome
        return outcome

    def job(self, exp: ExperimentConfig) -> None:
        from llem.backends import require_backend
        from llem.backends.openai.address import check_reachable
        from llem.backends.openai.config import OpenAIConfig, require_vllm
        from llem.datasets import check_dataset
        from llem.models.source import check_model, model_context
        from llem.pathcheck import check_folder, check_job

        if not self.in_containers:
            self._once(f"backend:{exp.backend.name}", lambda: require_backend(exp.backend.name))
        served_by_vllm = isinstance(exp.backend, OpenAIConfig) and exp.backend.launch == "vllm"
        if not self.in_containers and served_by_vllm:
            self._once("server:vllm", require_vllm)  # backend=openai starting vLLM: the extra
        if isinstance(exp.backend, OpenAIConfig) and exp.backend.launch == "none":  # it answers
            self._once(f"url:{exp.backend.url}", partial(check_reachable, str(exp.backend.url)))
        self._once(f"model:{exp.model!r}", lambda: check_model(exp.model))
        available = self._once(f"dataset:{exp.dataset!r}", lambda: check_dataset(exp.dataset))
        self._once(f"energy:{exp.energy!r}", lambda: _check_energy(exp))
        self._once(f"output:{exp.output_dir}", lambda: check_folder("output_dir", exp.output_dir))
        check_job(exp)
        if available is not None and exp.n > available:
            raise UsageError(
                f"n={exp.n} but the dataset has {available} prompts: set n<={available} "
                "or choose a larger dataset"
            )
        context = self._once(f"context:{exp.model!r}", lambda: model_context(exp.model))
        if context is not None:
            _check_context(exp, context)


def _check_chdir(experiments: list[ExperimentConfig]) -> None:
    """``hydra.job.chdir=true`` runs each job inside its run folder: a relative path would be read
    from there, not from the folder llem was started in."""
    for exp in experiments:
        for key, value in _relative_paths(exp):
            raise UsageError(
                f"{key}={value} is relative, and hydra.job.chdir=true runs each job inside its run "
                f"folder: give {key}={Path(value).expanduser().absolute()} or drop hydra.job.chdir"
            )


def _relative_paths(exp: ExperimentConfig) -> list[tuple[str, str]]:
    """The experiment's (key, path) pairs that name a file or folder by a relative path."""
    from llem.backends.tensorrt.config import TensorRTConfig
    from llem.config import AIEnergyScoreDataset, JsonlDataset

    paths = []
    if isinstance(exp.dataset, JsonlDataset | AIEnergyScoreDataset) and exp.dataset.path:
        paths.append(("dataset.path", exp.dataset.path))
    if isinstance(exp.backend, TensorRTConfig) and exp.backend.engine_dir:
        paths.append(("backend.engine_dir", exp.backend.engine_dir))
    name = exp.model.name_or_path
    if name.startswith(".") or (not name.startswith("llem://") and Path(name).exists()):
        paths.append(("model.name_or_path", name))
    return [(k, v) for k, v in paths if not Path(v).expanduser().is_absolute()]


def _check_context(exp: ExperimentConfig, context: int) -> None:
    """New tokens (and synthetic prompts) must fit the model's context of ``context`` tokens."""
    from llem.config import SyntheticDataset

    if exp.max_new_tokens >= context:
        raise UsageError(
            f"max_new_tokens={exp.max_new_tokens} does not fit: the model has a context of "
            f"{context} tokens; set max_new_tokens<{context}"
        )
    if isinstance(exp.dataset, SyntheticDataset):
        room = context - exp.max_new_tokens
        if exp.dataset.input_tokens > room:
            raise UsageError(
                f"dataset.input_tokens={exp.dataset.input_tokens} plus max_new_tokens="
                f"{exp.max_new_tokens} do not fit: the model has a context of {context} tokens; "
                f"set dataset.input_tokens<={room}"
            )


def _check_energy(exp: ExperimentConfig) -> None:
    from llem.energy import check_meter

    check_meter(exp.energy)
    uses_codecarbon = exp.energy.codecarbon or exp.energy.meter == "codecarbon"
    known = _codecarbon_countries() if uses_codecarbon else None
    code = exp.energy.country_iso_code
    if known is not None and code not in known:
        raise UsageError(
            f"energy.country_iso_code={code!r} is not a country CodeCarbon knows: use an ISO 3166 "
            "alpha-3 code such as USA, FRA or DEU"
        )


def _codecarbon_countries() -> frozenset[str] | None:
    """The alpha-3 codes of CodeCarbon's energy-mix table (None when CodeCarbon is not installed),
    read from its data file without importing it."""
    import importlib.util
    import json

    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    table = Path(spec.submodule_search_locations[0]) / CODECARBON_MIX
    try:
        data = json.loads(table.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return frozenset(data) if isinstance(data, dict) else None


CODECARBON_MIX = "data/private_infra/global_energy_mix.json"  # inside the codecarbon package


def experiment(*overrides: str) -> ExperimentConfig:
    """The packaged experiment with ``key=value`` overrides, composed and validated (for scripts and
    notebooks)."""
    ((_, exp),) = compose_jobs(CommandLine(overrides=list(overrides))).jobs
    return exp
