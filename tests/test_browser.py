"""What a user sees: after `tokenmill server start` and `tokenmill run` on the tiny recipe, the Prefect UI, opened in a
real headless Chromium, shows the pipeline flow run as Completed and the evaluation report artifact with its headline.

Chromium is Debian's (/usr/bin/chromium), driven through Playwright's Python package; `playwright install` is never
needed. Set TOKENMILL_SAVE_SCREENSHOTS=1 to refresh docs/img/prefect-ui-run.png (the flow run page) and
docs/img/prefect-ui-report.png (the report artifact) from this run.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.cli import app
from infra.launch import free_port

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPORT_KEY = "tokenmill-report"  # the markdown headline the evaluate stage files (tasks/eval/evaluate.py)
PAGE_TIMEOUT_MS = 60_000  # generous for a loaded 2-core machine, bounded so that a broken page cannot hang the suite
PIPELINE_TIMEOUT_S = 900
DOCS_IMG = REPO / "docs" / "img"

pytestmark = pytest.mark.e2e  # the whole tiny pipeline runs first


@pytest.fixture
def chromium():
    """Checked first, so that a machine without Chromium skips before the server and the pipeline cost minutes."""
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium: apt-get install chromium")
    return CHROMIUM


@pytest.fixture
def prefect_server(chromium, tmp_path):
    """`tokenmill server start` on a free port (UI and API), its database in tmp_path; stopped even when the test fails."""
    port = free_port()
    started = CliRunner().invoke(app, ["server", "start", "--workdir", str(tmp_path), "--port", str(port)])
    assert started.exit_code == 0, started.output
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        CliRunner().invoke(app, ["server", "stop", "--workdir", str(tmp_path)])


@pytest.fixture
def finished_run(prefect_server, tmp_path):
    """The whole tiny pipeline, run by the CLI as a user would, against the server; returns what the UI should show."""
    api_url = f"{prefect_server}/api"
    log = tmp_path / "run.log"
    code = run_pipeline(["-c", "configs/tiny.yaml", "-w", str(tmp_path / "work")], api_url, log)
    assert code == 0, log.read_text()[-3000:]
    # ids and names from the API, before the browser starts: the UI is then checked against them
    with temporary_settings({PREFECT_API_URL: api_url}):
        flow_run = latest_pipeline_run()
        report = report_artifact(flow_run.id)
    return {"ui": prefect_server, "flow_run": flow_run, "report": report}


def run_pipeline(args: list[str], api_url: str, log: Path) -> int:
    """`tokenmill run` in its own process group: on a timeout its Ray workers and training ranks are killed with it."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", *args], cwd=REPO,
                                env=os.environ | {"PREFECT_API_URL": api_url}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        return proc.wait(timeout=PIPELINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"`tokenmill run` took over {PIPELINE_TIMEOUT_S} s:\n{log.read_text()[-3000:]}") from None


def latest_pipeline_run():
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])),
                                     sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert runs, "the server recorded no `pipeline` flow run"
    return runs[0]


def report_artifact(pipeline_run_id):
    """The report artifact is filed by the evaluate subflow, a child of the pipeline run."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_KEY])),
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[pipeline_run_id])),
            # the API rejects a null task-run filter, sort or offset: all three given explicitly
            task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, offset=0, limit=1)
    assert found, f"no {REPORT_KEY!r} artifact under pipeline run {pipeline_run_id}"
    return found[0]


@pytest.fixture
def page(chromium, tmp_path):
    """A headless Chromium page; the browser is closed even when an assertion fails."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def shoot(page, path: Path) -> Path:
    """A screenshot once the page settles; the asserts are made before, on the text, so a slow panel only costs looks."""
    with contextlib.suppress(PlaywrightTimeout):  # the UI polls the API: a quiet network is likely, not certain
        page.wait_for_load_state("networkidle", timeout=10_000)
    page.screenshot(path=str(path), full_page=True)
    return path


def save_for_docs(shots: dict[str, Path]) -> None:
    if os.environ.get("TOKENMILL_SAVE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        for name, shot in shots.items():
            shutil.copyfile(shot, DOCS_IMG / name)


def test_ui_shows_the_completed_run_and_its_report(finished_run, page, tmp_path):
    flow_run, report = finished_run["flow_run"], finished_run["report"]
    assert flow_run.state.is_completed(), flow_run.state

    # the flow run's page: its generated name and its state badge
    page.goto(f"{finished_run['ui']}/runs/flow-run/{flow_run.id}")
    page.get_by_text(flow_run.name).first.wait_for()
    page.locator(".state-badge", has_text="Completed").first.wait_for()
    run_shot = shoot(page, tmp_path / "flow-run.png")

    # the report artifact's page: its key and the rendered markdown headline
    page.goto(f"{finished_run['ui']}/artifacts/artifact/{report.id}")
    page.get_by_text(REPORT_KEY).first.wait_for()
    page.get_by_role("heading", name="tokenmill run", exact=True).wait_for()
    page.get_by_text("Validation perplexity of the pretrained model").wait_for()
    report_shot = shoot(page, tmp_path / "report-artifact.png")

    save_for_docs({"prefect-ui-run.png": run_shot, "prefect-ui-report.png": report_shot})
