"""Labelled tables: reading a labelled file and cutting its stratified train/val/test split.

Shared by fine-tuning (which trains on the split) and decontamination (which keeps the test
split out of the pretraining corpus), so both cut exactly the same split. Copies of a text
(by dedup's exact key) are grouped before the split, so no text sits on both sides of it.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from tasks.data.readers import (
    COMPRESSIONS,
    STREAM_ERRORS,
    compression_of,
    file_kind,
    open_stream,
)
from tasks.data.text_keys import exact_key

TABLE_KINDS = ("parquet", "csv", "tsv", "jsonl")  # kinds of readers.file_kind a labelled or test file may be
# what each reason a row is set aside is called in the fine-tune manifest's counts
SET_ASIDE_COUNTS = {"missing_label": "rejected_missing_label", "conflicting_label": "rejected_conflicting_label",
                    "duplicate": "duplicate_rows"}


class LabelledData(BaseModel):
    """Where the labelled rows are and how they split; the fine-tune config extends it with training settings."""

    model_config = ConfigDict(extra="forbid")
    data: Path = Field(description="labelled file: .parquet, or .csv, .tsv, .jsonl (plain or .gz/.bz2/.zst/.xz)")
    text_column: str = "text"
    label_column: str = "label"
    column_names: list[str] | None = Field(None, description="for a CSV/TSV without a header row: its column names")
    positive_label: str = Field("spam", description="the class whose F1 is the headline metric")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 1234


@dataclass(frozen=True)
class LabelledRows:
    """One row per distinct text, in file order; every other row of the file is in `set_aside` with a reason."""

    rows: list[int]  # the 1-based row in the file of each kept text
    texts: list[str]
    labels: list[str]
    set_aside: list[dict]  # {"row", "text", "reason", "detail"}, by row

    def counts(self) -> dict[str, int]:
        """rows_in = kept + every set-aside row: nothing leaves unaccounted."""
        by_reason = Counter(r["reason"] for r in self.set_aside)
        return ({"rows_in": len(self.rows) + len(self.set_aside), "rows_kept": len(self.rows)}
                | {name: by_reason[reason] for reason, name in SET_ASIDE_COUNTS.items()})


def read_table(path: Path, column_names: list[str] | None, field: str) -> pa.Table:
    """A Parquet, CSV, TSV or JSONL file as a table; the last three may be compressed as ingest's inputs may
    (readers.COMPRESSIONS). `field` names the config entry that points here, for the error messages."""
    kind = file_kind(path.name)
    if kind not in TABLE_KINDS:
        raise ValueError(f"{path}: unsupported file type ({field}): use .parquet, or .csv, .tsv, .jsonl, plain or "
                         f"compressed ({', '.join(COMPRESSIONS)})")
    try:
        if kind == "parquet":
            return pq.read_table(path)
        with open(path, "rb") as raw, open_stream(raw, path.name) as stream:
            return _read_streamed(stream, kind, column_names)
    except (pa.ArrowInvalid, *STREAM_ERRORS) as err:
        as_read = "." + kind + (path.suffix.lower() if compression_of(path.name) else "")  # ".csv.gz"
        raise ValueError(f"{path}: cannot read as {as_read} ({field}): {str(err).splitlines()[0]}") from None


def _read_streamed(stream, kind: str, column_names: list[str] | None) -> pa.Table:
    if kind == "jsonl":
        return pajson.read_json(stream)
    # TSV exports rarely quote; a stray " in a message must not swallow the lines after it
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False) if kind == "tsv" else pacsv.ParseOptions()
    read = pacsv.ReadOptions(column_names=column_names) if column_names else pacsv.ReadOptions()
    return pacsv.read_csv(stream, read_options=read, parse_options=parse)


def read_labelled(cfg: LabelledData) -> LabelledRows:
    """The file's rows, one per distinct text; rows without a label, with a label their copies contradict, or
    copying a kept row are set aside with a reason, never dropped silently."""
    table = read_table(cfg.data, cfg.column_names, "finetune.data")
    for role, column in (("text_column", cfg.text_column), ("label_column", cfg.label_column)):
        if column not in table.column_names:
            raise ValueError(f"{cfg.data}: no column {column!r} (finetune.{role}); columns are {table.column_names}")
    labelled, set_aside = [], []
    raw_texts, raw_labels = table.column(cfg.text_column).to_pylist(), table.column(cfg.label_column).to_pylist()
    for row, (text, label) in enumerate(zip(raw_texts, raw_labels), start=1):
        if label is None or str(label).strip() == "":
            set_aside.append({"row": row, "text": text, "reason": "missing_label", "detail": None})
            continue
        labelled.append((row, text if isinstance(text, str) else "", str(label).strip()))
    kept, grouped_out = one_row_per_text(labelled)
    return LabelledRows([r for r, _, _ in kept], [t for _, t, _ in kept], [lb for _, _, lb in kept],
                        sorted(set_aside + grouped_out, key=lambda r: r["row"]))


def one_row_per_text(labelled: list[tuple[int, str, str]]) -> tuple[list[tuple[int, str, str]], list[dict]]:
    """(kept, set aside) from (row, text, label) rows: the first row of each exact key is kept, its copies are
    `duplicate`; a text whose copies disagree on the label is `conflicting_label`, every row of it.

    Why one row per text rather than splitting whole groups: either keeps copies on one side of the split,
    but a text sent 24 times would then weigh 24x in training and in the test metrics, and indivisible
    groups would make the stratified fractions uneven. The first row stands for its copies, so the split
    depends on the file alone."""
    groups: dict[str, list[tuple[int, str, str]]] = {}
    for entry in labelled:
        groups.setdefault(exact_key(entry[1]), []).append(entry)
    kept, set_aside = [], []
    for group in groups.values():
        labels = sorted({label for _, _, label in group})
        if len(labels) > 1:
            rows = ", ".join(str(row) for row, _, _ in group)
            set_aside += [{"row": row, "text": text, "reason": "conflicting_label",
                           "detail": f"the same text is labelled {' and '.join(labels)} (rows {rows})"}
                          for row, text, _ in group]
            continue
        first = group[0]
        kept.append(first)
        set_aside += [{"row": row, "text": text, "reason": "duplicate", "detail": f"copy of row {first[0]}"}
                      for row, text, _ in group[1:]]
    return kept, set_aside  # kept in row order: groups are met in the order of their first rows


def stratified_splits(labels: list[str], cfg: LabelledData) -> dict[str, np.ndarray]:
    """Indices into `labels` for train, val and test, each with the label shares of the whole."""
    from sklearn.model_selection import (
        train_test_split,  # scikit-learn is slow to import: Ray workers never need it
    )

    rare = {name: n for name, n in Counter(labels).items() if n < 3}
    if rare:  # checked here so decontamination, which cuts the split first, fails as clearly as fine-tuning
        raise ValueError(f"{cfg.data}: every label needs at least 3 examples for a stratified split; too few: {rare}")
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=cfg.test_fraction, stratify=labels, random_state=cfg.seed)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=[labels[i] for i in rest], random_state=cfg.seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
