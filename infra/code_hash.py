"""What a stage's code is, as a hash: the fingerprint part that replaces a hand-bumped `VERSION`.

A stage's code is its own modules, every project module they import (found with `ast`, never by
importing: `tasks.*` pulls torch and Ray, and a dry-run plan must stay fast), and scripts no stage
imports (`model/trainer.py` runs under the DeepSpeed launcher). Each module is hashed as its syntax
tree without docstrings, so comments, docstrings and formatting do not count and everything else does.
"""

import ast
import hashlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# the top-level packages whose imports are followed; everything else is stdlib or a pinned library
PROJECT_PACKAGES = frozenset({"tasks", "infra", "model", "flows"})

# (level, module, names): `import a.b` is (0, "a.b", ()); `from ..a import b` is (2, "a", ("b",))
RawImport = tuple[int, str, tuple[str, ...]]


@dataclass(frozen=True)
class CodeHash:
    digest: str  # one digest over every module below
    modules: dict[str, str]  # module name (or a script's path relative to the root) -> short digest


@dataclass(frozen=True)
class _Parsed:
    digest: str
    imports: tuple[RawImport, ...]


# per process, keyed by (path, mtime_ns, size): a plan hashes ~12 stages that share most modules
_PARSED: dict[tuple[str, int, int], _Parsed] = {}


def code_hash(module_names: Iterable[str], scripts: Iterable[str] = (), root: Path = REPO_ROOT) -> CodeHash:
    """Hash `module_names`, the project modules they import transitively, and `scripts` (paths
    relative to `root`, whose project imports are followed too)."""
    root = Path(root)
    pending: list[tuple[str, Path]] = []
    for name in module_names:
        path = _module_file(root, name)
        if path is None:
            raise ValueError(f"module {name!r} is not a project module under {root}")
        pending += [*_parent_packages(root, name), (name, path)]
    for script in scripts:
        path = root / script
        if not path.is_file():
            raise ValueError(f"script {script!r} not found under {root}")
        pending.append((_script_name(root, path), path))
    modules: dict[str, str] = {}
    while pending:
        name, path = pending.pop()
        if name in modules:
            continue
        parsed = _parse(path)
        modules[name] = parsed.digest
        is_package = path.name == "__init__.py"
        for imported in _resolve(name, is_package, parsed.imports):
            if imported not in modules and (imported_path := _module_file(root, imported)):
                pending += [*_parent_packages(root, imported), (imported, imported_path)]
    combined = hashlib.sha256("".join(f"{name}={modules[name]}\n" for name in sorted(modules)).encode())
    return CodeHash(digest=combined.hexdigest()[:16], modules=dict(sorted(modules.items())))


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the distributions that shape a stage's output, read from metadata
    (importing torch to ask would cost seconds); a missing one is "absent"."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _module_file(root: Path, name: str) -> Path | None:
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for path in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _parent_packages(root: Path, name: str) -> list[tuple[str, Path]]:
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
    parts = name.split(".")
    parents = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [(parent, path) for parent in parents if (path := _module_file(root, parent))]


def _script_name(root: Path, path: Path) -> str:
    # a script inside a project package is also that module: one entry, however it was named
    relative = path.resolve().relative_to(root.resolve())
    if relative.parts[0] in PROJECT_PACKAGES and relative.suffix == ".py":
        parts = relative.with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return relative.as_posix()


def _resolve(name: str, is_package: bool, imports: tuple[RawImport, ...]) -> list[str]:
    """Absolute module names `name` may import; `from pkg import x` names pkg.x in case x is a submodule."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    names = []
    for level, module, imported in imports:
        if level:
            anchor = package[: len(package) - level + 1]
            base = ".".join([*anchor, module] if module else anchor)
        else:
            base = module
        names += [base, *(f"{base}.{item}" for item in imported if item != "*")]
    return names


def _parse(path: Path) -> _Parsed:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _PARSED:
        tree = ast.parse(path.read_bytes(), filename=str(path))
        imports = _imports_and_strip_docstrings(tree)
        dump = ast.dump(tree, annotate_fields=False, include_attributes=False)
        _PARSED[key] = _Parsed(hashlib.sha256(dump.encode()).hexdigest()[:12], imports)
    return _PARSED[key]


def _imports_and_strip_docstrings(tree: ast.Module) -> tuple[RawImport, ...]:
    # one walk does both (walking the tree is most of the cost); it reaches imports inside functions too
    found: list[RawImport] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
        elif isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                node.body = node.body[1:]  # the docstring: prose, like a comment
    return tuple(found)


class StageCode(str):
    """A stage's code version (a digest, used where a hand-kept `VERSION` used to be), with what it covers:
    the per-module digests and library versions, so a plan or a manifest can say what changed."""

    modules: dict[str, str]
    libraries: dict[str, str]


def stage_code(module: str, scripts: Iterable[str] = (), libraries: Iterable[str] = (), root: Path = REPO_ROOT) -> StageCode:
    """The code version of the stage defined in `module`: its code (see code_hash) and the installed versions of
    the `libraries` that shape its output (an upgraded tokenizers or ftfy changes outputs as much as an edit)."""
    code = code_hash([module], scripts, root)
    versions = library_versions(libraries)
    payload = code.digest + "".join(f"\n{name}=={version}" for name, version in sorted(versions.items()))
    version = StageCode(hashlib.sha256(payload.encode()).hexdigest()[:16])
    version.modules, version.libraries = code.modules, versions
    return version
