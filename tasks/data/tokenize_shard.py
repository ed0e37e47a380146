"""The tokenize actor of the pack stage: one shard of documents -> train and validation token streams.

A module of its own so that each Ray actor imports numpy, pyarrow and tokenizers only: importing
tasks.data.pack would also import Prefect and torch, about 3 s per actor, longer than tokenizing the
bundled corpus takes.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from infra import storage
from infra.files import atomic_write
from infra.shard_cache import build_unit
from tasks.data.shards import read_table

SPLITS = ("train", "val")


def is_validation(doc_id: str, val_fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


def save_npy_atomic(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda partial: np.save(partial, array))


class ShardTokenizer:
    """A Ray actor: loads the tokenizer once, then turns shards into per-split token streams (cached per shard)."""

    def __init__(self, tokenizer_location: str, eos: str, cache_dir: str, val_fraction: float):
        # one Rust thread per actor: the actors are the parallelism; a thread pool per actor over-subscribes cores
        os.environ["RAYON_NUM_THREADS"] = "1"
        self.tokenizer = Tokenizer.from_file(str(storage.local_file(tokenizer_location)))
        self.eos = self.tokenizer.token_to_id(eos)
        self.dtype = np.uint16 if self.tokenizer.get_vocab_size() <= 2**16 else np.uint32
        self.cache_dir, self.val_fraction = cache_dir, val_fraction

    def tokenize(self, keyed: tuple[str, str]) -> dict:
        return build_unit(keyed, self.tokenize_into, self.cache_dir)

    def tokenize_into(self, item: tuple[int, str], out_dir: str) -> dict:
        index, path = item
        table = read_table(path, columns=["id", "text"])
        streams: dict[str, list[int]] = {split: [] for split in SPLITS}
        docs = {split: 0 for split in SPLITS}
        encodings = self.tokenizer.encode_batch_fast(table.column("text").to_pylist())  # ids only, no offsets
        for doc_id, enc in zip(table.column("id").to_pylist(), encodings):
            split = "val" if is_validation(doc_id, self.val_fraction) else "train"
            streams[split].extend(enc.ids + [self.eos])
            docs[split] += 1
        for split in SPLITS:
            save_npy_atomic(np.asarray(streams[split], dtype=self.dtype), Path(out_dir) / f"{split}-{index:05d}.npy")
        return {f"{split}_{what}": n for split in SPLITS for what, n in (("docs", docs[split]), ("tokens", len(streams[split])))}
