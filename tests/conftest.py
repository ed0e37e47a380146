import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"

# Each session gets its own Prefect database (the ephemeral API keeps it under PREFECT_HOME),
# and never the user's server: tests assert on the runs they made.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="tokenmill-test-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


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
