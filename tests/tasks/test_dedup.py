import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infra.stage import Manifest
from tasks.data.dedup import (
    BANDS,
    EXACT,
    DedupConfig,
    MinHashConfig,
    band_keys,
    candidate_pairs,
    dedup,
    exact_drops,
    exact_key,
    filter_shard,
    signatures,
    similarity,
)

REPO = Path(__file__).resolve().parents[2]


def chapters(n: int) -> list[str]:
    return [(REPO / "data" / "tiny" / f"chapter_{i}.txt").read_text() for i in range(1, n + 1)]


def edited(text: str, every: int = 60) -> str:
    """The same text with one word in `every` replaced: a near duplicate."""
    words = text.split()
    return " ".join("whale" if i % every == 0 else w for i, w in enumerate(words))


def test_exact_key_folds_case_and_whitespace():
    assert exact_key("Call me  Ishmael.\n") == exact_key("call me ishmael.")
    assert exact_key("Call me Ishmael.") != exact_key("Call me Ahab.")


def test_exact_representative_is_the_smallest_id_whatever_the_order():
    rows = [("b", 1), ("a", 1), ("c", 2), ("d", 1), ("e", 2)]
    for seed in range(5):
        shuffled = random.Random(seed).sample(rows, len(rows))
        table = pa.table({"key": [k for _, k in shuffled], "key2": [0] * 5, "id": [i for i, _ in shuffled],
                          "shard": [0] * 5}, schema=EXACT)
        drops = exact_drops(table).to_pylist()
        assert {d["id"]: d["of"] for d in drops} == {"b": "a", "d": "a", "e": "c"}


def test_minhash_bands_match_for_a_near_duplicate_and_not_for_other_text():
    one, two = chapters(2)
    cfg = MinHashConfig()
    sigs = signatures([one, edited(one), two], cfg)
    keys = band_keys(sigs, cfg)
    assert sigs.shape == (3, 112) and keys.shape == (3, 14) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).any()  # shares at least one band: a candidate pair
    assert not (keys[0] == keys[2]).any()
    assert similarity(sigs[:1], sigs[1:2])[0] > 0.7 > similarity(sigs[:1], sigs[2:])[0]


def test_candidates_pair_each_bucket_member_with_the_anchors_and_its_predecessor():
    members = [f"d{i}" for i in range(7)]
    table = pa.table({"band": [0] * 7 + [1, 1], "key": [9] * 7 + [5, 6], "id": members + ["d0", "d1"],
                      "shard": [0] * 9, "row": list(range(9))}, schema=BANDS)
    pairs = {(p["a_id"], p["b_id"]) for p in candidate_pairs(table, anchors=2).to_pylist()}
    # anchors d0 and d1 meet everyone; later members meet their predecessor; band 1's keys differ: no pair
    assert pairs == {("d0", f"d{i}") for i in range(1, 7)} | {("d1", f"d{i}") for i in range(2, 7)} \
        | {("d2", "d3"), ("d3", "d4"), ("d4", "d5"), ("d5", "d6")}


def test_filter_shard_records_what_each_duplicate_duplicates(tmp_path):
    docs = [{"id": i, "text": "same text", "source": "t"} for i in ("x1", "x2")] + [{"id": "y", "text": "other", "source": "t"}]
    shard = tmp_path / "shard-00003.parquet"
    pq.write_table(pa.Table.from_pylist(docs), shard)
    out = tmp_path / "out"
    out.mkdir()
    stats = filter_shard((3, str(shard)), str(out), {"x2": ("exact_duplicate", "x1")}, {}, 13)
    assert (stats["docs_in"], stats["kept"], stats["rejected"]) == (3, 2, 1)
    rejected = pq.read_table(out / "rejected-00003.parquet").to_pylist()
    assert rejected[0]["id"] == "x2" and rejected[0]["reason"] == "exact_duplicate"
    assert rejected[0]["detail"] == "duplicate of x1"


def corpus() -> list[dict]:
    """24 real chapters, plus exact and near copies of some of them under other ids."""
    docs = [{"id": f"ch{i:02d}", "text": t, "source": "moby"} for i, t in enumerate(chapters(24), start=1)]
    docs += [{"id": "copy-ch03", "text": docs[2]["text"], "source": "copy"},
             {"id": "aa-near-ch05", "text": edited(docs[4]["text"]), "source": "copy"},
             {"id": "zz-near-ch07", "text": edited(docs[6]["text"], 80), "source": "copy"}]
    return docs


