"""Dedup: exact duplicates (normalised-text hash), then near duplicates (MinHash LSH).

Workers hash their shard's documents: a sha1 of the folded text, and the MinHash
signature of its word 5-grams cut into LSH bands (FineWeb's 14 bands x 8 rows by
default). The driver sees only ids and band keys, joins every pair of documents that
share a band into clusters, and keeps the smallest id of each cluster. Because the kept
representative depends on ids alone, the result is the same for any shard or worker count.

Band keys are cached per input shard under <workdir>/dedup/.signatures/, addressed by the
shard's content and the MinHash settings: when new files arrive, only their shards are
hashed again.
"""

import hashlib
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rensa
from pydantic import BaseModel, ConfigDict, Field

from infra import storage
from infra.ray_map import map_shards
from infra.stage import Manifest, fingerprint, output_location, run_stage
from tasks.data.decontam import (
    DecontaminateConfig,
    contaminated_by,
    finetune_test_texts,
    read_texts,
    reference_index,
)
from tasks.data.labelled import LabelledData
from tasks.data.shards import (
    merge_stats,
    read_table,
    rejected_table,
    shard_paths,
    shard_stats,
    write_parquet_atomic,
)

VERSION = "3"
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


class MinHashConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ngram: int = Field(5, ge=1, description="word n-grams (shingles)")
    bands: int = Field(14, ge=1, description="LSH bands; two documents are candidates if any band matches")
    rows: int = Field(8, ge=1, description="MinHash values per band (bands x rows permutations in all)")
    seed: int = 1


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: bool = Field(True, description="drop documents whose normalised text repeats another's")
    minhash: MinHashConfig = MinHashConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()


def exact_key(text: str) -> str:
    return hashlib.sha1(_SPACE.sub(" ", text.casefold()).strip().encode()).hexdigest()


def shingles(text: str, n: int) -> list[str]:
    words = _WORD.findall(text.casefold())
    return [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))] if words else [""]


def band_keys(texts: list[str], cfg: MinHashConfig) -> np.ndarray:
    """(docs, bands) uint64: a hash of each band of each document's MinHash signature."""
    if not texts:
        return np.zeros((0, cfg.bands), dtype=np.uint64)
    matrix = rensa.RMinHash.digest_matrix_from_token_sets([shingles(t, cfg.ngram) for t in texts],
                                                          cfg.bands * cfg.rows, cfg.seed)
    signatures = np.asarray(matrix.to_rows(), dtype=np.uint64).reshape(len(texts), cfg.bands, cfg.rows)
    # fold each band's rows into one 64-bit key (FNV-style mixing; collisions only add candidates)
    key = np.full((len(texts), cfg.bands), 1469598103934665603, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(cfg.rows):
            key = (key ^ signatures[:, :, r]) * np.uint64(1099511628211)
    return key


def hash_shard(path: str, cfg: DedupConfig, cache_dir: str) -> dict:
    """ids, exact keys and band keys of one shard; band keys come from the cache when the shard was seen before."""
    table = read_table(path, columns=["id", "text"])
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    result = {"ids": ids, "exact": [exact_key(t) for t in texts], "bands": None, "cached": False}
    if cfg.minhash.enabled:
        cache = storage.join(cache_dir, f"{signature_key(path, cfg.minhash)}.npy")
        if storage.exists(cache):
            result["bands"], result["cached"] = np.load(io.BytesIO(storage.read_bytes(cache))), True
        else:
            result["bands"] = band_keys(texts, cfg.minhash)
            buffer = io.BytesIO()
            np.save(buffer, result["bands"])
            storage.write_bytes(cache, buffer.getvalue())
    return result


def signature_key(shard: str, cfg: MinHashConfig) -> str:
    return fingerprint("minhash", VERSION, cfg.model_dump(mode="json"), [storage.digest(shard)])


class Clusters:
    """Union-find over document indices; each root is the smallest index in its cluster."""

    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def choose_duplicates(ids: list[str], exact: list[str], bands: np.ndarray | None) -> dict[str, tuple[str, str]]:
    """id -> (reason, id it duplicates) for every document that is not its cluster's smallest id."""
    order = sorted(range(len(ids)), key=ids.__getitem__)  # index in this order == rank of the id
    rank = {ids[i]: r for r, i in enumerate(order)}
    exact_rep: dict[str, int] = {}
    duplicates: dict[str, tuple[str, str]] = {}
    for i in order:
        first = exact_rep.setdefault(exact[i], i)
        if first != i:
            duplicates[ids[i]] = ("exact_duplicate", ids[first])
    if bands is None:
        return duplicates
    clusters = Clusters(len(ids))
    for b in range(bands.shape[1]):
        first_in_bucket: dict[int, int] = {}
        for i in order:
            other = first_in_bucket.setdefault(int(bands[i, b]), rank[ids[i]])
            clusters.union(other, rank[ids[i]])
    for i in order:
        root = clusters.find(rank[ids[i]])
        if ids[i] not in duplicates and root != rank[ids[i]]:
            duplicates[ids[i]] = ("near_duplicate", ids[order[root]])
    return duplicates


def filter_shard(item: tuple[int, str], out_dir: str, duplicate_of: dict[str, tuple[str, str]],
                 test_ngrams: dict[int, str], ngram: int) -> dict:
    """Drop the shard's duplicates, then documents that share an n-gram with a test text; the files land in
    `out_dir`, a local folder or a URL."""
    index, path = item
    table = read_table(path)
    reasons = {}
    for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist()):
        if doc_id in duplicate_of:
            reason, other = duplicate_of[doc_id]
            reasons[doc_id] = (reason, f"duplicate of {other}")
        elif source := contaminated_by(text, test_ngrams, ngram):
            reasons[doc_id] = ("contaminated", f"shares a {ngram}-gram with {source}")
    dropped = pa.array([doc_id in reasons for doc_id in table.column("id").to_pylist()], type=pa.bool_())
    kept = table.filter(pc.invert(dropped))
    rejected = [{"id": d["id"], "text": d["text"], "source": d["source"], "reason": reasons[d["id"]][0],
                 "detail": reasons[d["id"]][1]} for d in table.filter(dropped).to_pylist()]
    name = storage.name_of(path).removesuffix(".parquet")  # the input shard's name: names stay stable from stage to stage
    with storage.writing(out_dir) as local:
        write_parquet_atomic(kept, local / f"{name}.parquet")
        write_parquet_atomic(rejected_table(rejected), local / f"rejected-{name.removeprefix('shard-')}.parquet")
    return shard_stats(name, table.num_rows, kept.num_rows, Counter(r["reason"] for r in rejected))


