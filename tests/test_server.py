"""`tokenmill server`: one real Prefect server started, checked, stopped; a non-loopback bind without auth refused."""

import contextlib
import json
import os
import signal
import urllib.request

import pytest
import typer
from typer.testing import CliRunner

from flows.server import health_ok, is_loopback, process_alive, server_api_url, server_app
from infra.launch import free_port

runner = CliRunner()


def cli() -> typer.Typer:
    """The main CLI registers server_app the same way."""
    app = typer.Typer()
    app.add_typer(server_app, name="server")
    return app


def invoke(*args: str):
    return runner.invoke(cli(), ["server", *args])


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    pid_file = tmp_path / "server" / "server.pid"
    if pid_file.exists():  # a failed assertion must not leave a server behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def test_start_status_stop(workdir, monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"

    started = invoke("start", "--workdir", str(workdir), "--port", str(port))
    assert started.exit_code == 0, started.output
    assert f"export PREFECT_API_URL={api_url}" in started.output
    assert f"http://127.0.0.1:{port}" in started.output
    pid = int((workdir / "server" / "server.pid").read_text())
    assert health_ok(api_url)
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{api_url}/admin/version") as response:
        assert json.loads(response.read()).startswith("3.")
    assert (workdir / "server" / "prefect.db").exists()  # SQLite under the workdir, not in ~/.prefect
    assert server_api_url(workdir) == api_url

    status = invoke("status", "--workdir", str(workdir))
    assert status.exit_code == 0, status.output
    assert f"pid {pid}" in status.output and "healthy" in status.output and api_url in status.output

    again = invoke("start", "--workdir", str(workdir), "--port", str(port))
    assert again.exit_code == 0 and "already running" in again.output

    stopped = invoke("stop", "--workdir", str(workdir))
    assert stopped.exit_code == 0, stopped.output
    assert not process_alive(pid)
    assert not (workdir / "server" / "server.pid").exists()
    assert not health_ok(api_url)
    assert server_api_url(workdir) is None

    after = invoke("status", "--workdir", str(workdir))
    assert after.exit_code == 1 and "not running" in after.output
    assert "not running" in invoke("stop", "--workdir", str(workdir)).output


def test_non_loopback_bind_without_auth_is_refused(workdir, monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    result = invoke("start", "--workdir", str(workdir), "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "PREFECT_SERVER_API_AUTH_STRING" in result.output
    assert not (workdir / "server").exists()


def test_wrong_database_scheme_is_refused(workdir):
    result = invoke("start", "--workdir", str(workdir), "--database-url", "postgresql://u:secret@db/prefect")
    assert result.exit_code == 2
    assert "--database-url" in result.output and "postgresql+asyncpg" in result.output
    assert not (workdir / "server").exists()


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("0.0.0.0", False), ("10.0.0.5", False), ("myhost", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