def write_shards(folder: Path, docs: list[dict], num_shards: int) -> Manifest:
    folder.mkdir(parents=True)
    shuffled = random.Random(num_shards).sample(docs, len(docs))
    for s in range(num_shards):
        pq.write_table(pa.Table.from_pylist(shuffled[s::num_shards]), folder / f"shard-{s:05d}.parquet")
    return Manifest(stage="clean", fingerprint=f"clean-{num_shards}", path=folder)


def dedup_result(manifest: Manifest) -> tuple[set[str], dict[str, tuple[str, str]]]:
    kept = {i for p in Path(manifest.root).glob("shard-*.parquet") for i in pq.read_table(p).column("id").to_pylist()}
    rejected = {r["id"]: (r["reason"], r["detail"]) for p in Path(manifest.root).glob("rejected-*.parquet")
                for r in pq.read_table(p).to_pylist()}
    return kept, rejected


def test_result_does_not_depend_on_shard_or_partition_count_and_signatures_are_reused(ray_local, tmp_path):
    results = []
    for num_shards in (1, 3, 7):
        inputs = write_shards(tmp_path / f"in-{num_shards}", corpus(), num_shards)
        # as many exchange partitions as shards: 1, 3 and 7 workers' worth of buckets
        manifest = dedup(inputs, DedupConfig(partitions=num_shards), tmp_path / "work")
        assert manifest.counts["docs_in"] == manifest.counts["kept"] + manifest.counts["rejected"] == 27
        results.append(dedup_result(manifest))
    assert results[0] == results[1] == results[2]
    kept, rejected = results[0]
    assert rejected["copy-ch03"] == ("exact_duplicate", "duplicate of ch03")
    # the smallest id of a cluster stays, whoever came first: "aa-near-ch05" < "ch05"
    assert rejected["ch05"] == ("near_duplicate", "duplicate of aa-near-ch05")
    assert rejected["zz-near-ch07"] == ("near_duplicate", "duplicate of ch07")
    assert len(rejected) == 3 and len(kept) == 24

    # the same shards again under another dedup setting that keeps MinHash as is: band keys come from the cache
    again = dedup(write_shards(tmp_path / "again", corpus(), 7), DedupConfig(exact=False), tmp_path / "work")
    assert again.counts["signature_shards_reused"] == 7 and again.counts["signature_shards_computed"] == 0


def half_shared(texts: list[str]) -> str:
    """The first half of one chapter's words and the second half of another's: similar, but not a duplicate."""
    one, two = texts[0].split(), texts[1].split()
    return " ".join(one[: len(one) // 2] + two[len(two) // 2 :])


def test_candidates_that_collide_but_are_not_similar_stay(ray_local, tmp_path):
    texts = chapters(4)
    docs = [{"id": "a", "text": texts[0], "source": "t"}, {"id": "b", "text": half_shared(texts), "source": "t"},
            {"id": "c", "text": texts[2], "source": "t"}, {"id": "d", "text": edited(texts[2]), "source": "t"}]
    # 56 bands of 2 rows: documents about a third alike almost surely share a band, but 0.7 of the
    # signature they do not share
    cfg = DedupConfig(minhash=MinHashConfig(bands=56, rows=2))
    manifest = dedup(write_shards(tmp_path / "in", docs, 2), cfg, tmp_path / "work")
    kept, rejected = dedup_result(manifest)
    assert kept == {"a", "b", "c"} and rejected == {"d": ("near_duplicate", "duplicate of c")}
    counts = manifest.counts
    assert counts["candidate_pairs"] >= 2 and counts["verified_pairs"] == 1
    assert manifest.stats["candidates_rejected_pct"] == round(100 * (1 - 1 / counts["candidate_pairs"]), 2)
    # without verification (threshold 0) the chance collision would have dropped b
    loose = dedup(write_shards(tmp_path / "in-loose", docs, 2), cfg.model_copy(
        update={"minhash": MinHashConfig(bands=56, rows=2, threshold=0)}), tmp_path / "work")
    assert "b" in dedup_result(loose)[1]


def test_the_rejected_share_of_candidates_is_a_stat_with_a_fraction():
    from tasks.data.dedup import rejected_pct

    # a share like 66.67 % once crashed the manifest, whose counts are integers
    assert rejected_pct({"candidate_pairs": 3, "verified_pairs": 1}) == 66.67
    assert rejected_pct({"candidate_pairs": 0, "verified_pairs": 0}) == 0.0
