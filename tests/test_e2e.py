"""The tiny recipe through the real flow: Prefect (ephemeral API), Ray, and the DeepSpeed launcher with 2 ranks."""

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import os
    from pathlib import Path

    workdir = tmp_path_factory.mktemp("tiny-run")
    cwd = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[1])
    try:
        result = CliRunner().invoke(app, ["run", "--config", "configs/tiny.yaml", "--workdir", str(workdir)])
        rerun = CliRunner().invoke(app, ["run", "--config", "configs/tiny.yaml", "--workdir", str(workdir)])
    finally:
        os.chdir(cwd)
    return workdir, result, rerun


def find_one(workdir, pattern):
    (path,) = [p for p in workdir.glob(pattern) if ".partial" not in str(p)]
    return path


def test_pipeline_runs_and_prints_report_metrics_and_timings(tiny_run, ray_local):
    workdir, result, _ = tiny_run
    assert result.exit_code == 0, result.output
    assert "report" in result.output and "report.html" in result.output
    for stage in ("ingest", "clean", "dedup", "tokenizer", "pack", "pretrain", "finetune", "evaluate"):
        assert stage in result.output


def test_report_and_metrics_hold_real_numbers(tiny_run, ray_local):
    workdir, _, _ = tiny_run
    metrics = json.loads(find_one(workdir, "evaluate/*/metrics.json").read_text())
    pretrain = metrics["pretrain"]
    assert pretrain["final_train_loss"] < pretrain["first_train_loss"]  # pretraining loss fell
    assert 1 < pretrain["val_perplexity"] < 512  # better than uniform over the 512-token vocab
    cls = metrics["classification"]
    assert cls["labels"] == ["ham", "spam"] and cls["test_examples"] > 500
    assert cls["baselines"]["majority"]["per_class"]["spam"]["f1"] == 0.0
    assert cls["model"]["per_class"]["spam"]["f1"] > 0.3  # learned something in 40 steps
    assert sum(map(sum, cls["model"]["confusion"])) == cls["test_examples"]
    for stage, counts in metrics["data"].items():
        assert counts["docs_in"] == counts["kept"] + counts["rejected"], stage
    html = find_one(workdir, "evaluate/*/report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "baseline: bow_logreg" in html


def test_unchanged_rerun_is_all_cached(tiny_run, ray_local):
    _, _, rerun = tiny_run
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("cached") >= 8 and " ran " not in rerun.output
