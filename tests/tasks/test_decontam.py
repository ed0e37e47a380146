"""Decontamination: 13-gram overlap with test texts, pure functions and through the dedup stage on Ray."""

import bz2
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data.decontam import (
    DecontaminateConfig,
    contaminated_by,
    finetune_test_texts,
    ngram_hashes,
    read_texts,
    reference_index,
)
from tasks.data.dedup import DedupConfig, dedup
from tasks.train.finetune import FinetuneConfig
from tests.tasks.test_dedup import corpus, write_shards

REPO = Path(__file__).resolve().parents[2]
QUOTE = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse"


def test_ngram_hashes_follow_words_not_case_or_spacing():
    assert len(ngram_hashes("one two three", 13)) == 0
    a, b = ngram_hashes(QUOTE, 13), ngram_hashes(QUOTE.upper().replace(" ", "\n  "), 13)
    assert len(a) == len(QUOTE.split()) - 12 and (a == b).all()
    # word order matters: the same words shuffled share no 13-gram
    assert not set(ngram_hashes(" ".join(reversed(QUOTE.split())), 13).tolist()) & set(a.tolist())


def test_a_document_holding_a_test_sentence_is_named_with_its_source():
    index = reference_index([("test #7", QUOTE), ("too short", "Call me Ishmael.")], 13)
    book = (REPO / "data" / "tiny" / "chapter_1.txt").read_text()
    assert contaminated_by(book, index, 13) == "test #7"
    assert contaminated_by("Call me Ishmael. Nothing else of that chapter here at all.", index, 13) is None


def test_dedup_drops_pretraining_documents_that_hold_test_texts(ray_local, tmp_path):
    test_set = tmp_path / "eval.jsonl"
    sentence = (REPO / "data" / "tiny" / "chapter_9.txt").read_text().split("\n\n")[3]
    test_set.write_text(json.dumps({"text": sentence}) + "\n" + json.dumps({"text": "short"}) + "\n")
    cfg = DedupConfig(decontaminate=DecontaminateConfig(paths=[test_set]))  # on by default, with the fine-tune test split
    finetune = FinetuneConfig(data=REPO / "data" / "sms_spam.parquet")
    manifest = dedup(write_shards(tmp_path / "in", corpus(), 3), cfg, tmp_path / "work", finetune)
    rejected = {r["id"]: r for p in Path(manifest.root).glob("rejected-*.parquet") for r in pq.read_table(p).to_pylist()}
    assert rejected["ch09"]["reason"] == "contaminated"
    assert rejected["ch09"]["detail"] == "shares a 13-gram with eval.jsonl row 1"
    assert manifest.counts["docs_in"] == manifest.counts["kept"] + manifest.counts["rejected"]
    assert manifest.stats["rejected_by_reason"]["contaminated"] == 1
    sms_test = finetune_test_texts(finetune)
    assert len(sms_test) == 680 and manifest.stats["test_texts"] == 2 + len(sms_test)  # 15% of 4,533 distinct SMS
    # turned off, the same input keeps chapter 9
    off = DedupConfig(decontaminate=DecontaminateConfig(enabled=False, paths=[test_set]))
    plain = dedup(write_shards(tmp_path / "in2", corpus(), 3), off, tmp_path / "work", finetune)
    assert "contaminated" not in plain.stats["rejected_by_reason"] and plain.stats["test_texts"] == 0


@pytest.mark.parametrize("name, data", [("eval.jsonl.bz2", lambda b: bz2.compress(b)),
                                        ("eval.csv.xz", lambda b: lzma.compress(b))])
def test_extra_test_files_may_be_compressed(tmp_path, name, data):
    rows = [QUOTE, "short one"]
    plain = "".join(json.dumps({"text": t}) + "\n" for t in rows) if ".jsonl" in name else \
        "text\n" + "".join(f'"{t}"\n' for t in rows)
    (tmp_path / name).write_bytes(data(plain.encode()))
    assert read_texts(tmp_path / name, "text") == [(f"{name} row 1", QUOTE), (f"{name} row 2", "short one")]
    pq.write_table(pa.table({"text": rows}), tmp_path / "eval.parquet")
    assert [t for _, t in read_texts(tmp_path / "eval.parquet", "text")] == rows


def test_an_unsupported_test_file_names_the_field(tmp_path):
    (tmp_path / "eval.jsonl.lz4").write_bytes(b"\x04\x22\x4d\x18")
    with pytest.raises(ValueError, match=r"eval.jsonl.lz4: unsupported file type \(dedup.decontaminate.paths\)"):
        read_texts(tmp_path / "eval.jsonl.lz4", "text")
