"""Code-aware fingerprints: a stage's fingerprint follows the code it runs, not a hand-kept constant."""

import re
import shutil
from pathlib import Path

import pytest

from infra import code_hash
from infra.code_hash import stage_code
from infra.stage import fingerprint, run_stage

REPO = Path(__file__).resolve().parents[1]
TRAINER = ("model/trainer.py",)


def test_no_stage_keeps_a_code_version_constant():
    constants = re.compile(r"^\w*VERSION\s*=", re.MULTILINE)
    found = {str(p.relative_to(REPO)): constants.findall(p.read_text()) for p in (REPO / "tasks").rglob("*.py")}
    # a schema version of a file format may stay: it says how to read a file, not which code wrote it
    assert {path: names for path, names in found.items() if any(n != "SCHEMA_VERSION =" for n in names)} == {}


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the project's code, to edit."""
    for package in ("tasks", "infra", "model", "flows"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def codes(root: Path) -> dict[str, str]:
    return {"clean": stage_code("tasks.data.clean", root=root), "pretrain": stage_code("tasks.train.pretrain", TRAINER, root=root),
            "evaluate": stage_code("tasks.eval.evaluate", root=root)}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found (the test must follow the code)"
    path.write_text(text.replace(old, new, 1))


def test_editing_a_function_clean_uses_changes_clean_only(tree):
    before = codes(tree)
    edit(tree / "tasks/data/pii.py", "max(0, match.start() - 12)", "max(0, match.start() - 13)")
    after = codes(tree)
    assert after["clean"] != before["clean"]
    assert after["pretrain"] == before["pretrain"]
    assert [m for m in after["clean"].modules if after["clean"].modules[m] != before["clean"].modules[m]] == ["tasks.data.pii"]


def test_comments_docstrings_and_formatting_do_not_count(tree):
    before = codes(tree)
    edit(tree / "tasks/data/pii.py", 'def _is_ipv4(match: re.Match, cfg: "PiiConfig") -> bool:\n',
         'def _is_ipv4(match: re.Match, cfg: "PiiConfig") -> bool:\n    """A new docstring."""\n    # and a comment\n\n')
    edit(tree / "tasks/data/clean.py", '"""', '"""Reworded. ')
    assert codes(tree) == before


def test_editing_report_code_changes_evaluate_not_pretrain(tree):
    before = codes(tree)
    edit(tree / "tasks/eval/report.py", 'return "data:image/png;base64,"', 'return "data:image/png;base64 ,"')
    after = codes(tree)
    assert after["evaluate"] != before["evaluate"] and after["pretrain"] == before["pretrain"]
    assert after["clean"] == before["clean"]


def test_the_trainer_script_counts_for_training(tree):
    before = codes(tree)
    edit(tree / "model/trainer.py", "EXTRA_COLUMNS = {", "EXTRA_COLUMNS = {**{}, ")
    after = codes(tree)
    assert after["pretrain"] != before["pretrain"] and after["clean"] == before["clean"]


def test_a_library_upgrade_changes_the_code_version(monkeypatch):
    before = stage_code("tasks.data.clean", libraries=("ftfy",))
    real = code_hash.importlib.metadata.version
    monkeypatch.setattr(code_hash.importlib.metadata, "version", lambda name: "99.0" if name == "ftfy" else real(name))
    after = stage_code("tasks.data.clean", libraries=("ftfy",))
    assert after != before and after.libraries == {"ftfy": "99.0"} and after.modules == before.modules


def test_the_manifest_records_the_lineage(tmp_path):
    code = stage_code("tasks.data.pii", libraries=("pyarrow",))
    fp = fingerprint("toy", code, {"threshold": 0.5}, ["upstream-fp"])
    manifest = run_stage(str(tmp_path), "toy", fp, lambda folder: {})
    lineage = manifest.lineage
    assert lineage["code"] == code and lineage["config"] == {"threshold": 0.5} and lineage["inputs"] == ["upstream-fp"]
    assert "tasks.data.pii" in lineage["modules"] and set(lineage["libraries"]) == {"pyarrow"}
    assert run_stage(str(tmp_path), "toy", fp, lambda folder: {}).lineage == lineage  # read back from disk


def test_lineage_walks_from_any_output_back_to_the_input_files(tmp_path):
    import json

    from typer.testing import CliRunner

    from flows.cli import app

    work = str(tmp_path / "work")
    first = fingerprint("ingest", stage_code("tasks.data.ingest", libraries=("pyarrow",)), {"unit_bytes": 1},
                        ["corpus/a.txt:" + "0" * 64])
    ingested = run_stage(work, "ingest", first, lambda folder: {})

    def build(folder):
        (folder / "model.safetensors").write_text("weights")
        return {"files": {"weights": "model.safetensors"}}

    later = run_stage(work, "pretrain", fingerprint("pretrain", stage_code("tasks.train.pretrain", TRAINER),
                                                    {"lr": 0.001}, [ingested.fingerprint]), build)
    shown = CliRunner().invoke(app, ["lineage", later.file("weights"), "--json"])
    assert shown.exit_code == 0, shown.output
    links = json.loads(shown.output)
    assert [link["stage"] for link in links] == ["pretrain", "ingest"]
    assert links[0]["from"] == [ingested.fingerprint] and links[0]["config"] == {"lr": 0.001}
    assert links[1]["inputs"] == ["corpus/a.txt:" + "0" * 64] and links[1]["libraries"].keys() == {"pyarrow"}

    text = CliRunner().invoke(app, ["lineage", later.path])
    assert text.exit_code == 0 and "corpus/a.txt" in text.output and "pretrain" in text.output

    missing = CliRunner().invoke(app, ["lineage", str(tmp_path)])
    assert missing.exit_code == 2 and "not inside a finished stage output" in missing.output


def test_training_hashes_resolved_settings_not_requests(tmp_path, monkeypatch):
    from tasks.train import launch
    from tasks.train.launch import training_fingerprint_config
    from tasks.train.pretrain import PretrainConfig

    monkeypatch.setattr(launch, "has_gpu", lambda: False)
    on_cpu = training_fingerprint_config(PretrainConfig())
    assert on_cpu["train"]["precision"] == "fp32" and on_cpu["device"] == "cpu"
    assert on_cpu["train"]["global_batch_size"] == 16 and "num_procs" not in on_cpu  # the batch, not the ranks
    monkeypatch.setattr(launch, "has_gpu", lambda: True)
    on_gpu = training_fingerprint_config(PretrainConfig())
    assert on_gpu["train"]["precision"] == "bf16" and on_gpu["device"] == "gpu"  # a CPU result is not reused here
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=2\nnode-b slots=2\n")
    # an unset global batch means one micro batch per rank: then the rank count is what sets it
    unset = PretrainConfig(train={"micro_batch_size": 8}, launch={"hostfile": hostfile})
    assert training_fingerprint_config(unset)["train"]["global_batch_size"] == 32


def test_evaluate_hashes_the_contents_of_its_extra_texts(tmp_path):
    from infra.stage import planning
    from tasks.eval.evaluate import EvaluateConfig, evaluate

    text = tmp_path / "extra.txt"
    text.write_text("one text")

    def planned_fingerprint() -> str:
        with planning() as recorded:
            evaluate({}, EvaluateConfig(extra_texts=[text]), str(tmp_path / "work"), {})
        return recorded[0]["fingerprint"]

    before = planned_fingerprint()
    text.write_text("another text")
    assert planned_fingerprint() != before
