"""Content-addressed re-runs through the real flow (Prefect, Ray): `--until pack`, cached stages, `--force`."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.stages import stage_names

REPO = Path(__file__).resolve().parents[1]
DATA_STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack"]


def run(workdir: Path, corpus: Path, *extra: str) -> dict[str, str]:
    """`tokenmill run --until pack`; returns stage -> 'ran' | 'cached' from the manifests the flow returned."""
    result = CliRunner().invoke(app, ["run", "-c", str(REPO / "configs" / "tiny.yaml"), "--workdir", str(workdir),
                                      "--until", "pack", "--set", f"ingest.paths=[{corpus}]", *extra])
    assert result.exit_code == 0, result.output
    status = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 2 and cells[0] in stage_names() and cells[1] in ("ran", "cached"):
            status[cells[0]] = cells[1]
    return status


def plan(workdir: Path, corpus: Path, *extra: str) -> dict[str, tuple[str, list[str]]]:
    """`tokenmill plan --until pack --json`: stage -> (reuse | run, why)."""
    result = CliRunner().invoke(app, ["plan", "-c", str(REPO / "configs" / "tiny.yaml"), "--workdir", str(workdir),
                                      "--until", "pack", "--set", f"ingest.paths=[{corpus}]", "--json", *extra])
    assert result.exit_code == 0, result.output
    return {entry["stage"]: (entry["action"], entry["why"]) for entry in json.loads(result.output)}


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(REPO / "data" / "tiny", folder)
    return folder


def test_reruns_skip_what_did_not_change(corpus, tmp_path, repo_cwd):
    work = tmp_path / "work"
    assert run(work, corpus) == dict.fromkeys(DATA_STAGES, "ran")
    # --until pack stops there: no training
    assert not (work / "pretrain").exists()
    assert run(work, corpus) == dict.fromkeys(DATA_STAGES, "cached")
    assert {action for action, _ in plan(work, corpus).values()} == {"reuse"}

    # a cleaning threshold changed: the plan says so, then clean and what follows recompute, ingest does not
    planned = plan(work, corpus, "--set", "clean.min_chars=5000")
    assert planned["ingest"][0] == planned["clean_signals"][0] == "reuse"
    assert planned["clean"] == ("run", ["config min_chars: 200 -> 5000"])
    assert planned["dedup"][0] == "run" and planned["dedup"][1][0].startswith("input from clean is a new output")
    changed = run(work, corpus, "--set", "clean.min_chars=5000")
    assert changed == {"ingest": "cached"} | dict.fromkeys(DATA_STAGES[1:], "ran")

    # --force dedup: dedup and after rebuild although their fingerprints are unchanged
    forced = run(work, corpus, "--force", "dedup")
    assert forced == {"ingest": "cached", "clean": "cached"} | dict.fromkeys(DATA_STAGES[2:], "ran")
    # ... and so do their per-unit caches: a forced stage trusts no cached signature or token unit
    from infra.stage import latest_output

    assert latest_output(str(work), "dedup").counts["signature_shards_reused"] == 0
    assert latest_output(str(work), "pack").counts["units_reused"] == 0

    # and the rejections of the strict run can be read back with their reasons
    shown = CliRunner().invoke(app, ["inspect", "rejected", "--workdir", str(work), "--reason", "too_short",
                                     "--limit", "2", "--width", "40"])
    assert shown.exit_code == 0, shown.output
    assert "clean:too_short=" in shown.output and "min_chars 5000" in shown.output
    # the manifest of what ran keeps the reason the plan gave
    assert latest_output(str(work), "clean").why == ["config min_chars: 200 -> 5000"]


def test_the_plan_names_a_changed_module_library_and_file(corpus, tmp_path, repo_cwd, monkeypatch):
    import tasks.data.dedup
    from infra.code_hash import StageCode

    work = tmp_path / "work"
    run(work, corpus)
    real = tasks.data.dedup.CODE
    edited = StageCode("0" * 16)  # as if dedup.py had been edited and rensa upgraded
    edited.modules, edited.libraries = real.modules | {"tasks.data.dedup": "edited"}, real.libraries | {"rensa": "9.9"}
    monkeypatch.setattr(tasks.data.dedup, "CODE", edited)
    planned = plan(work, corpus)
    assert planned["clean"][0] == "reuse" and planned["tokenizer"][0] == planned["pack"][0] == "run"
    assert planned["dedup"] == ("run", ["code tasks.data.dedup changed", f"library rensa {real.libraries['rensa']} -> 9.9"])
    monkeypatch.undo()

    with (corpus / "chapter_1.txt").open("a") as f:
        f.write("\nA new last line.\n")
    planned = plan(work, corpus)
    assert planned["ingest"] == ("run", [f"input file {corpus.name}/chapter_1.txt is not hashed yet (new size or mtime)"])


def data_stages(workdir: Path, corpus: Path, tokenizer: Path) -> dict:
    """The flow's data stages with a given tokenizer, so that tokenization depends on shard bytes alone."""
    from flows.config import load_config
    from flows.pipeline import pipeline

    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"ingest.paths=[{corpus}]", f"tokenizer.path={tokenizer}", "pack.val_fraction=0.3"], workdir)
    return pipeline(cfg, until="pack")


def computed(manifest) -> int:
    return manifest.stats["num_shards"] - manifest.counts["units_reused"]


def test_added_files_run_alone_through_the_map_stages(tmp_path, repo_cwd):
    from tasks.data.tokenizer import TokenizerConfig, save_tokenizer, train_bpe

    chapters = sorted((REPO / "data" / "tiny").glob("*.txt"))
    tokenizer_dir = tmp_path / "tok"
    tokenizer_dir.mkdir()
    save_tokenizer(train_bpe((p.read_text() for p in chapters), TokenizerConfig(vocab_size=512)), tokenizer_dir)
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    corpus.mkdir()
    for path in chapters[:18]:
        shutil.copy(path, corpus / path.name)
    first = data_stages(work, corpus, tokenizer_dir / "tokenizer.json")
    for path in chapters[18:]:
        shutil.copy(path, corpus / path.name)
    second = data_stages(work, corpus, tokenizer_dir / "tokenizer.json")

    assert second["ingest"].counts["docs_in"] == 24 and first["ingest"].counts["docs_in"] == 18
    new_units = computed(second["ingest"])
    # the added files fall into a few content-defined batches; the other batches come from the cache
    assert 1 <= new_units < second["ingest"].stats["num_shards"]
    # clean measures and filters those shards alone; dedup re-hashes only them
    assert 1 <= computed(second["clean"]) <= new_units
    assert second["dedup"].counts["signature_shards_computed"] <= new_units
    assert second["dedup"].counts["signature_shards_reused"] >= second["dedup"].stats["num_shards"] - new_units
    # tokenization: old shards whose kept documents did not change are linked, not re-tokenized
    assert 1 <= computed(second["pack"]) <= new_units
    assert second["pack"].counts["train_blocks"] > first["pack"].counts["train_blocks"]
