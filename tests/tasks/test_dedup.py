import random

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dedup import choose_duplicates, exact_key, filter_shard


def test_exact_key_folds_case_and_whitespace():
    assert exact_key("Call me  Ishmael.\n") == exact_key("call me ishmael.")
    assert exact_key("Call me Ishmael.") != exact_key("Call me Ahab.")


def test_representative_is_the_smallest_id_whatever_the_order():
    pairs = [("b", "k1"), ("a", "k1"), ("c", "k2"), ("d", "k1"), ("e", "k2")]
    expected = {"b": "a", "d": "a", "e": "c"}
    for _ in range(5):
        random.shuffle(pairs)
        assert choose_duplicates(pairs) == expected


def test_filter_shard_records_what_each_duplicate_duplicates(tmp_path):
    docs = [{"id": i, "text": "same text", "source": "t"} for i in ("x1", "x2")] + [{"id": "y", "text": "other", "source": "t"}]
    shard = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(docs), shard)
    stats = filter_shard((3, str(shard)), str(tmp_path), {"x2": "x1"})
    assert (stats["docs_in"], stats["kept"], stats["rejected"]) == (3, 2, 1)
    rejected = pq.read_table(tmp_path / "rejected-00003.parquet").to_pylist()
    assert rejected[0]["id"] == "x2" and rejected[0]["reason"] == "exact_duplicate"
    assert rejected[0]["detail"] == "duplicate of x1"
