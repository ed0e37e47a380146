"""Dedup: exact duplicates (normalised-text hash), then near duplicates (MinHash LSH, verified), all on Ray.

Workers hash their shard's documents: a sha1 of the folded text, and the MinHash signature of its
word 5-grams cut into LSH bands (FineWeb's 14 bands x 8 rows by default). Everything global runs as
exchanges between workers (infra/shuffle.py), never in the driver:

    shards --(exact keys, band keys by bucket)--> buckets --(candidate pairs by shard)--> shards
      --(pairs + first signature)--> shards: verified pairs --(both ends by id)--> min-label rounds
      --(drop lists by shard)--> filter

Documents sharing a band are candidates; a candidate pair is kept only when the Jaccard similarity
estimated from the full signatures reaches `minhash.threshold`, so clusters do not chain through
chance collisions. Clusters are the connected components of verified pairs, found by min-label
propagation: each document takes the smallest id it hears of from a neighbour until nothing changes.
The smallest id of each cluster stays, so the result depends on ids alone, not on how many shards or
workers there are. Each filter task receives only its own shard's drop list.

Exact keys and signatures are cached per input shard under <workdir>/dedup/.signatures/, addressed
by the shard's content and the MinHash settings: when new files arrive, only their shards are hashed.
"""

import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rensa
from pydantic import BaseModel, ConfigDict, Field

from infra import storage
from infra.code_hash import stage_code
from infra.ray_map import cluster_cpus
from infra.shuffle import exchange, partition_of, split_by
from infra.stage import (
    Manifest,
    file_digest,
    fingerprint,
    output_location,
    rebuilding,
    run_stage,
)
from tasks.data.decontam import (
    DecontaminateConfig,
    contaminated_by,
    finetune_test_texts,
    read_texts,
    reference_index,
)
from tasks.data.labelled import LabelledData
from tasks.data.shards import (
    REJECTED_SCHEMA,
    ShardWriter,
    iter_batches,
    merge_stats,
    parquet_schema,
    read_table,
    shard_paths,
    shard_stats,
)
from tasks.data.text_keys import exact_key  # also the fine-tune split's duplicate key

CODE = stage_code(__name__, libraries=("rensa", "numpy", "pyarrow"))
_WORD = re.compile(r"\w+")
EXACT = pa.schema([("key", pa.uint64()), ("key2", pa.uint64()), ("id", pa.string()), ("shard", pa.int32())])
BANDS = pa.schema([("band", pa.int32()), ("key", pa.uint64()), ("id", pa.string()), ("shard", pa.int32()),
                   ("row", pa.int32())])
PAIRS = pa.schema([("a_id", pa.string()), ("a_shard", pa.int32()), ("a_row", pa.int32()),
                   ("b_id", pa.string()), ("b_shard", pa.int32()), ("b_row", pa.int32())])
DROPS = pa.schema([("id", pa.string()), ("shard", pa.int32()), ("of", pa.string())])


class MinHashConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ngram: int = Field(5, ge=1, description="word n-grams (shingles)")
    bands: int = Field(14, ge=1, description="LSH bands; two documents are candidates if any band matches")
    rows: int = Field(8, ge=1, description="MinHash values per band (bands x rows permutations in all)")
    seed: int = 1
    threshold: float = Field(0.7, ge=0, le=1, description=(
        "a candidate pair is a duplicate only if the Jaccard similarity estimated from the full signatures "
        "(the share of equal MinHash values) reaches this; 0.7 is about where 14 bands x 8 rows start to match"))
    anchors: int = Field(4, ge=1, description=(
        "in a bucket, each document is checked against this many smallest ids of the bucket and the id just "
        "before its own (not against every member: a bucket of n copies costs n x anchors checks, not n^2/2)"))


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: bool = Field(True, description="drop documents whose normalised text repeats another's")
    minhash: MinHashConfig = MinHashConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    partitions: int | None = Field(None, ge=1, description=(
        "buckets of the key exchange; default: the CPUs of the Ray cluster. The result does not depend on it"))


def shingles(text: str, n: int) -> list[str]:
    words = _WORD.findall(text.casefold())
    return [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))] if words else [""]


