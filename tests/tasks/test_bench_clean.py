"""The clean-signals bench's own code on a tiny input (the bench itself stays out of make test)."""

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.bench.clean_speed import markdown, run, short_documents, signal_differences
from tasks.data.clean import CleanConfig, clean_document
from tests.conftest import DATA


def test_short_documents_are_cut_at_sentence_ends_within_the_bounds():
    texts = [(DATA / "tiny" / "chapter_1.txt").read_text(), "Too short to make a document."]
    docs = short_documents(texts, low=200, high=1000)
    assert len(docs) > 10 and all(200 <= len(doc) <= 1000 for doc in docs)
    assert docs[0].startswith("CHAPTER 1. Loomings.") and all(doc == doc.strip() for doc in docs)
    assert short_documents(texts) == docs  # the same cut every time


def test_differences_name_the_text_and_each_signal_that_moved():
    result = clean_document((DATA / "tiny" / "chapter_2.txt").read_text(), CleanConfig())
    text, signals = result
    assert signal_differences(result, result) == []
    assert signal_differences(result, (text, signals | {"alpha_ratio": signals["alpha_ratio"] + 1e-12})) == []
    moved = (text + "!", signals | {"alpha_ratio": signals["alpha_ratio"] + 1e-6, "lang": "fr",
                                    "gopher_num_words": float(signals["gopher_num_words"])})
    assert [problem.split(":")[0] for problem in signal_differences(result, moved)] == [
        "cleaned text", "alpha_ratio", "lang", "gopher_num_words"]  # a count that turned float moved too


def test_both_implementations_run_on_a_tiny_corpus_and_agree(tmp_path):
    texts = [path.read_text() for path in sorted((DATA / "tiny").glob("chapter_1*.txt"))]
    pq.write_table(pa.table({"text": texts}), tmp_path / "corpus.parquet")
    results = run(rounds=1, short_limit=20, path=tmp_path / "corpus.parquet")
    for name in ("bench corpus", "short documents"):
        assert results[name]["mismatched_documents"] == 0
        assert results[name]["frozen"]["docs_per_s"] > 0 and results[name]["ratio"] > 0
    assert results["short documents"]["documents"] == 20 and results["bench corpus"]["documents"] == len(texts)
    assert "| bench corpus |" in markdown(results) and "| short documents |" in markdown(results)
