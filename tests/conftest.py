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
# Prefect's temporary API gives up after 20 s; on a loaded 2-core machine its first start (a fresh database to
# migrate) has taken longer, and a run then fails before any stage. Subprocess runs inherit this too.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Prefect binds its console log handler to the stderr of the moment it first loads. `tokenmill` loads it lazily,
# so without this the first CliRunner invocation would own it, and every later run in this process would log to
# that invocation's closed capture stream (and recurse through Prefect's print patching).
import prefect.main  # noqa: E402,F401 - runs Prefect's logging setup now


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


def sotu_speeches() -> list[dict]:
    """The State of the Union addresses bundled in data/corpus.parquet (the same texts as the shared
    corpora's sotu.jsonl, which a clone may not have beside it), oldest first: `id`, `text`."""
    import pyarrow.parquet as pq

    rows = pq.read_table(DATA / "corpus.parquet", columns=["id", "text", "source"]).to_pylist()
    return sorted(({"id": r["id"], "text": r["text"]} for r in rows if r["source"] == "sotu"), key=lambda r: r["id"])


# The shared real corpora sit beside the checkout (see their PROVENANCE.md); a clone without them uses the
# sample of mails copied from them into tests/fixtures.
SHARED_SPAM_ASSASSIN = REPO.parent / "shared" / "corpora" / "spam_assassin"
SPAM_ASSASSIN = SHARED_SPAM_ASSASSIN if SHARED_SPAM_ASSASSIN.is_dir() else REPO / "tests" / "fixtures" / "spam_assassin_sample"
