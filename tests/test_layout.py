"""The walls between wings: imports go one way, checked transitively through our own modules.

flows -> tasks -> model, everything -> infra; the data wing reaches neither the training wing nor torch;
model/ never reaches Prefect or Ray; no stage code (tasks/, infra/) imports Prefect.
"""

import ast
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("flows", "tasks", "model", "infra")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in OURS for p in (REPO / package).rglob("*.py")}


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Every module `module` imports, at the top or inside a function (a lazy import still runs)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return frozenset(found)


def ours_with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c: all of ours among them."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in MODULES]


@cache
def reachable(module: str) -> frozenset[str]:
    """Every module imported when `module` is, following our own modules (third-party ones as leaves)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        for name in direct_imports(current):
            todo += [m for m in ours_with_parents(name) if m not in seen and m != current]
            seen |= {name, *ours_with_parents(name)}
    return frozenset(seen)


def offenders(prefix: str, forbidden: set[str]) -> dict[str, list[str]]:
    hits = {}
    for module in MODULES:
        if module == prefix or module.startswith(prefix + "."):
            bad = sorted(name for name in reachable(module) if name.split(".")[0] in forbidden
                         or any(name == f or name.startswith(f + ".") for f in forbidden))
            if bad:
                hits[module] = bad
    return hits


@pytest.mark.parametrize(("wing", "forbidden"), [
    ("tasks.data", {"tasks.train", "tasks.eval", "torch", "deepspeed", "model"}),  # data never reaches training
    ("model", {"prefect", "ray", "tasks", "flows"}),  # `deepspeed model/trainer.py spec.json` runs alone
    ("tasks", {"prefect", "flows"}),  # stage code is plain functions: flows/ makes them tasks
    ("infra", {"prefect", "flows", "tasks", "model"}),  # the runtime knows no stage
])
def test_no_wing_reaches_sideways(wing, forbidden):
    assert offenders(wing, forbidden) == {}


def test_the_check_sees_through_our_own_modules():
    # a guard on the checker itself: pack reaches Ray only through infra.ray_map
    assert "ray" in reachable("tasks.data.pack") and "ray" not in direct_imports("tasks.data.pack")
    assert "torch" in reachable("tasks.train.pretrain")  # through model.gpt, not directly


def test_deepspeed_is_imported_in_one_module():
    importers = sorted(m for m in MODULES if any(n.split(".")[0] == "deepspeed" for n in direct_imports(m)))
    assert importers == ["model.engine"]


def test_prefect_is_imported_only_in_flows():
    importers = sorted(m for m in MODULES if any(n.split(".")[0] == "prefect" for n in direct_imports(m)))
    assert importers and all(m.startswith("flows.") for m in importers)


def test_no_two_modules_share_a_confusable_name():
    for name in ("evaluate", "train", "export", "stage"):
        holders = sorted(m for m in MODULES if m.rsplit(".", 1)[-1] == name)
        assert len(holders) <= 1, f"{name}: {holders}"


HEAVY = ("ray", "prefect", "torch", "deepspeed")
IMPORT_PROBE = """
import sys
from typer.testing import CliRunner
from flows.cli import app
runner = CliRunner()
help_text = runner.invoke(app, ["--help"]).output
bad = runner.invoke(app, ["run", "--until", "pak"])
print(bad.exit_code, bad.output.replace(chr(10), " "))
print(sorted(m for m in sys.modules if m.split(".")[0] in {heavy}))
""".replace("{heavy}", repr(set(HEAVY)))


def test_help_and_until_validation_import_no_heavy_package():
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    verdict, heavy = out.stdout.strip().splitlines()[-2:]
    assert verdict.startswith("2 ") and "'pak': not a stage; one of ingest, clean" in verdict
    assert heavy == "[]"


def test_the_wheel_carries_every_stage_and_imports_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("tokenmill-*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = ("import sys; from tasks.stages import STAGES; "
             "print(all(s.load().__module__.split('.')[0] == 'tasks' for s in STAGES)); "
             "print({sys.modules[s.function.split(':')[0]].__file__.startswith(sys.argv[1]) for s in STAGES})")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "site")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "{True}"]
