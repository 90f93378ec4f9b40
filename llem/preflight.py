"""Pre-flight: compose and validate every job of a command line before anything runs.

Runs in the ``llem`` process before Hydra starts, so that bad input (unknown key, wrong type,
unknown group option, missing model folder or dataset file, missing backend) exits with code 2 and
one short message, and no result folder is created. A sweep (``-m``) is expanded and each job
checked; all bad jobs are listed."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from llem.config import ExperimentConfig, validate
from llem.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    ComposeFn = Callable[..., DictConfig]  # hydra.compose

# Hydra flags that only print something: no experiment runs, so nothing is checked.
_PASSTHROUGH = {
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--experimental-rerun",
}
# Hydra flags that cannot be combined with -m (Hydra would raise a ValueError)
_PRINT_ONLY = {"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
_WITH_VALUE = {
    "--config-path": "config_path",
    "-cp": "config_path",
    "--config-name": "config_name",
    "-cn": "config_name",
    "--config-dir": "config_dir",
    "-cd": "config_dir",
}


@dataclass
class CommandLine:
    """The parts of a Hydra command line that decide what gets composed."""

    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    passthrough: bool = False
    config_path: str | None = None
    config_name: str = "llem"
    config_dir: str | None = None


def parse(args: list[str]) -> CommandLine:
    cl = CommandLine()
    it = iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if flag in _WITH_VALUE:
            setattr(cl, _WITH_VALUE[flag], value if eq else next(it, ""))
        elif arg in ("-m", "--multirun"):
            cl.multirun = True
        elif flag in _PASSTHROUGH:
            cl.passthrough = True
        elif arg.startswith("-") and "=" not in arg:
            cl.passthrough = True  # a Hydra flag we do not model: let Hydra handle it
        else:
            cl.overrides.append(arg)
    return cl


@dataclass
class Plan:
    """What a command line will run: each job's overrides and validated experiment, and how."""

    jobs: list[tuple[list[str], ExperimentConfig]]
    launcher_mode: str  # auto | subprocess | docker (llem's launcher), or "other"
    docker_executable: str = "docker"  # hydra.launcher.docker.executable
    docker_host: str | None = None  # hydra.launcher.docker.host
    slurm_partition: str | None = None  # a SLURM launcher's partition (None: the default one)
    fork: bool = True  # hydra.launcher.fork (llem's launcher)


def compose_jobs(cl: CommandLine) -> Plan:
    """Compose and validate every job; raises :class:`ConfigError` listing each bad job."""
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
            whole_or_hydra = _compose(compose, cl.config_name, _hydra_part(overrides), True)
        else:
            whole_or_hydra = whole
        hydra_cfg = whole_or_hydra.hydra
        multirun = cl.multirun or str(hydra_cfg.get("mode")) in ("MULTIRUN", "RunMode.MULTIRUN")
        jobs = _expand(hydra_cfg, overrides) if multirun else [overrides]
        results, problems = [], []
        for job in jobs:
            try:
                one = whole is not None and not multirun
                composed = whole if one else _compose(compose, cl.config_name, job)
                results.append((job, validate(composed)))
            except UsageError as exc:
                problems.append((job, exc))
    if problems:
        if len(jobs) == 1:
            raise problems[0][1]
        lines = [f"{len(problems)} of {len(jobs)} jobs are invalid; nothing was run:"]
        lines += [f"  [{' '.join(_user_part(j)) or 'defaults'}] {exc}" for j, exc in problems]
        raise ConfigError("\n".join(lines))
    _VALIDATED.update((_task_key(job), exp) for job, exp in results)
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_"))
    if "SlurmLauncher" in target:
        partition = launcher.get("partition")
        return Plan(results, "slurm", slurm_partition=None if partition is None else str(partition))
    if "llem_launcher" not in target:
        return Plan(results, "other")
    mode = launcher.get("mode")
    host = launcher.docker.get("host")
    return Plan(
        results,
        mode.value if isinstance(mode, Enum) else str(mode),
        str(launcher.docker.executable),
        None if host is None else str(host),
        fork=bool(launcher.get("fork", True)),
    )


# this process's validated jobs, by their task overrides: llem's study launcher reuses them
_VALIDATED: dict[tuple[str, ...], ExperimentConfig] = {}


