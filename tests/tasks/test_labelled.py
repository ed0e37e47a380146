"""Labelled files in every format and compression, copies grouped before the split, counts conserved."""

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers

from tasks.data.decontam import finetune_test_texts
from tasks.data.text_keys import exact_key
from tasks.data.tokenizer import PAD
from tasks.train.finetune import (
    FinetuneConfig,
    prepare_labelled,
    read_labelled,
    stratified_splits,
)

REPO = Path(__file__).resolve().parents[2]
ROWS = [("Free entry! Text WIN to 80086", "spam"), ('He said "see you" at noon', "ham"), ("Call me later", "ham")]
COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress,
            ".xz": lzma.compress, "": lambda data: data}


def table_bytes(rows, kind, header=True):
    if kind == ".jsonl":
        return "".join(json.dumps({"body": t, "kind": k}) + "\n" for t, k in rows).encode()
    sep = "\t" if kind == ".tsv" else ","
    quote = (lambda s: s) if kind == ".tsv" else (lambda s: '"' + s.replace('"', '""') + '"')
    lines = ([f"body{sep}kind"] if header else []) + [f"{quote(t)}{sep}{k}" for t, k in rows]
    return ("\n".join(lines) + "\n").encode()


def write(path, rows=ROWS, header=True):
    """`rows` as the file its name says: set.parquet, set.csv, set.tsv.xz, ... with columns body and kind."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({"body": [t for t, _ in rows], "kind": [k for _, k in rows]}), path)
        return path
    compression = path.suffix if path.suffix in COMPRESS else ""
    kind = Path(path.stem).suffix if compression else path.suffix
    path.write_bytes(COMPRESS[compression](table_bytes(rows, kind, header)))
    return path


@pytest.mark.parametrize("name", ["set.parquet", "set.jsonl", "set.csv", "set.tsv", "set.csv.gz", "set.jsonl.bz2",
                                  "set.tsv.zst", "set.jsonl.xz"])
def test_any_labelled_format_with_named_columns(tmp_path, name):
    path = write(tmp_path / name)
    labelled = read_labelled(FinetuneConfig(data=path, text_column="body", label_column="kind"))
    assert list(zip(labelled.texts, labelled.labels)) == ROWS and labelled.set_aside == []


def test_headerless_tsv_with_column_names(tmp_path):
    path = write(tmp_path / "set.tsv", header=False)
    cfg = FinetuneConfig(data=path, column_names=["body", "kind"], text_column="body", label_column="kind")
    labelled = read_labelled(cfg)
    assert labelled.labels == ["spam", "ham", "ham"] and labelled.texts[1] == 'He said "see you" at noon'


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path / "set.jsonl")
    with pytest.raises(ValueError, match=r"set.jsonl: no column 'label' \(finetune.label_column\)"):
        read_labelled(FinetuneConfig(data=path, text_column="body"))


@pytest.mark.parametrize("name", ["set.xlsx", "set.csv.lz4", "set.parquet.gz", "set.txt"])
def test_an_unsupported_suffix_names_the_file_and_the_field(tmp_path, name):
    (tmp_path / name).write_bytes(b"text,label\nhello,ham\n")
    with pytest.raises(ValueError, match=rf"{name}: unsupported file type \(finetune.data\).*\.bz2"):
        read_labelled(FinetuneConfig(data=tmp_path / name))


def test_a_truncated_compressed_file_is_named(tmp_path):
    path = tmp_path / "set.csv.xz"
    path.write_bytes(lzma.compress(table_bytes(ROWS * 500, ".csv"))[:200])
    with pytest.raises(ValueError, match=r"set.csv.xz: cannot read as .csv.xz \(finetune.data\)"):
        read_labelled(FinetuneConfig(data=path, text_column="body", label_column="kind"))


def test_every_row_set_aside_has_its_reason(tmp_path):
    rows = [{"text": "hello", "label": "ham"}, {"text": "who?", "label": None}, {"text": "Hello ", "label": "ham"},
            {"text": "WIN now", "label": "spam"}, {"text": "win  NOW", "label": "ham"}, {"text": "bye", "label": "ham"}]
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labelled = read_labelled(FinetuneConfig(data=path))
    assert labelled.texts == ["hello", "bye"] and labelled.rows == [1, 6]
    assert [(r["row"], r["reason"], r["detail"]) for r in labelled.set_aside] == [
        (2, "missing_label", None),
        (3, "duplicate", "copy of row 1"),
        (4, "conflicting_label", "the same text is labelled ham and spam (rows 4, 5)"),
        (5, "conflicting_label", "the same text is labelled ham and spam (rows 4, 5)")]
    assert labelled.counts() == {"rows_in": 6, "rows_kept": 2, "rejected_missing_label": 1,
                                 "rejected_conflicting_label": 2, "duplicate_rows": 1}


def test_splits_are_stratified_and_disjoint():
    labels = ["spam"] * 20 + ["ham"] * 80
    splits = stratified_splits(labels, FinetuneConfig(data="x.tsv", val_fraction=0.2, test_fraction=0.2, seed=3))
    all_rows = sorted(i for part in splits.values() for i in part)
    assert all_rows == list(range(100))
    for part in splits.values():
        assert sum(labels[i] == "spam" for i in part) / len(part) == pytest.approx(0.2, abs=0.03)


def test_the_same_rows_split_the_same_in_every_format_and_compression(tmp_path):
    # copies (some differing in case and spacing) and a conflicting text, so grouping is part of what must agree
    rows = [(f"message number {i} about {'prizes' if i % 4 == 0 else 'lunch'}", "spam" if i % 4 == 0 else "ham")
            for i in range(80)]
    rows += [("MESSAGE number 3  about lunch", "ham"), ("message number 5 about lunch", "ham"),
             ("message number 7 about lunch", "spam")]
    names = ["set.csv", "set.csv.gz", "set.csv.bz2", "set.jsonl.zst", "set.tsv.xz", "set.parquet"]
    seen = []
    for name in names:
        cfg = FinetuneConfig(data=write(tmp_path / name, rows), text_column="body", label_column="kind")
        labelled = read_labelled(cfg)
        splits = stratified_splits(labelled.labels, cfg)
        seen.append(({s: [labelled.rows[i] for i in idx] for s, idx in splits.items()}, labelled.counts()))
    assert all(s == seen[0] for s in seen[1:]), names
    assert seen[0][1] == {"rows_in": 83, "rows_kept": 79, "rejected_missing_label": 0,
                          "rejected_conflicting_label": 2, "duplicate_rows": 2}


def word_tokenizer(path: Path) -> Path:
    tokenizer = Tokenizer(models.WordLevel({PAD: 0, "[UNK]": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))
    return path


def test_sms_spam_copies_stay_on_one_side_and_every_row_is_counted(tmp_path):
    cfg = FinetuneConfig(data=REPO / "data" / "sms_spam.parquet")
    prepared = prepare_labelled(cfg, word_tokenizer(tmp_path / "tokenizer.json"), tmp_path)
    counts = prepared["counts"]
    split_texts = {s: pq.read_table(tmp_path / f"{s}.parquet").column("text").to_pylist()
                   for s in ("train", "val", "test")}
    keys = {s: {exact_key(t) for t in texts} for s, texts in split_texts.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert sum(len(k) for k in keys.values()) == counts["rows_kept"]  # and no copy within a split either
    assert counts["rows_in"] == 4862 and counts["rows_kept"] == 4533  # 4,534 texts; two differ only in case
    set_aside = pq.read_table(tmp_path / "rejected.parquet").column("reason").to_pylist()
    assert counts["rows_in"] == sum(counts[f"{s}_examples"] for s in split_texts) + len(set_aside)
    assert counts["duplicate_rows"] == set_aside.count("duplicate") == 4862 - 4533
    assert counts["rejected_conflicting_label"] == counts["rejected_missing_label"] == 0
    # decontamination protects exactly the texts the fine-tune stage tests on
    assert [text for _, text in finetune_test_texts(cfg)] == split_texts["test"]
