"""The scale-curve bench's own code, on a tiny input (the bench itself stays out of make test)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.bench.scale import measure_dedup, summarise, write_corpus


def test_synthetic_documents_are_distinct_and_split_into_files(tmp_path):
    files = write_corpus(tmp_path / "corpus", 450, docs_per_file=200)
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert [f.name for f in files] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert len({r["id"] for r in rows}) == len({r["text"] for r in rows}) == 450
    assert write_corpus(tmp_path / "again", 450, docs_per_file=200)[0].read_text() == files[0].read_text()


def test_growth_ratios_come_from_the_medians():
    def run(seconds: float, docs: int, rss: int) -> dict:
        return {"seconds": {"clean": seconds}, "total_seconds": seconds, "documents": docs, "driver_peak_rss": rss,
                "worker_peak_rss": 1, "dedup_rejected": 0, "dedup_docs_in": docs}

    runs = {1: [run(10, 1000, 100), run(12, 1000, 100), run(50, 1000, 100)],
            16: [run(160, 16000, 110), run(170, 16000, 120), run(180, 16000, 130)]}
    dedup = {"stage": {"seconds": 2.0}, "baseline": {"seconds": 5.0}}
    result = summarise(runs, dedup, 1000)
    assert result["sizes"][1]["seconds"] == 12 and result["sizes"][16]["seconds"] == 170
    assert abs(result["seconds_per_doc_growth"] - (170 / 16000) / (12 / 1000)) < 1e-12
    assert abs(result["driver_rss_growth"] - 1.2) < 1e-12 and result["dedup_speedup_vs_baseline"] == 2.5


def test_both_dedup_implementations_run_on_the_same_shards(ray_local, tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    docs = [{"id": f"d{i}", "text": f"document number {i} " * 20, "source": "t"} for i in range(40)]
    docs.append({"id": "z-copy", "text": docs[3]["text"], "source": "t"})
    for s in range(2):
        pq.write_table(pa.Table.from_pylist(docs[s::2]), clean / f"shard-{s:05d}.parquet")
    stage = measure_dedup(str(clean), tmp_path / "stage", 2, "stage")
    baseline = measure_dedup(str(clean), tmp_path / "baseline", 2, "baseline")
    assert stage["dropped"] >= 1 and baseline["dropped"] >= 1
    assert stage["driver_peak_rss"] > 0 and stage["seconds"] > 0
