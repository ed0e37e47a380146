"""One Prefect server (with basic auth) and one uninterrupted `--until pack` run for the whole reliability suite.

Every fault test compares its outputs with the uninterrupted run, and the security tests grep that run's files and
output for the secrets it had in its environment.
"""

import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# ray.init() without an address joins the cluster named in /tmp/ray/ray_current_cluster when one is alive there
# (another session's `ray start`): these tests always start their own
os.environ.setdefault("RAY_ADDRESS", "local")

from infra.launch import free_port
from tests.reliability.pipeline_runs import TOKENMILL, run_to_end, write_recipe


@dataclass
class Server:
    folder: Path  # the --workdir the server was started with
    port: int
    auth: str
    log: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def command(self, action: str, *extra: str) -> subprocess.CompletedProcess:
        # its own Prefect home: `server start` points that home's profile at this server, and the session's other
        # runs (which name the server with PREFECT_API_URL when they want it) must not be sent there without auth
        env = dict(os.environ, PREFECT_SERVER_API_AUTH_STRING=self.auth, PREFECT_HOME=str(self.folder / "prefect-home"))
        return subprocess.run([str(TOKENMILL), "server", action, "--workdir", str(self.folder), *extra],
                              env=env, cwd=self.folder, capture_output=True, text=True, timeout=180)

    def start(self) -> None:
        done = self.command("start", "--port", str(self.port), "--timeout", "150")
        with self.log.open("a") as log:
            log.write(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        done = self.command("stop")
        with self.log.open("a") as log:
            log.write(done.stdout + done.stderr)


@dataclass
class Baseline:
    workdir: Path
    output: str
    recipe: Path
    env: dict[str, str]
    secrets: dict[str, str]  # name -> the secret part of its value


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefect-server")
    server = Server(folder, free_port(), f"tokenmill:{secrets.token_hex(12)}", folder / "cli.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secret_env(prefect_server) -> tuple[dict[str, str], dict[str, str]]:
    """(environment for a run, name -> secret): auth strings, a cloud key and a database URL with a password."""
    found = {"PREFECT_API_AUTH_STRING": prefect_server.auth.split(":", 1)[1],
             "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
             "DATABASE_URL": secrets.token_hex(10),
             "HF_TOKEN": "hf_" + secrets.token_hex(16)}
    env = dict(os.environ, PREFECT_API_URL=prefect_server.api_url, PREFECT_API_AUTH_STRING=prefect_server.auth,
               PREFECT_SERVER_API_AUTH_STRING=prefect_server.auth, AWS_ACCESS_KEY_ID="AKIATOKENMILLTEST",
               AWS_SECRET_ACCESS_KEY=found["AWS_SECRET_ACCESS_KEY"], HF_TOKEN=found["HF_TOKEN"],
               DATABASE_URL=f"postgresql://tokenmill:{found['DATABASE_URL']}@db.internal:5432/corpus",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env, found


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, secret_env) -> Baseline:
    """The tiny recipe's data stages, uninterrupted."""
    env, found = secret_env
    folder = tmp_path_factory.mktemp("baseline")
    recipe = write_recipe(folder)
    output = run_to_end(recipe, folder / "work", env, folder / "run.log")
    return Baseline(folder / "work", output, recipe, env, found)