def _task_key(overrides: Sequence[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/")))


def validated(overrides: Sequence[str]) -> ExperimentConfig | None:
    """The experiment pre-flight validated for a job with these overrides (None if not)."""
    return _VALIDATED.get(_task_key(overrides))


def _hydra_part(overrides: list[str]) -> list[str]:
    """Overrides of Hydra's own config: keys (hydra.x=…) and group choices (hydra/launcher=…)."""
    return [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]


def _user_part(job: list[str]) -> list[str]:
    return [o for o in job if not o.startswith("hydra.")]


def _expand(hydra_cfg: DictConfig, overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep, as Hydra's basic sweeper would build them (sweeper params, then command
    line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params_node = hydra_cfg.sweeper.get("params")
    params = OmegaConf.to_container(params_node, resolve=False) if params_node else {}
    assert isinstance(params, dict)
    swept = [f"{k!s}={v}" for k, v in params.items()] + overrides
    try:
        parsed = OverridesParser.create().parse_overrides(swept)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception as exc:  # grammar errors
        raise UsageError(_first_line(str(exc))) from None
    return [job for batch in batches for job in batch]


def _compose(
    compose: ComposeFn, config_name: str, overrides: list[str], hydra_node: bool = False
) -> DictConfig:
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(config_name, overrides=overrides, return_hydra_config=hydra_node)
    except MissingConfigException as exc:
        missing = exc.missing_cfg_file or ""
        if "/" in missing and exc.options is not None:
            group, option = missing.rsplit("/", 1)
            raise UsageError(
                f"unknown {group} '{option}': choose one of {', '.join(sorted(exc.options))}"
                f" (e.g. {group}={sorted(exc.options)[0]})"
            ) from None
        raise UsageError(f"config '{config_name}' not found: {_first_line(str(exc))}") from None
    except OverrideParseException as exc:
        raise UsageError(f"cannot parse override: {_first_line(str(exc))}") from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(_composition_message(exc, compose, config_name)) from None


def _composition_message(exc: Exception, compose: ComposeFn, config_name: str) -> str:
    """Hydra's 'Could not override X' -> unknown key X, with the closest valid key."""
    text = str(exc)
    if "Could not override '" in text or "Could not append to config" in text:
        key = text.split("'")[1]
        if "To append to your default list use " in text:  # a group outside the defaults (presets)
            return f"'{key}' is added with a '+': use {text.rsplit(' use ', 1)[1].strip()}"
        parent, _, leaf = key.rpartition(".")
        hint = ""
        try:
            from omegaconf import OmegaConf

            base = compose(
                config_name,
                overrides=[],
                return_hydra_config=parent == "hydra" or parent.startswith("hydra."),
            )
            node = OmegaConf.select(base, parent) if parent else base
            close = (
                difflib.get_close_matches(leaf, list(node.keys()), n=1) if node is not None else []
            )
            if close:
                hint = f" (did you mean '{'.'.join(filter(None, [parent, close[0]]))}'?)"
        except Exception:
            pass
        lister = f"llem --cfg hydra -p {parent}" if key.startswith("hydra.") else "llem --cfg job"
        return f"unknown key '{key}'{hint}: check the spelling; `{lister}` lists every key"
    return _first_line(text)


def _first_line(text: str) -> str:
    """The message of a Hydra/OmegaConf error: its first line, plus the next when the first only
    says where."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return text
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def check(args: list[str]) -> list[ExperimentConfig]:
    """Everything that can be checked before running: config, backend, model source (complete
    folder, context length), dataset (file, size against ``n``), meter, country code, that the
    output folders can be written. Every bad job is listed; nothing is created."""
    from llem.plugins import load_plugins

    load_plugins()  # here, so that a plugin that cannot be imported is one Error: line
    cl = parse(args)
    if cl.multirun and _PRINT_ONLY & set(args):
        raise UsageError(
            f"-m cannot be combined with {'/'.join(sorted(_PRINT_ONLY & set(args)))}: drop -m "
            "to print the configuration"
        )
    if cl.passthrough:
        return []
    plan = compose_jobs(cl)
    experiments = [exp for _, exp in plan.jobs]
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
    if problems:
        if len(plan.jobs) == 1:
            raise problems[0][1]
        lines = [f"{len(problems)} of {len(plan.jobs)} jobs are invalid; nothing was run:"]
        lines += [f"  [{' '.join(_user_part(j)) or 'defaults'}] {exc}" for j, exc in problems]
        raise ConfigError("\n".join(lines))
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
        from llem.backends.openai.config import OpenAIConfig, require_vllm
        from llem.datasets import check_dataset
        from llem.models.source import check_model, model_context
        from llem.pathcheck import check_folder, check_job

        if not self.in_containers:
            self._once(f"backend:{exp.backend.name}", lambda: require_backend(exp.backend.name))
        served_by_vllm = isinstance(exp.backend, OpenAIConfig) and exp.backend.launch == "vllm"
        if not self.in_containers and served_by_vllm:
            self._once("server:vllm", require_vllm)  # backend=openai starting vLLM: the extra
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