def signatures(texts: list[str], cfg: MinHashConfig) -> np.ndarray:
    """(docs, bands x rows) uint32 MinHash signatures."""
    if not texts:
        return np.zeros((0, cfg.bands * cfg.rows), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_token_sets([shingles(t, cfg.ngram) for t in texts],
                                                          cfg.bands * cfg.rows, cfg.seed)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), cfg.bands * cfg.rows)


def band_keys(sigs: np.ndarray, cfg: MinHashConfig) -> np.ndarray:
    """(docs, bands) uint64: a hash of each band of each document's signature."""
    by_band = sigs.astype(np.uint64).reshape(len(sigs), cfg.bands, cfg.rows)
    # fold each band's rows into one 64-bit key (FNV-style mixing; collisions only add candidates, and
    # candidates are verified)
    key = np.full((len(sigs), cfg.bands), 1469598103934665603, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(cfg.rows):
            key = (key ^ by_band[:, :, r]) * np.uint64(1099511628211)
    return key


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of row-aligned signatures: the share of equal MinHash values."""
    return (a == b).mean(axis=1) if len(a) else np.zeros(0)


# ---- per shard: keys and signatures (cached) ---------------------------------------------------


def signature_key(shard: str, cfg: MinHashConfig) -> str:
    return fingerprint("minhash", CODE, cfg.model_dump(mode="json", exclude={"threshold", "anchors"}),
                       [storage.digest(shard)])


def shard_keys(path: str, cfg: DedupConfig, cache: str, reuse: bool = True) -> tuple[dict, bool]:
    """{"ids", "exact" (n, 2) uint64, "sigs"} of one shard, and whether it came from the cache.

    The shard is read batch by batch; the cache holds 16 + 4 x bands x rows bytes a document."""
    ids = read_table(path, columns=["id"]).column("id").to_pylist()
    if reuse and storage.exists(cache):
        return {"ids": ids, **cached_keys(cache)}, True
    exact, sigs = [], []
    for batch in iter_batches(path, 1024, ["text"]):
        texts = batch.column("text").to_pylist()
        exact.append(np.frombuffer(b"".join(bytes.fromhex(exact_key(t))[:16] for t in texts), np.uint64).reshape(-1, 2))
        sigs.append(signatures(texts, cfg.minhash) if cfg.minhash.enabled else np.zeros((len(texts), 0), np.uint32))
    keys = {"exact": np.concatenate(exact) if exact else np.zeros((0, 2), np.uint64),
            "sigs": np.concatenate(sigs) if sigs else np.zeros((0, 0), np.uint32)}
    buffer = io.BytesIO()
    np.savez(buffer, **keys)
    storage.write_bytes(cache, buffer.getvalue())
    return {"ids": ids, **keys}, False


def cached_keys(cache: str) -> dict:
    with np.load(io.BytesIO(storage.read_bytes(cache))) as saved:
        return {"exact": saved["exact"], "sigs": saved["sigs"]}


# ---- the exchanges -----------------------------------------------------------------------------


def route_keys(shard: int, parts: list, cfg: DedupConfig, cache_dir: str, paths: list[str], num_parts: int,
               reuse: bool) -> tuple[dict, list]:
    """Shard -> buckets: each exact key and band key goes to the partition its value hashes to."""
    cache = storage.join(cache_dir, f"{signature_key(paths[shard], cfg.minhash)}.npz")
    keys, cached = shard_keys(paths[shard], cfg, cache, reuse)
    n = len(keys["ids"])
    exact = pa.table({"key": keys["exact"][:, 0], "key2": keys["exact"][:, 1], "id": keys["ids"],
                      "shard": np.full(n, shard, np.int32)}, schema=EXACT)
    exact_parts = split_by(exact, (keys["exact"][:, 0] % np.uint64(num_parts)).astype(np.int64), num_parts)
    if not cfg.exact:
        exact_parts = [EXACT.empty_table()] * num_parts
    band_parts = [BANDS.empty_table()] * num_parts
    if cfg.minhash.enabled and n:
        bands = band_keys(keys["sigs"], cfg.minhash)
        flat = pa.table({"band": np.repeat(np.arange(cfg.minhash.bands, dtype=np.int32)[None, :], n, 0).ravel(),
                         "key": bands.ravel(), "id": np.repeat(np.array(keys["ids"], dtype=object), cfg.minhash.bands),
                         "shard": np.full(bands.size, shard, np.int32),
                         "row": np.repeat(np.arange(n, dtype=np.int32), cfg.minhash.bands)}, schema=BANDS)
        with np.errstate(over="ignore"):
            spread = bands * np.uint64(0x9E3779B97F4A7C15) + np.arange(cfg.minhash.bands, dtype=np.uint64)
        band_parts = split_by(flat, ((spread >> np.uint64(32)) % np.uint64(num_parts)).astype(np.int64).ravel(), num_parts)
    return {"docs": n, "cached": cached, "cache": cache}, [(e, b) for e, b in zip(exact_parts, band_parts)]


def group_starts(table: pa.Table, columns: list[str]) -> np.ndarray:
    """For each row of a table sorted by `columns`, the index of the first row of its group."""
    n = table.num_rows
    new = np.ones(n, dtype=bool)
    if n:
        new[1:] = False
        for c in columns:
            values = table.column(c).to_numpy(zero_copy_only=False)
            new[1:] |= values[1:] != values[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(n), 0))


def exact_drops(exact: pa.Table) -> pa.Table:
    """Every document whose exact key a smaller id holds, with that id."""
    ordered = exact.sort_by([("key", "ascending"), ("key2", "ascending"), ("id", "ascending")])
    first = group_starts(ordered, ["key", "key2"])
    dropped = first != np.arange(ordered.num_rows)
    rep = ordered.column("id").take(pa.array(first[dropped]))
    kept = ordered.filter(pa.array(dropped))
    return pa.table({"id": kept.column("id"), "shard": kept.column("shard"), "of": rep}, schema=DROPS)


def candidate_pairs(bands: pa.Table, anchors: int) -> pa.Table:
    """Pairs (smaller id a, larger id b) that share a bucket: each member with the bucket's first `anchors`
    ids and with the id just before its own."""
    ordered = bands.sort_by([("band", "ascending"), ("key", "ascending"), ("id", "ascending")])
    first = group_starts(ordered, ["band", "key"])
    rows = np.arange(ordered.num_rows)
    a_index, b_index = [], []
    for offset in range(anchors):
        take = first + offset < rows
        a_index.append((first + offset)[take]), b_index.append(rows[take])
    behind = rows - 1 >= first + anchors  # the predecessor, when it is not an anchor already
    a_index.append(rows[behind] - 1), b_index.append(rows[behind])
    a, b = ordered.take(pa.array(np.concatenate(a_index))), ordered.take(pa.array(np.concatenate(b_index)))
    pairs = pa.table([a.column("id"), a.column("shard"), a.column("row"), b.column("id"), b.column("shard"),
                      b.column("row")], schema=PAIRS)
    return pairs.filter(pc.not_equal(pairs.column("a_id"), pairs.column("b_id")))  # one id twice: not a pair


def bucket_pairs(bucket: int, parts: list, cfg: DedupConfig, num_shards: int) -> tuple[dict, list]:
    """Bucket -> shards: exact duplicates to their own shard, candidate pairs to the shard of their first id."""
    exact = pa.concat_tables([e for e, _ in parts])
    drops = exact_drops(exact)
    pairs = candidate_pairs(pa.concat_tables([b for _, b in parts]), cfg.minhash.anchors)
    drop_parts = split_by(drops, drops.column("shard").to_numpy().astype(np.int64), num_shards)
    pair_parts = split_by(pairs, pairs.column("a_shard").to_numpy().astype(np.int64), num_shards)
    return {"exact_duplicates": drops.num_rows}, drop_parts + pair_parts


def attach_first(shard: int, parts: list, caches: list[str], num_shards: int) -> tuple[dict, list]:
    """At the shard of each pair's first id: distinct pairs, with that document's signature, to the second's shard."""
    pairs = pa.concat_tables(parts).group_by(PAIRS.names).aggregate([])  # a pair found in several bands, once
    pairs = pairs.select(PAIRS.names)
    sigs = cached_keys(caches[shard])["sigs"] if pairs.num_rows else None
    a_sigs = sigs[pairs.column("a_row").to_numpy()] if pairs.num_rows else np.zeros((0, 0), np.uint32)
    parts_out = split_by(pairs, pairs.column("b_shard").to_numpy().astype(np.int64), num_shards)
    order = np.argsort(pairs.column("b_shard").to_numpy(), kind="stable")
    bounds = np.searchsorted(pairs.column("b_shard").to_numpy()[order], np.arange(num_shards + 1))
    return {"candidates": pairs.num_rows}, [(p, a_sigs[order[bounds[j]:bounds[j + 1]]]) for j, p in enumerate(parts_out)]


def verify(shard: int, parts: list, caches: list[str], threshold: float, num_parts: int) -> tuple[dict, list]:
    """At the shard of each pair's second id: keep the pairs similar enough; both ends go to the label rounds."""
    pairs = pa.concat_tables([p for p, _ in parts])
    if not pairs.num_rows:
        return {"verified": 0}, [[] for _ in range(num_parts)]
    a_sigs = np.concatenate([s for _, s in parts if len(s)])  # an empty part has no signature width
    b_sigs = cached_keys(caches[shard])["sigs"][pairs.column("b_row").to_numpy()]
    similar = similarity(a_sigs, b_sigs) >= threshold
    edges = pairs.filter(pa.array(similar)).to_pylist()
    out: list[list] = [[] for _ in range(num_parts)]
    for e in edges:  # both directions: each end learns of the other
        for (src, src_shard), (dst, dst_shard) in (((e["a_id"], e["a_shard"]), (e["b_id"], e["b_shard"])),
                                                   ((e["b_id"], e["b_shard"]), (e["a_id"], e["a_shard"]))):
            out[int(partition_of([src], num_parts)[0])].append((src, src_shard, dst))
    return {"verified": len(edges)}, out


# ---- connected components: min-label propagation --------------------------------------------------


def label_start(part: int, parts: list, num_parts: int) -> tuple[dict, list, dict]:
    """Adjacency of this partition's documents; each starts as its own label and tells its neighbours."""
    state = {"adjacent": {}, "shard": {}, "label": {}}
    for edges in parts:
        for src, src_shard, dst in edges:
            state["adjacent"].setdefault(src, []).append(dst)
            state["shard"][src], state["label"][src] = src_shard, src
    return {"messages": sum(len(v) for v in state["adjacent"].values())}, tell(state, state["label"], num_parts), state


def tell(state: dict, changed: dict, num_parts: int) -> list[list]:
    """(neighbour, label) messages from every document whose label changed, to the neighbour's partition."""
    out: list[list] = [[] for _ in range(num_parts)]
    for node, label in changed.items():
        neighbours = state["adjacent"][node]
        for dst, p in zip(neighbours, partition_of(neighbours, num_parts)):
            if label < dst:
                out[int(p)].append((dst, label))
    return out


def label_round(part: int, parts: list, num_parts: int) -> tuple[dict, list, dict]:
    state, changed = parts[0], {}
    for messages in parts[1:]:
        for node, label in messages:
            if label < state["label"][node] and label < changed.get(node, node):
                changed[node] = label
    state["label"].update(changed)
    out = tell(state, changed, num_parts)
    return {"messages": sum(map(len, out))}, out, state


def near_drops(part: int, parts: list, num_shards: int) -> tuple[dict, list]:
    """Each document whose component holds a smaller id, to its own shard's drop list."""
    state = parts[0]
    rows = [(node, state["shard"][node], label) for node, label in state["label"].items() if label < node]
    drops = pa.Table.from_pylist([dict(zip(DROPS.names, r)) for r in rows], schema=DROPS)
    return {"near_duplicates": len(rows)}, split_by(drops, drops.column("shard").to_numpy().astype(np.int64), num_shards)


def components(edge_parts: list[list], num_parts: int) -> tuple[list[list], int]:
    """Min-label propagation until no label changes; the drop lists by shard, and the number of rounds."""
    summaries, routed, states = exchange_keeping(label_start, edge_parts, num_parts, "dedup: components")
    rounds = 1
    while sum(s["messages"] for s in summaries):
        inputs = [[state, *messages] for state, messages in zip(states, routed)]
        summaries, routed, states = exchange_keeping(label_round, inputs, num_parts, f"dedup: labels, round {rounds}")
        rounds += 1
    return [[state] for state in states], rounds


def exchange_keeping(fn, inputs: list[list], num_parts: int, description: str) -> tuple[list, list, list]:
    """An exchange whose tasks also keep a state for their own partition's next task (the label tables)."""
    def split(index: int, parts: list, **shared) -> tuple[dict, list]:
        summary, out, state = fn(index, parts, **shared)
        return summary, [*out, state]
    split.__name__ = fn.__name__
    summaries, routed = exchange(split, inputs, num_parts + 1, description, num_parts=num_parts)
    return summaries, routed[:num_parts], [routed[num_parts][i] for i in range(len(inputs))]


# ---- filter ------------------------------------------------------------------------------------


def filter_shard(item: tuple[int, str], out_dir: str, duplicate_of: dict[str, tuple[str, str]],
                 test_ngrams: dict[int, str], ngram: int) -> dict:
    """Drop the shard's duplicates, then documents that share an n-gram with a test text, batch by batch; the
    files land in `out_dir`, a local folder or a URL."""
    _, path = item
    name = storage.name_of(path).removesuffix(".parquet")  # the input shard's name: names stay stable from stage to stage
    num_rows, num_kept, reasons = 0, 0, Counter()
    with (storage.writing(out_dir) as local, ShardWriter(local / f"{name}.parquet", parquet_schema(path)) as kept_out,
          ShardWriter(local / f"rejected-{name.removeprefix('shard-')}.parquet", REJECTED_SCHEMA) as rejected_out):
        for batch in iter_batches(path, 1024):
            table = pa.Table.from_batches([batch])
            why = [drop_reason(doc_id, text, duplicate_of, test_ngrams, ngram)
                   for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist())]
            kept = table.filter(pa.array([w is None for w in why], pa.bool_()))
            kept_out.write(kept)
            for row, (reason, detail) in ((r, w) for r, w in zip(table.to_pylist(), why) if w):
                rejected_out.add({"id": row["id"], "text": row["text"], "source": row["source"], "reason": reason,
                                  "detail": detail})
                reasons[reason] += 1
            num_rows, num_kept = num_rows + table.num_rows, num_kept + kept.num_rows
    return shard_stats(name, num_rows, num_kept, reasons)


