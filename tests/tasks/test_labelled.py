import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.train.finetune import FinetuneConfig, read_labelled, stratified_splits

ROWS = [("Free entry! Text WIN to 80086", "spam"), ('He said "see you" at noon', "ham"), ("Call me later", "ham")]


def write(path, header=True):
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(pa.table({"body": [t for t, _ in ROWS], "kind": [k for _, k in ROWS]}), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"body": t, "kind": k}) + "\n" for t, k in ROWS))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        quote = (lambda s: s) if suffix == ".tsv" else (lambda s: '"' + s.replace('"', '""') + '"')
        lines = ([f"body{sep}kind"] if header else []) + [f"{quote(t)}{sep}{k}" for t, k in ROWS]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv", ".tsv"])
def test_any_labelled_format_with_named_columns(tmp_path, suffix):
    path = write(tmp_path / f"set{suffix}")
    texts, labels, rejected = read_labelled(FinetuneConfig(data=path, text_column="body", label_column="kind"))
    assert list(zip(texts, labels)) == ROWS and rejected == []


def test_headerless_tsv_with_column_names(tmp_path):
    path = write(tmp_path / "set.tsv", header=False)
    cfg = FinetuneConfig(data=path, column_names=["body", "kind"], text_column="body", label_column="kind")
    texts, labels, _ = read_labelled(cfg)
    assert labels == ["spam", "ham", "ham"] and texts[1] == 'He said "see you" at noon'


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path / "set.jsonl")
    with pytest.raises(ValueError, match=r"set.jsonl: no column 'label' \(finetune.label_column\)"):
        read_labelled(FinetuneConfig(data=path, text_column="body"))


def test_rows_without_label_are_set_aside_with_a_reason(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"text": "hello", "label": "ham"}) + "\n" + json.dumps({"text": "who?", "label": None}) + "\n")
    texts, labels, rejected = read_labelled(FinetuneConfig(data=path))
    assert texts == ["hello"] and rejected == [{"row": 2, "text": "who?", "reason": "missing_label"}]


def test_splits_are_stratified_and_disjoint():
    labels = ["spam"] * 20 + ["ham"] * 80
    splits = stratified_splits(labels, FinetuneConfig(data="x.tsv", val_fraction=0.2, test_fraction=0.2, seed=3))
    all_rows = sorted(i for part in splits.values() for i in part)
    assert all_rows == list(range(100))
    for part in splits.values():
        assert sum(labels[i] == "spam" for i in part) / len(part) == pytest.approx(0.2, abs=0.03)
