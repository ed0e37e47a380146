"""Shard files and per-shard stats: the units that Ray workers read and write."""

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from infra import storage
from infra.files import atomic_write, partial_path

REJECTED_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                             ("reason", pa.string()), ("detail", pa.string())])


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write under a unique name, then rename: a reader never sees a half-written shard."""
    atomic_write(path, lambda partial: pq.write_table(table, partial, compression="zstd"))


class ShardWriter:
    """Appends rows to a Parquet file batch by batch and renames it into place at the end.

    A worker's memory is one batch however big its shard (or a multi-GB input file), and like
    write_parquet_atomic, a reader never sees a half-written shard. Rows come one by one (`add`) or as
    tables (`write`); each flush is one row group.
    """

    def __init__(self, path: Path, schema: pa.Schema, max_rows: int = 1024, max_chars: int = 64 << 20):
        self.path, self.schema, self.max_rows, self.max_chars = path, schema, max_rows, max_chars
        self.partial = partial_path(path)
        self.rows, self.num_chars = [], 0

    def __enter__(self) -> "ShardWriter":
        # min/max statistics of the text column help no reader, and cost pyarrow five copies of the longest
        # document in memory (a 100 MB document: 1.2 GB to write its shard with them, 0.6 GB without)
        statistics = [name for name in self.schema.names if name != "text"]
        self.writer = pq.ParquetWriter(self.partial, self.schema, compression="zstd", write_statistics=statistics)
        return self

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.num_chars += len(row["text"] or "")
        if len(self.rows) >= self.max_rows or self.num_chars >= self.max_chars:
            self._flush()

    def write(self, table: pa.Table) -> None:
        if self.rows:
            self._flush()
        if table.num_rows:
            self.writer.write_table(table)

    def _flush(self) -> None:
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows, self.num_chars = [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.rows:
            self._flush()
        self.writer.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


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


def parquet_schema(location: str | Path) -> pa.Schema:
    fs, path = storage.filesystem(str(location))
    return pq.read_schema(path, filesystem=fs)


def iter_batches(location: str | Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    fs, path = storage.filesystem(str(location))
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


def rejected_rows(folder: str | Path, reason: str | None = None) -> list[dict]:
    """Rejected documents of a stage output, optionally of one reason."""
    rows = [r for p in shard_paths(folder, "rejected-") for r in read_table(p).to_pylist()]
    return [r for r in rows if reason is None or r["reason"] == reason]
