"""Documents from the tiny Moby-Dick chapters (one per paragraph), written as shards the way dedup leaves them."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.stage import Manifest
from tests.conftest import DATA


@pytest.fixture(scope="session")
def paragraphs() -> list[dict]:
    """392 documents, 222 kB of text: `id`, `text`."""
    return [{"id": f"{path.stem}/{i}", "text": text} for path in sorted((DATA / "tiny").glob("*.txt"))
            for i, text in enumerate(path.read_text().split("\n\n")) if len(text) > 100]


def dealt(docs: list[dict], num_shards: int) -> list[list[dict]]:
    """`docs` dealt round-robin into `num_shards` shards."""
    return [docs[i::num_shards] for i in range(num_shards)]


def deduped_shards(folder: Path, shards: list[list[dict]]) -> Manifest:
    """The shards as Parquet files: a stand-in for the dedup stage's output."""
    folder.mkdir(parents=True)
    for i, docs in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(docs), folder / f"shard-{i:05d}.parquet")
    return Manifest(stage="dedup", fingerprint=f"{folder.parent.name}-{len(shards)}", path=str(folder))