def drop_reason(doc_id: str, text: str, duplicate_of: dict[str, tuple[str, str]], test_ngrams: dict[int, str],
                ngram: int) -> tuple[str, str] | None:
    if doc_id in duplicate_of:
        reason, other = duplicate_of[doc_id]
        return reason, f"duplicate of {other}"
    if source := contaminated_by(text, test_ngrams, ngram):
        return "contaminated", f"shares a {ngram}-gram with {source}"
    return None


def drop_list(parts: list[pa.Table], reason: str) -> dict[str, tuple[str, str]]:
    table = pa.concat_tables(parts) if parts else DROPS.empty_table()
    return {i: (reason, of) for i, of in zip(table.column("id").to_pylist(), table.column("of").to_pylist())}


def filter_task(shard: int, parts: list, paths: list[str], out_dir: str, test_ngrams: dict[int, str], ngram: int,
                num_exact: int) -> tuple[dict, list]:
    # an exact copy is named as one even when its near-duplicate cluster also drops it
    duplicate_of = drop_list(parts[num_exact:], "near_duplicate") | drop_list(parts[:num_exact], "exact_duplicate")
    return filter_shard((shard, paths[shard]), out_dir, duplicate_of, test_ngrams, ngram), []


# ---- the stage ---------------------------------------------------------------------------------


