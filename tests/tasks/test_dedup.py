import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infra.stage import Manifest
from tasks.data.dedup import (
    DedupConfig,
    MinHashConfig,
    band_keys,
    choose_duplicates,
    dedup,
    exact_key,
    filter_shard,
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
    pairs = [("b", "k1"), ("a", "k1"), ("c", "k2"), ("d", "k1"), ("e", "k2")]
    expected = {"b": ("exact_duplicate", "a"), "d": ("exact_duplicate", "a"), "e": ("exact_duplicate", "c")}
    for _ in range(5):
        random.shuffle(pairs)
        ids, keys = [p[0] for p in pairs], [p[1] for p in pairs]
        assert choose_duplicates(ids, keys, None) == expected


def test_minhash_bands_match_for_a_near_duplicate_and_not_for_other_text():
    one, two = chapters(2)
    keys = band_keys([one, edited(one), two], MinHashConfig())
    assert keys.shape == (3, 14) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).any()  # shares at least one band: a candidate pair
    assert not (keys[0] == keys[2]).any()


def test_near_duplicates_cluster_to_the_smallest_id():
    one, two, three = chapters(3)
    texts = {"d": edited(one, 100), "b": one, "c": edited(one), "a": two, "e": three}
    ids = list(texts)
    dups = choose_duplicates(ids, [exact_key(t) for t in texts.values()], band_keys(list(texts.values()), MinHashConfig()))
    assert dups == {"c": ("near_duplicate", "b"), "d": ("near_duplicate", "b")}


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


def test_result_does_not_depend_on_shard_count_and_signatures_are_reused(ray_local, tmp_path):
    results = []
    for num_shards in (1, 3, 7):
        inputs = write_shards(tmp_path / f"in-{num_shards}", corpus(), num_shards)
        manifest = dedup(inputs, DedupConfig(), tmp_path / "work")
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
