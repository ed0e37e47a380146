import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

# Prefect keeps its ephemeral database under PREFECT_HOME: keep tests out of the user's.
os.environ.setdefault("PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / "tokenmill-test-prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session: starting it costs seconds."""
    import ray

    from infra.ray_runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def repo_cwd(monkeypatch):
    """Recipes name paths relative to the repository root, as `make demo` runs them."""
    monkeypatch.chdir(REPO)
    return REPO
