"""`tokenmill serve` on a real Prefect server: three deployments registered with the recipe's schedules, and the
data deployment, started through the API, runs to COMPLETED and files a stats table per data stage."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactSort, DeploymentSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli import app
from flows.config import ConfigError, load_config
from infra.launch import free_port

REPO = Path(__file__).resolve().parents[1]
DATA_STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack"]
SCHEDULE = 'schedules=[{deployment: train, cron: "0 4 * * 0", timezone: Europe/Berlin}]'


@pytest.fixture
def prefect_server(tmp_path):
    """`tokenmill server start` on a free port, its SQLite database in tmp_path; stopped afterwards."""
    port = free_port()
    started = CliRunner().invoke(app, ["server", "start", "--workdir", str(tmp_path), "--port", str(port)])
    assert started.exit_code == 0, started.output
    yield f"http://127.0.0.1:{port}/api"
    CliRunner().invoke(app, ["server", "stop", "--workdir", str(tmp_path)])


@pytest.fixture
def serving(prefect_server, tmp_path):
    """`tokenmill serve` on the tiny recipe in a subprocess (its own process group: the flow runs it starts go too)."""
    env = os.environ | {"PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "-c", "configs/tiny.yaml",
                                 "-w", str(tmp_path / "work"), "--set", SCHEDULE],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    yield prefect_server, tmp_path / "work", log
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def wait_for_deployments(names: list[str], log: Path, timeout: float = 90.0) -> dict:
    async with get_client() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {d.name: d for d in await client.read_deployments(sort=DeploymentSort.NAME_ASC, limit=20)}
            if set(names) <= set(found):
                return found
            await asyncio.sleep(1)
    raise AssertionError(f"deployments {names} not registered within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


async def artifact_keys(flow_run_id) -> set[str]:
    """Keys of the artifacts filed by a flow run and its subflows (each phase of the pipeline is one)."""
    async with get_client() as client:
        keys = set()
        for runs in (FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                     FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))):
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(), flow_run_filter=runs,
                                                task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=50)
            keys |= {a.key for a in found}
        return keys


def test_data_deployment_runs_through_the_api(serving):
    api_url, work, log = serving
    names = ["tiny-full", "tiny-data", "tiny-train"]
    with temporary_settings({PREFECT_API_URL: api_url}):
        deployments = asyncio.run(wait_for_deployments(names, log))
        assert [s.schedule.cron for s in deployments["tiny-train"].schedules] == ["0 4 * * 0"]
        assert deployments["tiny-data"].schedules == [] and deployments["tiny-data"].parameters["until"] == "pack"

        flow_run = run_deployment("pipeline/tiny-data", timeout=150, poll_interval=2)
        assert flow_run.state.is_completed(), f"{flow_run.state}\n{log.read_text()[-3000:]}"
        keys = asyncio.run(artifact_keys(flow_run.id))
    assert {f"tokenmill-{stage}-stats" for stage in DATA_STAGES} <= keys
    assert (work / "pack").is_dir() and not (work / "pretrain").exists()  # data only


def test_serve_needs_a_server(monkeypatch, repo_cwd):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr("flows.cli.server_api_url", lambda: None)
    result = CliRunner().invoke(app, ["serve", "-c", "configs/tiny.yaml"])
    assert result.exit_code == 2 and "tokenmill server start" in result.output


@pytest.mark.parametrize(("schedule", "expected"), [
    ('{deployment: data, cron: "0 25 * * *"}', "schedules.0.cron: '0 25 * * *' is not a cron expression"),
    ('{deployment: nightly, cron: "0 3 * * *"}', "schedules.0.deployment: Input should be 'full', 'data' or 'train'"),
    ('{deployment: data, cron: "0 3 * * *", timezone: Mars/Olympus}', "schedules.0.timezone: 'Mars/Olympus' is not an IANA"),
])
def test_schedule_mistakes_name_the_field(repo_cwd, schedule, expected):
    with pytest.raises(ConfigError) as err:
        load_config(Path("configs/tiny.yaml"), [f"schedules=[{schedule}]"])
    assert expected in str(err.value)
