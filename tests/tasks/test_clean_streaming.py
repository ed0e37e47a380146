"""Clean reads and writes a shard batch by batch: the documents out do not depend on the batch size."""

import random

import pyarrow as pa
import pyarrow.parquet as pq

import tasks.data.clean as clean_module
from tasks.data.clean import CleanConfig, filter_shard, measure_shard

SENTENCES = ["The ship left the harbour at dawn.", "The crew watched the grey coast fall away behind them.",
             "By noon the wind had turned and the captain ordered the sails reefed.", "Nobody spoke at supper.",
             "Later that night the cook told a long story about a whale he had seen off the Azores.",
             "A storm came up from the south and lasted three days.", "Then the sea was calm again.",
             "The mate kept the log in a neat, small hand.", "Fresh water ran short in the second week.",
             "On the twentieth morning a lookout cried that he could see land."]


def shard_of(tmp_path, num_docs: int) -> str:
    rng = random.Random(0)
    texts = [" ".join(rng.sample(SENTENCES, i % 10)) + (" 0123" * 80 if i % 11 == 0 else "") for i in range(num_docs)]
    docs = [{"id": f"doc{i:04d}", "text": text, "source": "t", "meta": None, "encoding": "utf-8"}
            for i, text in enumerate(texts)]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(docs), path, row_group_size=50)
    return str(path)


def cleaned(tmp_path, path: str, batch_rows: int, monkeypatch) -> tuple[list, dict, dict]:
    monkeypatch.setattr(clean_module, "BATCH_ROWS", batch_rows)
    signals, out = tmp_path / f"signals-{batch_rows}", tmp_path / f"out-{batch_rows}"
    signals.mkdir(), out.mkdir()
    cfg = CleanConfig(min_chars=150)
    measured = measure_shard((0, path), str(signals), cfg)
    filtered = filter_shard((0, str(signals / "shard-00000.parquet")), str(out), cfg)
    tables = [pq.read_table(p) for p in (signals / "shard-00000.parquet", out / "shard-00000.parquet",
                                         out / "rejected-00000.parquet")]
    assert pq.ParquetFile(signals / "shard-00000.parquet").metadata.num_row_groups == -(-300 // batch_rows)
    # a detector's probability may differ in its last bits from one call to the next, whatever the batch
    rows = [[r | {"lang_score": round(r["lang_score"], 9)} if "lang_score" in r else r for r in t.to_pylist()]
            for t in tables]
    return rows, measured, filtered


def test_batch_size_changes_no_document_nor_stat(tmp_path, monkeypatch):
    path = shard_of(tmp_path, 300)
    streamed = cleaned(tmp_path, path, 64, monkeypatch)
    at_once = cleaned(tmp_path, path, 1000, monkeypatch)
    assert streamed == at_once
    (signals, kept, rejected), measured, filtered = streamed
    assert len(signals) == measured["docs_in"] == 300 and filtered["kept"] == len(kept) > 0
    assert {r["reason"] for r in rejected} >= {"too_short", "low_alpha_ratio"}

