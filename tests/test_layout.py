"""Imports go one way: flows -> tasks -> model; model/ runs without Prefect or Ray; infra imports nothing of ours."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "model": {"prefect", "ray", "tasks", "flows", "infra"},
    "tasks": {"flows"},
    "infra": {"flows", "tasks", "model"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_go_one_way(package):
    offenders = {str(p.relative_to(REPO)): sorted(imported_roots(p) & FORBIDDEN[package])
                 for p in (REPO / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_deepspeed_is_imported_in_one_module():
    importers = sorted(str(p.relative_to(REPO)) for folder in ("model", "tasks", "flows", "infra")
                       for p in (REPO / folder).rglob("*.py") if "deepspeed" in imported_roots(p))
    assert importers == ["model/engine.py"]
