"""Dedup: remove exact duplicates (same text after case and whitespace folding).

Each shard hashes its documents in parallel; the driver sees only (id, hash) pairs and
keeps the smallest id of each group, so the result does not depend on sharding.
"""

import hashlib
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.parallel import map_shards
from tasks.shards import merge_stats, rejected_table, shard_paths, shard_stats, write_parquet_atomic
from tasks.stage import Manifest, fingerprint, run_stage

VERSION = "1"
_SPACE = re.compile(r"\s+")


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: bool = Field(True, description="drop documents whose normalised text repeats an earlier one")


def exact_key(text: str) -> str:
    return hashlib.sha1(_SPACE.sub(" ", text.casefold()).strip().encode()).hexdigest()


def hash_shard(path: str) -> list[tuple[str, str]]:
    table = pq.read_table(path, columns=["id", "text"])
    return [(doc_id, exact_key(text)) for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist())]


def choose_duplicates(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """id -> id it duplicates, for every document that is not its group's representative (smallest id)."""
    representative: dict[str, str] = {}
    for doc_id, key in sorted(pairs):
        representative.setdefault(key, doc_id)
    return {doc_id: representative[key] for doc_id, key in pairs if representative[key] != doc_id}


def filter_shard(item: tuple[int, str], out_dir: str, duplicate_of: dict[str, str]) -> dict:
    index, path = item
    table = pq.read_table(path)
    is_duplicate = pa.array([doc_id in duplicate_of for doc_id in table.column("id").to_pylist()], type=pa.bool_())
    kept = table.filter(pc.invert(is_duplicate))
    rejected = [{"id": d["id"], "text": d["text"], "source": d["source"], "reason": "exact_duplicate",
                 "detail": f"duplicate of {duplicate_of[d['id']]}"} for d in table.filter(is_duplicate).to_pylist()]
    name = f"shard-{index:05d}"
    write_parquet_atomic(kept, Path(out_dir) / f"{name}.parquet")
    write_parquet_atomic(rejected_table(rejected), Path(out_dir) / f"rejected-{index:05d}.parquet")
    reasons = Counter({"exact_duplicate": len(rejected)}) if rejected else Counter()
    return shard_stats(name, table.num_rows, kept.num_rows, reasons)


def dedup(cleaned: Manifest, cfg: DedupConfig, workdir: Path) -> Manifest:
    fp = fingerprint("dedup", VERSION, cfg.model_dump(mode="json"), [cleaned.fingerprint])

    def build(folder: Path) -> dict:
        shards = [str(p) for p in shard_paths(cleaned.path)]
        pairs = [pair for part in map_shards(hash_shard, shards, "dedup: hash") for pair in part]
        duplicate_of = choose_duplicates(pairs) if cfg.exact else {}
        per_shard = map_shards(filter_shard, list(enumerate(shards)), "dedup: filter", out_dir=str(folder),
                               duplicate_of=duplicate_of)
        counts, stats = merge_stats(per_shard)
        return {"counts": counts, "stats": stats}

    return run_stage(workdir, "dedup", fp, build)


@task(name="dedup", retries=1)
def dedup_task(cleaned: Manifest, cfg: DedupConfig, workdir: Path) -> Manifest:
    return dedup(cleaned, cfg, workdir)
