import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.code_hash import REPO_ROOT, code_hash, library_versions

# a small project: stage -> rules -> text (relative import), infra.storage via `from infra import storage`,
# a model import inside a function, and a trainer script that no stage imports
FAKE_TREE = {
    "tasks/__init__.py": "",
    "tasks/data/__init__.py": '"""The data wing."""\n',
    "tasks/data/stage.py": """
        from infra import storage
        from tasks.data.rules import clean

        def run(path):
            return clean(storage.read(path))
    """,
    "tasks/data/rules.py": """
        import re

        from .text import normalise

        def clean(text):
            return re.sub("x", "", normalise(text))
    """,
    "tasks/data/text.py": '''
        """Text helpers."""

        def normalise(text):
            """Lower-case it."""
            # the corpus mixes cases
            return text.lower()
    ''',
    "tasks/data/other.py": """
        import json

        def dump(record):
            return json.dumps(record)
    """,
    "tasks/data/lazy.py": """
        def train():
            from model import gpt
            return gpt.build()
    """,
    "infra/__init__.py": "",
    "infra/storage.py": "def read(path):\n    return open(path).read()\n",
    "model/__init__.py": "",
    "model/gpt.py": "def build():\n    return 'gpt'\n",
    "model/trainer.py": "from model.gpt import build\n\nif __name__ == '__main__':\n    build()\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in FAKE_TREE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    # edits change the file's size, so the (path, mtime_ns, size) cache sees them even within one clock tick
    text = path.read_text()
    assert old in text and len(old) != len(new)
    path.write_text(text.replace(old, new))


def test_function_body_edit_reaches_importers_only(tree: Path) -> None:
    stage, rules, other = (code_hash([name], root=tree) for name in
                           ["tasks.data.stage", "tasks.data.rules", "tasks.data.other"])
    edit(tree / "tasks/data/text.py", "text.lower()", "text.casefold()")
    assert code_hash(["tasks.data.stage"], root=tree).digest != stage.digest
    new_rules = code_hash(["tasks.data.rules"], root=tree)
    assert new_rules.digest != rules.digest
    assert code_hash(["tasks.data.other"], root=tree) == other
    changed = {name for name, digest in new_rules.modules.items() if rules.modules[name] != digest}
    assert changed == {"tasks.data.text"}


def test_comments_docstrings_and_formatting_do_not_count(tree: Path) -> None:
    before = code_hash(["tasks.data.stage"], root=tree)
    text = tree / "tasks/data/text.py"
    edit(text, "# the corpus mixes cases", "# mixed case in, lower case out")
    edit(text, '"""Lower-case it."""', '"""Lower-case it, so that dedup sees one form."""')
    edit(text, '"""Text helpers."""', '"""Helpers on plain strings."""')
    edit(tree / "tasks/data/rules.py", 'clean(text):\n    return re.sub("x", ""', 'clean( text ):\n\n    return re.sub( "x", ""')
    assert code_hash(["tasks.data.stage"], root=tree) == before


def test_a_changed_constant_counts(tree: Path) -> None:
    before = code_hash(["tasks.data.rules"], root=tree)
    edit(tree / "tasks/data/rules.py", 're.sub("x"', 're.sub("xy"')
    assert code_hash(["tasks.data.rules"], root=tree).digest != before.digest


def test_follows_project_imports_of_every_form(tree: Path) -> None:
    modules = code_hash(["tasks.data.stage"], root=tree).modules
    # `from infra import storage` is the submodule; `from .text import` is relative; parents' __init__ run too
    assert set(modules) == {"tasks", "tasks.data", "tasks.data.stage", "tasks.data.rules", "tasks.data.text",
                            "infra", "infra.storage"}
    assert "model.gpt" in code_hash(["tasks.data.lazy"], root=tree).modules  # an import inside a function


def test_scripts_count_with_their_imports(tree: Path) -> None:
    without = code_hash(["tasks.data.other"], root=tree)
    with_trainer = code_hash(["tasks.data.other"], scripts=["model/trainer.py"], root=tree)
    assert {"model.trainer", "model.gpt"} <= set(with_trainer.modules)
    edit(tree / "model/gpt.py", "'gpt'", "'gpt-2'")
    after = code_hash(["tasks.data.other"], scripts=["model/trainer.py"], root=tree)
    assert after.digest != with_trainer.digest
    assert code_hash(["tasks.data.other"], root=tree) == without


def test_unknown_module_or_script_is_a_clear_error(tree: Path) -> None:
    with pytest.raises(ValueError, match="tasks.data.missing"):
        code_hash(["tasks.data.missing"], root=tree)
    with pytest.raises(ValueError, match="model/missing.py"):
        code_hash([], scripts=["model/missing.py"], root=tree)


def test_library_versions_reads_installed_metadata() -> None:
    versions = library_versions(["pytest", "no-such-distribution-tokenmill"])
    assert versions == {"pytest": pytest.__version__, "no-such-distribution-tokenmill": "absent"}


def test_real_clean_stage_includes_its_rules_not_the_trainer() -> None:
    modules = code_hash(["tasks.data.clean"]).modules
    assert "tasks.data.quality" in modules
    assert "model.trainer" not in modules


def test_hashing_every_task_module_takes_under_a_second() -> None:
    # a fresh process, so the per-process cache is cold as in a `plan`
    script = textwrap.dedent("""
        import time
        from infra.code_hash import REPO_ROOT, code_hash
        names = [".".join(p.relative_to(REPO_ROOT).with_suffix("").parts) for p in (REPO_ROOT / "tasks").rglob("*.py")]
        start = time.perf_counter()
        code_hash(names)
        print(time.perf_counter() - start)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert float(run.stdout) < 1.0
