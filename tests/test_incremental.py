"""Content-addressed re-runs through the real flow (Prefect, Ray): `--until pack`, cached stages, `--force`."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import STAGE_NAMES, app
from flows.pipeline import STAGES

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
        if len(cells) >= 2 and cells[0] in STAGE_NAMES and cells[1] in ("ran", "cached"):
            status[cells[0]] = cells[1]
    return status


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(REPO / "data" / "tiny", folder)
    return folder


def test_cli_knows_the_flows_stages():
    assert STAGE_NAMES == STAGES


def test_reruns_skip_what_did_not_change(corpus, tmp_path, repo_cwd):
    work = tmp_path / "work"
    assert run(work, corpus) == dict.fromkeys(DATA_STAGES, "ran")
    # --until pack stops there: no training
    assert not (work / "pretrain").exists()
    assert run(work, corpus) == dict.fromkeys(DATA_STAGES, "cached")

    # a cleaning threshold changed: clean and what follows recompute, ingest does not
    changed = run(work, corpus, "--set", "clean.min_chars=5000")
    assert changed == {"ingest": "cached"} | dict.fromkeys(DATA_STAGES[1:], "ran")

    # --force dedup: dedup and after rebuild although their fingerprints are unchanged
    forced = run(work, corpus, "--force", "dedup")
    assert forced == {"ingest": "cached", "clean": "cached"} | dict.fromkeys(DATA_STAGES[2:], "ran")

    # and the rejections of the strict run can be read back with their reasons
    shown = CliRunner().invoke(app, ["inspect", "rejected", "--workdir", str(work), "--reason", "too_short",
                                     "--limit", "2", "--width", "40"])
    assert shown.exit_code == 0, shown.output
    assert "clean:too_short=" in shown.output and "min_chars 5000" in shown.output
