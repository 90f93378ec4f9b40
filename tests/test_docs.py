"""The docs a newcomer reads: a short README whose links resolve, reference tables generated from
the schema (they cannot drift), and the commands the docs name (`llem --version`,
`llem config --help`, `llem config --compose-path`, the launcher-key lister) behaving as
documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llem.schema_docs import DEFAULT_FILES, main, update
from tests.helpers import REPO, run_llem

pytestmark = pytest.mark.e2e
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short_and_keeps_the_quick_start_ci_runs():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 10 * 1024
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = re.search(r"```bash\n(.*?)```", text, re.S)
    assert commands is not None
    for line in commands.group(1).splitlines():
        assert line in ci, f"README's quick start differs from what .ci/run runs: {line}"
    for section in ("On a GPU", "In containers", "On SLURM", "Reading your results"):
        assert f"## {section}" in text
    assert "not yet published" in text and "llem config --compose-path" in text


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    for target, _ in LINK.findall(path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_reference_tables_are_generated_from_the_schema():
    texts = {p.name: p.read_text(encoding="utf-8") for p in DEFAULT_FILES}
    for name in ("backends", "backend-keys", "model-keys", "keys"):
        assert f"<!-- llem-docs:{name} -->" in texts["configuration.md"]
    assert "<!-- llem-docs:result-fields -->" in texts["results-reference.md"]
    for name, text in texts.items():
        assert update(text) == text, f"run: python -m llem.schema_docs (docs/{name})"
    assert main(["--check"]) == 0
    from llem.result import Result

    for field in Result.model_fields:
        assert re.search(rf"`{field}(\[\]|\{{\}})?`", texts["results-reference.md"]), field


def test_check_reports_a_stale_table(tmp_path):
    stale = tmp_path / "stale.md"
    stale.write_text("<!-- llem-docs:model-keys -->\nold\n<!-- /llem-docs:model-keys -->\n")
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0 and "`model.name_or_path`" in stale.read_text()


def test_version_and_config_help(tmp_path):
    version = run_llem("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(
        "llenergymeasure 2.0.0 (Hydra 1.3."
    )
    helped = run_llem("config", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: llem config")
    assert (
        "--compose-path" in helped.stdout and "llem --cfg hydra -p hydra.launcher" in helped.stdout
    )
    bad = run_llem("config", "--bogus", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: llem config: unknown argument")


def test_compose_path_points_at_the_packaged_compose_file(tmp_path):
    proc = run_llem("config", "--compose-path", cwd=tmp_path)
    path = Path(proc.stdout.strip())
    assert proc.returncode == 0 and path.name == "compose.yaml" and path.is_file()
    assert {"pytorch", "vllm", "tensorrt"} <= set(yaml.safe_load(path.read_text())["services"])
    report = run_llem("config", cwd=tmp_path, env={"COLUMNS": "300"})
    assert str(path) in report.stdout and "not yet published" in report.stdout


def test_unknown_launcher_key_hint_names_a_command_that_lists_it(tmp_path):
    proc = run_llem("hydra.launcher.timout_s=5", cwd=tmp_path)
    assert proc.returncode == 2
    hint = re.search(r"`(llem [^`]+)` lists every key", proc.stderr)
    assert hint is not None and "did you mean 'hydra.launcher.timeout_s'" in proc.stderr
    listed = run_llem(*hint.group(1).split()[1:], cwd=tmp_path)
    assert (
        listed.returncode == 0 and "timeout_s:" in listed.stdout and "mode: auto" in listed.stdout
    )


def test_reliability_counts_are_the_fault_tests_pytest_collects():
    """docs/reliability.md's table of test cases per fault module lists every
    ``tests/test_faults*.py`` with the number of cases pytest collects from it."""
    import subprocess
    import sys

    text = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    table = text.split("<!-- fault-test-counts -->")[1].split("<!-- /fault-test-counts -->")[0]
    documented = {
        m[0]: int(m[1]) for m in re.findall(r"\| `(tests/test_faults\w*\.py)` \| (\d+) \|", table)
    }
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_faults*.py"))
    assert sorted(documented) == modules
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", *modules],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    collected: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        if "::" in line:
            module = line.split("::")[0]
            collected[module] = collected.get(module, 0) + 1
    assert collected == documented, proc.stdout[-2000:]
