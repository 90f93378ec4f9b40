"""``llem config``: what this machine and environment can run and measure (never imports torch)."""

from __future__ import annotations

import shutil
import subprocess

from llem.backends.registry import backends
from llem.energy.registry import meter_status_lines
from llem.environment import cpu_info, nvml_info, package_versions, torch_cuda_build
from llem.plugins import load_plugins


def docker_status() -> str:
    docker = shutil.which("docker")
    if docker is None:
        return "not installed"
    try:
        out = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "client installed, engine not responding"
    version = out.stdout.strip()
    return (
        f"available (engine {version})"
        if out.returncode == 0 and version
        else "client installed, no engine running"
    )


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
    rows.append(("docker", docker_status()))
    return rows


def main(args: list[str]) -> None:
    """Print :func:`report` as a table (plugins loaded first: their backends are listed too)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="llem config", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in report():
        table.add_row(key, Text(value))
    Console().print(table)
