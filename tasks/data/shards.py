"""Shard files and per-shard stats: the units that Ray workers read and write."""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from infra import storage
from infra.files import atomic_write

REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string())])


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write under a unique name, then rename: a reader never sees a half-written shard."""
    atomic_write(path, lambda partial: pq.write_table(table, partial, compression="zstd"))


def rejected_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)


def shard_stats(shard: str, docs_in: int, kept: int, reasons: Counter, **extra) -> dict:
    rejected = sum(reasons.values())
    if docs_in != kept + rejected:  # our own invariant: every document is kept or rejected
        raise AssertionError(f"{shard}: {docs_in} in != {kept} kept + {rejected} rejected")
    return {"shard": shard, "docs_in": docs_in, "kept": kept, "rejected": rejected, "reasons": dict(reasons), **extra}


def merge_stats(per_shard: list[dict]) -> tuple[dict[str, int], dict]:
    """Sum per-shard stats into stage counts and a rejection-reason breakdown."""
    counts = Counter()
    reasons = Counter()
    for s in per_shard:
        counts.update({k: v for k, v in s.items() if isinstance(v, int)})
        reasons.update(s["reasons"])
    return dict(counts), {"rejected_by_reason": dict(sorted(reasons.items())), "num_shards": len(per_shard)}


def shard_paths(folder: str | Path, prefix: str = "shard-") -> list[str]:
    """The shard files of a stage output (a local folder or a URL), in name order."""
    return storage.glob(str(folder), f"{prefix}*.parquet")


def read_table(location: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet shard from a local path or any storage URL, streamed from the store (no local copy)."""
    fs, path = storage.filesystem(str(location))
    return pq.read_table(path, columns=columns, filesystem=fs)


def iter_batches(location: str | Path, batch_size: int, columns: list[str]) -> Iterator[pa.RecordBatch]:
    fs, path = storage.filesystem(str(location))
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


def rejected_rows(folder: str | Path, reason: str | None = None) -> list[dict]:
    """Rejected documents of a stage output, optionally of one reason."""
    rows = [r for p in shard_paths(folder, "rejected-") for r in read_table(p).to_pylist()]
    return [r for r in rows if reason is None or r["reason"] == reason]
