"""The tiny recipe through the real flow: Prefect (ephemeral API), Ray, and the DeepSpeed launcher with 2 ranks."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
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
    _, result, _ = tiny_run
    assert result.exit_code == 0, result.output
    assert "report" in result.output and "report.html" in result.output
    for stage in ("ingest", "clean", "dedup", "tokenizer", "pack", "pretrain", "export", "finetune", "sft", "evaluate"):
        assert stage in result.output
    assert "the bag-of-words baseline on spam F1 (difference" in result.output  # the verdict, in words


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
    assert metrics["schema_version"] == 2 and metrics["bootstrap"]["resamples"] == 1000
    assert metrics["headline"]["versus_bow_baseline"] in ("beats", "loses to", "not distinguishable from")
    low, high = metrics["headline"]["val_perplexity_ci95"]
    assert low <= pretrain["val_perplexity"] <= high and 0 < pretrain["val_bits_per_byte"] < 8
    assert set(metrics["per_source"]["sources"]) == {"tiny"}  # the one source of data/tiny
    assert set(metrics["curves"]) == {"pretrain", "finetune", "sft"} and metrics["curves"]["pretrain"]["val"]
    sft = metrics["sft"]
    assert sft["final_train_loss"] < sft["first_train_loss"] and len(sft["samples"]) > 0
    html = find_one(workdir, "evaluate/*/report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "baseline: bow_logreg" in html
    assert "SFT (response tokens only)" in html and "Learning curves" in html and "paired 95% CI" in html


def test_export_loads_in_transformers(tiny_run, ray_local):
    import torch
    import transformers

    workdir, _, _ = tiny_run
    folder = find_one(workdir, "export/*/config.json").parent
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tokenizer("Call me Ishmael.")["input_ids"]])
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    # the SFT stage (LoRA in the tiny recipe, merged) exports its tuned model the same way
    tuned = transformers.AutoModelForCausalLM.from_pretrained(find_one(workdir, "sft/*/hf/config.json").parent)
    # (it has learned to end an answer with EOS, so ask for 3 tokens at least)
    assert tuned.generate(ids, min_new_tokens=3, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3


def test_report_redraws_from_stored_outputs(tiny_run, ray_local):
    workdir, _, _ = tiny_run
    report = find_one(workdir, "evaluate/*/report.html")
    report.unlink()
    result = CliRunner().invoke(app, ["report", str(workdir)])
    assert result.exit_code == 0, result.output
    assert report.exists() and "tokenmill report" in report.read_text()


def test_prefect_recorded_the_run_and_its_artifacts(tiny_run, ray_local):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        TaskRunFilter,
    )
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

    keys = ["tokenmill-report", "tokenmill-stage-stats", "tokenmill-report-html"]

    async def query():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])),
                                          sort=FlowRunSort.START_TIME_DESC, limit=50)
            # each phase (prepare-data, pretrain, finetune, evaluate) is a subflow: the stages' artifacts are filed there
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
                                                flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [r.id for r in runs]}),
                                                task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=50)
            return runs, found

    runs, artifacts = asyncio.run(query())
    assert runs and all(r.state.is_completed() for r in runs), [(r.name, r.state_name, r.state.message) for r in runs]
    assert {a.key for a in artifacts} == set(keys)


def test_unchanged_rerun_is_all_cached(tiny_run, ray_local):
    _, _, rerun = tiny_run
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("cached") >= 10 and " ran " not in rerun.output


def test_the_readme_lm_eval_command_reproduces_the_reported_cloze_score(tiny_run, ray_local):
    workdir, result, _ = tiny_run
    metrics_path = find_one(workdir, "evaluate/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    cloze = metrics["lm_eval"]["tasks"]["tokenmill_heldout_cloze"]
    assert cloze["items"] == metrics["lm_eval"]["cloze_items"] >= 50 and cloze["acc_stderr"] > 0
    assert metrics["headline"]["heldout_cloze_acc"] == cloze["acc"] and "heldout_cloze_acc" in result.output
    assert "lm-evaluation-harness" in metrics_path.with_name("report.html").read_text()
    readme = (REPO / "README.md").read_text().split("### Evaluating the export with lm-evaluation-harness")[1]
    command = readme.split("```bash\n")[1].split("```")[0]  # the README's command, as a user copies it
    script = (command.replace("<workdir>", str(workdir)).replace("<evaluate fp>", metrics_path.parent.name)
              .replace("<export fp>", find_one(workdir, "export/*/config.json").parent.name))
    assert script.strip() == metrics["lm_eval"]["command"]  # the report gives the same command, filled in
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(["bash", "-ec", script], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # lm_eval prints a table: |tokenmill_heldout_cloze|1|none|0|acc|↑|0.2300|±|0.0423|
    printed = re.search(r"tokenmill_heldout_cloze\|[^\n]*?\|acc\s*\|[^|]*\|\s*([0-9.]+)\|", run.stdout)
    assert printed, run.stdout[-3000:]
    assert float(printed.group(1)) == pytest.approx(cloze["acc"], abs=1e-4)
