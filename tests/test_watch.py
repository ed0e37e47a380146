"""Reprocess on arrival: the corpus watcher's rules, and `tokenmill serve --watch` on a real Prefect server: a file
dropped into the watched folder starts one run of the data deployment, which names the file and reads only it."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli import app
from flows.watch import Watcher
from infra.stage import latest_output
from tests.test_serve import prefect_server, wait_for_deployments  # noqa: F401 - a fixture, used by name

REPO = Path(__file__).resolve().parents[1]


def test_a_file_counts_once_it_is_unchanged_over_two_polls(tmp_path):
    corpus, state = tmp_path / "corpus", str(tmp_path / "state.json")
    corpus.mkdir()
    (corpus / "old.txt").write_text("there before the watcher")
    watcher = Watcher([str(corpus)], state)
    assert watcher.poll() == []  # the first look is the baseline
    (corpus / "new.txt").write_text("half written")
    assert watcher.poll() == []  # seen once: it may still be growing
    with (corpus / "new.txt").open("a") as f:
        f.write(" ... and finished")
    assert watcher.poll() == []  # it changed since: not settled
    assert watcher.poll() == ["corpus/new.txt"]
    watcher.hand_over(["corpus/new.txt"])
    assert watcher.poll() == []
    # a restarted watcher remembers what it handed over; an edit is news again
    again = Watcher([str(corpus)], state)
    assert again.poll() == [] and again.poll() == []
    (corpus / "old.txt").write_text("edited")
    assert again.poll() == [] and again.poll() == ["corpus/old.txt"]


def data_runs(api_url: str) -> list:
    async def query():
        async with get_client() as client:
            return await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["tiny-data"])),
                sort=FlowRunSort.START_TIME_DESC, limit=10)

    with temporary_settings({PREFECT_API_URL: api_url}):
        return asyncio.run(query())


def test_serve_watch_starts_one_data_run_for_a_dropped_file(prefect_server, tmp_path, repo_cwd):  # noqa: F811
    corpus, work = tmp_path / "corpus", tmp_path / "work"
    shutil.copytree(REPO / "data" / "tiny", corpus)
    common = ["-c", "configs/tiny.yaml", "-w", str(work), "--set", f"ingest.paths=[{corpus}]"]
    first = CliRunner().invoke(app, ["run", *common, "--until", "pack"])
    assert first.exit_code == 0, first.output
    env = os.environ | {"PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", *common, "--watch", "--poll", "1"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server}):
            asyncio.run(wait_for_deployments(["tiny-data"], log))
        time.sleep(3)  # the watcher's baseline
        (corpus / "postscript.txt").write_text("Call me Ishmael, once more, and for the last time. " * 40)
        deadline, runs = time.monotonic() + 150, []
        while time.monotonic() < deadline:
            runs = data_runs(prefect_server)
            if runs and runs[0].state and runs[0].state.is_final():
                break
            time.sleep(2)
        assert len(runs) == 1, f"{[r.name for r in runs]}\n{log.read_text()[-3000:]}"
        assert runs[0].state.is_completed(), f"{runs[0].state}\n{log.read_text()[-3000:]}"
        assert runs[0].parameters["changed_files"] == ["corpus/postscript.txt"]
        time.sleep(4)  # more polls: the handed-over file starts nothing more
        assert len(data_runs(prefect_server)) == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    ingest = latest_output(str(work), "ingest")
    assert ingest.counts["units_reused"] >= 1  # only the unit the new file fell into was read
    assert json.loads((work / ".tokenmill" / "watch" / "tiny.json").read_text())["corpus/postscript.txt"]