def test_texts(cfg: DecontaminateConfig, finetune_cfg: LabelledData | None = None) -> list[tuple[str, str]]:
    """The texts pretraining must not contain: the fine-tune test split and the configured files."""
    if not cfg.enabled:
        return []
    named = finetune_test_texts(finetune_cfg) if cfg.finetune_test and finetune_cfg is not None else []
    return named + [t for path in cfg.paths for t in read_texts(path, cfg.text_column)]


def reference_inputs(cfg: DecontaminateConfig, finetune_cfg: LabelledData | None) -> list[str]:
    """What the test texts are made from, as fingerprint inputs: the files' bytes and how the fine-tune split is cut
    (the code that cuts it is in dedup's code hash). Cutting the split itself (scikit-learn) waits for the build,
    so that a plan or a cached run stays fast."""
    if not cfg.enabled:
        return []
    files = [*cfg.paths, *([finetune_cfg.data] if cfg.finetune_test and finetune_cfg is not None else [])]
    split = finetune_cfg.model_dump(mode="json", include=set(LabelledData.model_fields)) if finetune_cfg else {}
    settings = hashlib.sha256(json.dumps(split, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return [f"{path}:{file_digest(path)}" for path in files] + [f"fine-tune split settings {settings}"]


def find_duplicates(paths: list[str], cfg: DedupConfig, cache_dir: str, num_parts: int) -> tuple[list[list], dict]:
    """The drop lists of every shard (object references, one list of parts per shard) and the exchange counts."""
    shards = len(paths)
    hashed, by_bucket = exchange(route_keys, [[]] * shards, num_parts, "dedup: hash", cfg=cfg, cache_dir=cache_dir,
                                 paths=paths, num_parts=num_parts, reuse=not rebuilding())
    _, by_shard = exchange(bucket_pairs, by_bucket, 2 * shards, "dedup: buckets", cfg=cfg, num_shards=shards)
    exact, pairs = by_shard[:shards], by_shard[shards:]
    counts = {"signature_shards_reused": sum(h["cached"] for h in hashed),
              "signature_shards_computed": sum(not h["cached"] for h in hashed)}
    near: list[list] = [[] for _ in range(shards)]
    if cfg.minhash.enabled:
        caches = [h["cache"] for h in hashed]  # one name a shard: the driver's share of the work
        attached, to_second = exchange(attach_first, pairs, shards, "dedup: pairs", caches=caches, num_shards=shards)
        verified, edges = exchange(verify, to_second, num_parts, "dedup: verify", caches=caches,
                                   threshold=cfg.minhash.threshold, num_parts=num_parts)
        states, rounds = components(edges, num_parts)
        _, near = exchange(near_drops, states, shards, "dedup: clusters", num_shards=shards)
        candidates, confirmed = sum(a["candidates"] for a in attached), sum(v["verified"] for v in verified)
        counts |= {"candidate_pairs": candidates, "verified_pairs": confirmed, "label_rounds": rounds}
    return [e + n for e, n in zip(exact, near)], counts | {"exact_parts": num_parts}


def rejected_pct(counts: dict) -> float:
    """Share of LSH candidate pairs that verification found not similar enough (a ratio: a stat, not a count)."""
    candidates = counts.get("candidate_pairs", 0)
    return round(100 * (1 - counts["verified_pairs"] / candidates), 2) if candidates else 0.0


def dedup(cleaned: Manifest, cfg: DedupConfig, workdir: str, finetune: LabelledData | None = None) -> Manifest:
    """`finetune` (the recipe's fine-tune settings) names the test split that decontamination protects."""
    fp = fingerprint("dedup", CODE, cfg.model_dump(mode="json", exclude={"partitions"}),
                     [cleaned.fingerprint, *reference_inputs(cfg.decontaminate, finetune)])
    cache_dir = storage.join(workdir, "dedup", ".signatures")

    def build(folder: Path) -> dict:
        paths = shard_paths(cleaned.root)
        num_parts = cfg.partitions or cluster_cpus()
        drops, counts = find_duplicates(paths, cfg, cache_dir, num_parts)
        num_exact = counts.pop("exact_parts")
        references = test_texts(cfg.decontaminate, finetune)
        test_ngrams = reference_index(references, cfg.decontaminate.ngram)
        per_shard, _ = exchange(filter_task, drops, 0, "dedup: filter", paths=paths, out_dir=output_location(),
                                test_ngrams=test_ngrams, ngram=cfg.decontaminate.ngram, num_exact=num_exact)
        shard_counts, stats = merge_stats(per_shard)
        return {"counts": shard_counts | counts,
                "stats": stats | {"test_texts": len(references), "test_ngrams": len(test_ngrams), "partitions": num_parts,
                                  "candidates_rejected_pct": rejected_pct(counts)}}

    return run_stage(workdir, "dedup", fp, build)
