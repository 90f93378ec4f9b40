"""``llem config``: what this machine and environment can run and measure (never imports torch)."""

from __future__ import annotations

from llem.backends.registry import backends
from llem.docker.compose import IMAGES_NOTE, compose_path
from llem.docker.engine import probe
from llem.energy.registry import meter_status_lines
from llem.environment import cpu_info, nvml_info, package_versions, torch_cuda_build
from llem.errors import UsageError
from llem.plugins import load_plugins


def report() -> list[tuple[str, str]]:
    load_plugins()
    v = package_versions()
    rows = [("llem", v["llenergymeasure"] or "?"), ("python", v["python"] or "?")]
    for entry in backends():
        status = "installed" if entry.installed() else f"not installed ({entry.install_command})"
        rows.append((f"backend {entry.name}", f"{status}: {entry.description}"))
    cuda = torch_cuda_build()
    if cuda is not None:
        rows.append(
            ("torch", f"{v['torch']} ({'CUDA ' + cuda + ' build' if cuda else 'CPU-only build'})")
        )
    cpu = cpu_info()
    rows.append(
        (
            "cpu",
            f"{cpu['model']}, {cpu['usable_cores']} usable cores, "
            f"native bf16: {'yes' if cpu['native_bf16'] else 'no'}",
        )
    )
    nvml = nvml_info()
    if nvml["status"] == "ok":
        gpus = ", ".join(f"{g['index']}: {g['name']}" for g in nvml["gpus"]) or "no GPUs"
        rows.append(("NVML", f"driver {nvml['driver']}, CUDA {nvml['cuda_driver']}; {gpus}"))
    else:
        rows.append(("NVML", nvml["reason"]))
    rows += meter_status_lines()
    rows.append(("docker", probe().describe()))
    rows.append(("compose file", f"{compose_path()} ({IMAGES_NOTE})"))
    return rows


USAGE = """usage: llem config [--compose-path | --help]

What this machine and environment can run and measure: llem and Python versions, each backend
(installed or its install command), CPU, GPUs (NVML), energy meters, Docker and the packaged
compose file. Never imports torch.

  --compose-path  print only the path of the packaged compose file, e.g.
                  docker compose -f "$(llem config --compose-path)" pull pytorch vllm
  -h, --help      this text

The launcher's options (hydra.launcher.*) are listed by: llem --cfg hydra -p hydra.launcher"""


def main(args: list[str]) -> None:
    """Print :func:`report` as a table (plugins loaded first: their backends are listed too)."""
    if args in (["--help"], ["-h"]):
        print(USAGE)
        return
    if args == ["--compose-path"]:
        print(compose_path())
        return
    if args:
        raise UsageError(f"llem config: unknown argument {' '.join(args)} (see llem config --help)")
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="llem config", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in report():
        table.add_row(key, Text(value))
    Console().print(table)
