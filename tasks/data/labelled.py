"""Labelled tables: reading a labelled file and cutting its stratified train/val/test split.

Shared by fine-tuning (which trains on the split) and decontamination (which keeps the test
split out of the pretraining corpus), so both cut exactly the same split.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field


class LabelledData(BaseModel):
    """Where the labelled rows are and how they split; the fine-tune config extends it with training settings."""

    model_config = ConfigDict(extra="forbid")
    data: Path = Field(description="labelled file: .parquet, .csv, .tsv or .jsonl")
    text_column: str = "text"
    label_column: str = "label"
    column_names: list[str] | None = Field(None, description="for a CSV/TSV without a header row: its column names")
    positive_label: str = Field("spam", description="the class whose F1 is the headline metric")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 1234


def read_table(path: Path, column_names: list[str] | None) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".csv", ".tsv"):
        # TSV exports rarely quote; a stray " in a message must not swallow the lines after it
        parse = pacsv.ParseOptions(delimiter="\t", quote_char=False) if suffix == ".tsv" else pacsv.ParseOptions()
        read = pacsv.ReadOptions(column_names=column_names) if column_names else pacsv.ReadOptions()
        return pacsv.read_csv(path, read_options=read, parse_options=parse)
    if suffix == ".jsonl":
        return pajson.read_json(path)
    raise ValueError(f"{path}: unsupported labelled file type {suffix!r} (parquet, csv, tsv, jsonl)")


def read_labelled(cfg: LabelledData) -> tuple[list[str], list[str], list[dict]]:
    """(texts, labels, rejected): rows with no label are set aside with a reason, never dropped silently."""
    path = cfg.data
    try:
        table = read_table(path, cfg.column_names)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: cannot read as {path.suffix} ({str(err).splitlines()[0]})") from None
    for role, column in (("text_column", cfg.text_column), ("label_column", cfg.label_column)):
        if column not in table.column_names:
            raise ValueError(f"{path}: no column {column!r} (finetune.{role}); columns are {table.column_names}")
    texts, labels, rejected = [], [], []
    raw_texts, raw_labels = table.column(cfg.text_column).to_pylist(), table.column(cfg.label_column).to_pylist()
    for row, (text, label) in enumerate(zip(raw_texts, raw_labels), start=1):
        if label is None or str(label).strip() == "":
            rejected.append({"row": row, "text": text, "reason": "missing_label"})
            continue
        texts.append(text if isinstance(text, str) else "")
        labels.append(str(label).strip())
    return texts, labels, rejected


def stratified_splits(labels: list[str], cfg: LabelledData) -> dict[str, np.ndarray]:
    from sklearn.model_selection import (
        train_test_split,  # scikit-learn is slow to import: Ray workers never need it
    )

    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=cfg.test_fraction, stratify=labels, random_state=cfg.seed)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=[labels[i] for i in rest], random_state=cfg.seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
