"""`tokenmill runs` reads recent pipeline runs back from the Prefect API; `tokenmill reprocess` re-runs on a changed
corpus and reuses the ingest shards whose files did not change."""

import asyncio
import re
import shutil
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from typer.testing import CliRunner

from flows import cli
from flows.cli import app
from flows.deploy import headline_of, scope
from infra.launch import free_port
from tasks.stages import stage_names

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 200)  # table cells on one line each, as in a terminal


def stage_status(output: str) -> dict[str, str]:
    """stage -> 'ran' | 'cached', from the summary table `run` and `reprocess` print."""
    status = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 2 and cells[0] in stage_names() and cells[1] in ("ran", "cached"):
            status[cells[0]] = cells[1]
    return status


def test_runs_lists_the_latest_run_with_its_state(tmp_path, repo_cwd, wide_console, ray_local):
    ran = CliRunner().invoke(app, ["run", "-c", TINY, "--workdir", str(tmp_path), "--until", "ingest"])
    assert ran.exit_code == 0, ran.output

    listed = CliRunner().invoke(app, ["runs", "--limit", "3"])
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if "│" in line]
    assert "Completed" in rows[0] and "until ingest" in rows[0]  # newest first


def test_runs_says_when_no_api_answers(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 1
    assert "no Prefect API answers" in result.output and "tokenmill server start" in result.output
    assert "Traceback" not in result.output


def test_headline_and_scope_read_from_the_run():
    table = '[{"metric": "cached", "value": false}, {"metric": "headline.val_perplexity", "value": 41.5}]'
    assert headline_of(table) == {"val_perplexity": 41.5}
    assert scope({"until": "pack", "force": None}) == "until pack"
    assert scope({"until": None, "force": "clean"}) == "all stages force clean"


def test_reprocess_reuses_the_unchanged_ingest_shards(tmp_path, repo_cwd, wide_console, ray_local):
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    shutil.copytree(REPO / "data" / "tiny", corpus)
    first = CliRunner().invoke(app, ["reprocess", "--corpus", str(corpus), "-c", TINY, "-w", str(work), "--until", "pack"])
    assert first.exit_code == 0, first.output

    (corpus / "postscript.txt").write_text("Call me Ishmael, once more. " * 40)
    again = CliRunner().invoke(app, ["reprocess", "--corpus", str(corpus), "-c", TINY, "-w", str(work), "--until", "pack"])
    assert again.exit_code == 0, again.output
    assert stage_status(again.output)["ingest"] == "ran"
    reused, shards = map(int, re.search(r"ingest: (\d+) of (\d+) shards reused", again.output).groups())
    assert 0 < reused < shards  # only the shard the new file fell into was read again

    # --from: rebuild from the tokenizer on, though nothing changed
    forced = CliRunner().invoke(app, ["reprocess", "--corpus", str(corpus), "-c", TINY, "-w", str(work),
                                      "--from", "tokenizer", "--until", "tokenizer"])
    assert forced.exit_code == 0, forced.output
    assert stage_status(forced.output) == {"ingest": "cached", "clean": "cached", "dedup": "cached", "tokenizer": "ran"}

    # in the UI: task runs named by stage and fingerprint, the reused ones in a Completed state named Cached
    states = asyncio.run(latest_stage_states(num_stages=4))
    assert all(re.fullmatch(r"[a-z]+ [0-9a-f]{16}", name) for name in states), states
    assert {name.split()[0]: state for name, state in states.items()} == {
        "ingest": "Cached", "clean": "Cached", "dedup": "Cached", "tokenizer": "Completed"}


def test_reprocess_refuses_a_corpus_that_is_not_there(tmp_path, repo_cwd):
    result = CliRunner().invoke(app, ["reprocess", "--corpus", str(tmp_path / "missing"), "-c", TINY])
    assert result.exit_code == 2 and "ingest.paths[0]: no such file or folder" in result.output


async def latest_stage_states(num_stages: int, timeout: float = 20.0) -> dict[str, str]:
    """task run name -> state name, for the stages of the newest pipeline run (Prefect records them from events)."""
    async with get_client() as client:
        (latest,) = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])),
                                                sort=FlowRunSort.START_TIME_DESC, limit=1)
        deadline = time.monotonic() + timeout
        while True:
            task_runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[latest.id])),
                sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=50)
            states = {t.name: t.state.name for t in task_runs if " " in t.name and t.state and t.state.is_final()}
            if len(states) >= num_stages or time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.5)
