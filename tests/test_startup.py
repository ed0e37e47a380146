"""What `tokenmill run` starts before its flow (flows/startup.py): Prefect's temporary API in its own process, and Ray
only when a data stage will build."""

import os
import sys

import pytest
from prefect import flow, get_client

from flows.startup import TemporaryAPI, builds_data, serving


def test_ray_starts_early_only_when_a_data_stage_builds():
    reuse = {"action": "reuse", "why": []}
    assert builds_data([{"stage": "ingest", **reuse}, {"stage": "clean_signals", "action": "run"}])
    assert builds_data([{"stage": "pack", "action": "run"}])
    assert not builds_data([{"stage": "ingest", **reuse}, {"stage": "pretrain", "action": "run"},
                            {"stage": "evaluate", "action": "run"}])
    assert not builds_data([{"stage": "ingest", **reuse}, {"stage": "pack", **reuse}])


@flow(name="startup-probe")
def probe(x: int) -> int:
    return x + 1


def test_a_flow_runs_on_the_temporary_api_and_the_environment_is_restored(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    api = TemporaryAPI()
    try:
        with serving(api):
            assert os.environ["PREFECT_API_URL"] == api.url
            state = probe(41, return_state=True)
            assert state.result() == 42
            with get_client(sync_client=True) as client:
                assert str(client.api_url).rstrip("/") == api.url
                recorded = client.read_flow_run(state.state_details.flow_run_id)  # there, not on another API
            assert recorded.state.is_completed()
        assert "PREFECT_API_URL" not in os.environ and "PREFECT_UI_URL" not in os.environ
        assert api.process.poll() is None  # kept for a later run in this process
    finally:
        api.stop()
    assert api.process.poll() is not None


def test_an_api_that_dies_at_start_says_so(monkeypatch):
    monkeypatch.setattr(TemporaryAPI, "command", lambda self: [sys.executable, "-c", "raise SystemExit(3)"])
    api = TemporaryAPI()
    with pytest.raises(RuntimeError, match=rf"temporary API on port {api.port} exited with code 3"):
        api.wait(timeout=30)