def test_texts(cfg: DecontaminateConfig, finetune_cfg: LabelledData | None = None) -> list[tuple[str, str]]:
    """The texts pretraining must not contain: the fine-tune test split and the configured files."""
    if not cfg.enabled:
        return []
    named = finetune_test_texts(finetune_cfg) if cfg.finetune_test and finetune_cfg is not None else []
    return named + [t for path in cfg.paths for t in read_texts(path, cfg.text_column)]


def dedup(cleaned: Manifest, cfg: DedupConfig, workdir: str, finetune: LabelledData | None = None) -> Manifest:
    """`finetune` (the recipe's fine-tune settings) names the test split that decontamination protects."""
    references = test_texts(cfg.decontaminate, finetune)
    reference_digest = hashlib.sha256("\x00".join(text for _, text in references).encode()).hexdigest()
    fp = fingerprint("dedup", VERSION, cfg.model_dump(mode="json"), [cleaned.fingerprint, reference_digest])
    cache_dir = storage.join(workdir, "dedup", ".signatures")

    def build(folder: Path) -> dict:
        shards = shard_paths(cleaned.root)
        hashed = map_shards(hash_shard, shards, "dedup: hash", cfg=cfg, cache_dir=cache_dir)
        ids = [i for h in hashed for i in h["ids"]]
        exact = [k if cfg.exact else f"doc:{n}" for n, k in enumerate(k for h in hashed for k in h["exact"])]
        bands = np.concatenate([h["bands"] for h in hashed]) if cfg.minhash.enabled and hashed else None
        duplicate_of = choose_duplicates(ids, exact, bands)
        test_ngrams = reference_index(references, cfg.decontaminate.ngram)
        per_shard = map_shards(filter_shard, list(enumerate(shards)), "dedup: filter", out_dir=output_location(),
                               duplicate_of=duplicate_of, test_ngrams=test_ngrams, ngram=cfg.decontaminate.ngram)
        counts, stats = merge_stats(per_shard)
        counts |= {"signature_shards_reused": sum(h["cached"] for h in hashed),
                   "signature_shards_computed": sum(cfg.minhash.enabled and not h["cached"] for h in hashed)}
        return {"counts": counts, "stats": stats | {"test_texts": len(references), "test_ngrams": len(test_ngrams)}}

    return run_stage(workdir, "dedup", fp, build)
