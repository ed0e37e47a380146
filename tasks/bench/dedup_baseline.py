"""Dedup as it was before the exchanges (frozen for `scripts/bench_scale.py`; no stage uses it).

Workers hashed their shards, but the driver gathered every id, exact key and the whole N x 14 band
matrix, clustered them with a pure-Python union-find without verifying candidates, and shipped the
whole duplicate dict to every filter task. Kept to measure the new stage against it in one run.
"""

import numpy as np
import rensa

from infra.ray_map import map_shards
from tasks.data.dedup import (
    DedupConfig,
    MinHashConfig,
    exact_key,
    filter_shard,
    shingles,
)
from tasks.data.shards import read_table, shard_paths


def band_keys(texts: list[str], cfg: MinHashConfig) -> np.ndarray:
    if not texts:
        return np.zeros((0, cfg.bands), dtype=np.uint64)
    matrix = rensa.RMinHash.digest_matrix_from_token_sets([shingles(t, cfg.ngram) for t in texts],
                                                          cfg.bands * cfg.rows, cfg.seed)
    signatures = np.asarray(matrix.to_rows(), dtype=np.uint64).reshape(len(texts), cfg.bands, cfg.rows)
    key = np.full((len(texts), cfg.bands), 1469598103934665603, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(cfg.rows):
            key = (key ^ signatures[:, :, r]) * np.uint64(1099511628211)
    return key


def hash_shard(path: str, cfg: DedupConfig) -> dict:
    table = read_table(path, columns=["id", "text"])
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    return {"ids": ids, "exact": [exact_key(t) for t in texts], "bands": band_keys(texts, cfg.minhash)}


class Clusters:
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


def choose_duplicates(ids: list[str], exact: list[str], bands: np.ndarray) -> dict[str, tuple[str, str]]:
    order = sorted(range(len(ids)), key=ids.__getitem__)
    rank = {ids[i]: r for r, i in enumerate(order)}
    exact_rep: dict[str, int] = {}
    duplicates: dict[str, tuple[str, str]] = {}
    for i in order:
        first = exact_rep.setdefault(exact[i], i)
        if first != i:
            duplicates[ids[i]] = ("exact_duplicate", ids[first])
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


def dedup_in_driver(cleaned_root: str, out_dir: str, cfg: DedupConfig) -> int:
    """The old stage's work (no cache, no manifest): returns the number of documents dropped."""
    shards = shard_paths(cleaned_root)
    hashed = map_shards(hash_shard, shards, "baseline dedup: hash", cfg=cfg)
    ids = [i for h in hashed for i in h["ids"]]
    exact = [k for h in hashed for k in h["exact"]]
    duplicate_of = choose_duplicates(ids, exact, np.concatenate([h["bands"] for h in hashed]))
    map_shards(filter_shard, list(enumerate(shards)), "baseline dedup: filter", out_dir=out_dir,
               duplicate_of=duplicate_of, test_ngrams={}, ngram=13)
    return len(duplicate_of)
