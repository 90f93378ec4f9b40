"""The test suite's own rules: shared helpers come from tests/helpers.py, not a test module."""

from __future__ import annotations

import ast

from tests.helpers import REPO

TESTS = REPO / "tests"


def _imported_modules(tree: ast.Module) -> list[str]:
    """Every module an import statement names (relative ones as ``.name``)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return names


def test_no_test_module_imports_another_or_conftest():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if name.rsplit(".", 1)[-1].startswith("test_") or name.rsplit(".", 1)[-1] == "conftest"
    ]
    assert offenders == [], "import shared helpers from tests.helpers:\n" + "\n".join(offenders)
