"""`tokenmill server`: one real Prefect server started with a --workdir, found by fresh processes through the Prefect
profile (the plain `prefect` CLI and `tokenmill runs`), stopped with the profile's old PREFECT_API_URL restored;
a non-loopback bind without auth and a wrong database scheme refused."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.server import STATE_FILE, health_ok, is_loopback, server_app
from infra.launch import free_port

BIN = Path(sys.executable).parent
OLD_URL = "http://127.0.0.1:9/api"  # what the profile held before: nothing listens there


@pytest.fixture
def home(tmp_path):
    """A Prefect home of its own, with an active profile `dev` that already names an API: the user's profile is
    never touched. Yields the environment for the subprocesses."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text(f'active = "dev"\n\n[profiles.dev]\nPREFECT_API_URL = "{OLD_URL}"\n')
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_API_AUTH_STRING")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    yield env
    if (home / "server.pid").exists():  # a failed assertion must not leave a server behind
        subprocess.run([BIN / "prefect", "server", "stop"], check=False, env=env, capture_output=True, timeout=60)


def sh(env: dict[str, str], cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def profile_url(env: dict[str, str]) -> str | None:
    profiles = tomllib.loads((Path(env["PREFECT_HOME"]) / "profiles.toml").read_text())
    return profiles["profiles"]["dev"].get("PREFECT_API_URL")


def test_start_is_found_by_later_commands_and_stop_restores_the_profile(home, tmp_path):
    workdir, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"

    started = sh(home, elsewhere, "tokenmill", "server", "start", "--workdir", str(workdir), "--port", str(port))
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"PREFECT_API_URL={api_url} in Prefect profile 'dev'" in started.stdout
    assert health_ok(api_url)
    assert (workdir / "server" / "prefect.db").exists()  # SQLite under the workdir, not in PREFECT_HOME
    assert profile_url(home) == api_url

    # fresh processes, another cwd, no --workdir: the plain prefect CLI and tokenmill both land on this server
    view = sh(home, elsewhere, "prefect", "config", "view")
    assert f"PREFECT_API_URL='{api_url}' (from profile)" in view.stdout, view.stdout + view.stderr
    runs = sh(home, elsewhere, "tokenmill", "runs")
    assert runs.returncode == 0 and f"no pipeline runs recorded at {api_url}" in runs.stdout, runs.stdout + runs.stderr
    status = sh(home, elsewhere, "tokenmill", "server", "status", "--workdir", str(workdir))
    assert status.returncode == 0 and f"healthy: PREFECT_API_URL={api_url}" in status.stdout, status.stdout
    again = sh(home, elsewhere, "tokenmill", "server", "start", "--port", str(free_port()))
    assert again.returncode == 0 and f"already running: PREFECT_API_URL={api_url}" in again.stdout, again.stdout
    other_home = home | {"PREFECT_HOME": str(tmp_path / "other-home")}  # its /health must not pass for ours
    taken = sh(other_home, elsewhere, "tokenmill", "server", "start", "--workdir", str(workdir), "--port", str(port))
    assert taken.returncode == 1 and f"127.0.0.1:{port} is already in use" in taken.stdout, taken.stdout

    stopped = sh(home, elsewhere, "tokenmill", "server", "stop")
    assert stopped.returncode == 0 and "Server stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert not health_ok(api_url)
    assert profile_url(home) == OLD_URL  # the value from before `start` is back
    assert not any((Path(home["PREFECT_HOME"]) / name).exists() for name in ("server.pid", STATE_FILE))
    after = sh(home, elsewhere, "tokenmill", "server", "status")
    assert after.returncode == 1 and f"not answering /health: PREFECT_API_URL={OLD_URL}" in after.stdout, after.stdout


def invoke(*args: str):
    app = typer.Typer()  # the main CLI registers server_app the same way
    app.add_typer(server_app, name="server")
    return CliRunner().invoke(app, ["server", *args])


def test_non_loopback_bind_without_auth_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    result = invoke("start", "--workdir", str(tmp_path), "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "non-loopback" in result.output and "PREFECT_SERVER_API_AUTH_STRING" in result.output
    assert not (tmp_path / "server").exists()


def test_wrong_database_scheme_is_refused(tmp_path):
    result = invoke("start", "--workdir", str(tmp_path), "--database-url", "postgresql://u:secret@db/prefect")
    assert result.exit_code == 2
    assert "--database-url" in result.output and "postgresql+asyncpg" in result.output
    assert "secret" not in result.output
    assert not (tmp_path / "server").exists()


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("0.0.0.0", False), ("10.0.0.5", False), ("myhost", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
