"""Decontamination: pretraining documents that share a word 13-gram with a test text are dropped.

On by default: a model scored on texts it pretrained on reports a score it did not earn. The test
texts are the fine-tune test split (cut exactly as the fine-tune stage cuts it) and any files
named in `dedup.decontaminate.paths`. Words are case-folded `\\w+` runs, as in dedup; each
n-gram is hashed to 64 bits from per-word hashes (blake2b, the same in every process), so a
worker checks a document with a few numpy operations and a set lookup per n-gram.
A test text shorter than n words has no n-gram and cannot be matched (GPT-3's rule, too).
"""

import hashlib
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tasks.data.labelled import (
    LabelledData,
    read_labelled,
    read_table,
    stratified_splits,
)

_WORD = re.compile(r"\w+")
_PRIME = np.uint64(1099511628211)


class DecontaminateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="drop documents sharing an n-gram with a test text (reason `contaminated`)")
    ngram: int = Field(13, ge=3, le=64, description="words per n-gram")
    finetune_test: bool = Field(True, description="check against the fine-tune test split")
    paths: list[Path] = Field(default_factory=list, description="more test sets: .txt (one text per file), .parquet, "
                              "or .jsonl/.csv/.tsv (plain or .gz/.bz2/.zst/.xz) with a `text_column`")
    text_column: str = "text"


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """uint64 hash of every run of n consecutive words (empty when the text has fewer words)."""
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter((_word_hash(w) for w in words), dtype=np.uint64, count=len(words))
    out = np.zeros(len(words) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):  # polynomial rolling hash: the order of the words matters
            out = out * _PRIME + h[j : j + len(out)]
    return out


def reference_index(named_texts: list[tuple[str, str]], n: int) -> dict[int, str]:
    """n-gram hash -> the name of the first test text that holds it."""
    index: dict[int, str] = {}
    for name, text in named_texts:
        for value in ngram_hashes(text, n).tolist():
            index.setdefault(value, name)
    return index


def contaminated_by(text: str, index: dict[int, str], n: int) -> str | None:
    """The name of a test text this document shares an n-gram with, or None."""
    if not index:
        return None
    for value in ngram_hashes(text, n).tolist():
        if value in index:
            return index[value]
    return None


def read_texts(path: Path, text_column: str) -> list[tuple[str, str]]:
    """(name, text) of each test text in a file; names say file and row."""
    if not path.exists():
        raise ValueError(f"dedup.decontaminate.paths: no such file {path}")
    if path.suffix.lower() in (".txt", ".md", ".rst"):
        return [(path.name, path.read_text(errors="replace"))]
    table = read_table(path, None, "dedup.decontaminate.paths")
    if text_column not in table.column_names:
        raise ValueError(f"{path}: no column {text_column!r} (dedup.decontaminate.text_column); "
                         f"columns are {table.column_names}")
    return [(f"{path.name} row {row}", text) for row, text in enumerate(table.column(text_column).to_pylist(), start=1)
            if isinstance(text, str)]


def finetune_test_texts(finetune_cfg: LabelledData) -> list[tuple[str, str]]:
    """The fine-tune test split's texts, split by the fine-tune stage's own functions and seed."""
    labelled = read_labelled(finetune_cfg)
    test = stratified_splits(labelled.labels, finetune_cfg)["test"]
    return [(f"{finetune_cfg.data.name} row {labelled.rows[i]}", labelled.texts[i]) for i in test]
