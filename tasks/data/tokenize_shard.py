"""The pack stage's work on a Ray worker: one shard of documents -> packed train and validation blocks.

A module of its own so that a worker imports numpy, pyarrow and tokenizers only, not what tasks.data.pack
imports for the driver.
"""

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from infra import storage
from infra.token_files import TokenRowWriter
from tasks.data.shards import iter_batches

SPLITS = ("train", "val")
BATCH_DOCS = 512  # documents tokenized at once: what a worker holds, however large its shard


def is_validation(doc_id: str, val_fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big") / 2**64
    return bucket < val_fraction


class BlockPacker:
    """Cuts a token stream that arrives in pieces into rows of `width`. The file is opened with the first full row
    (a split with none writes no file); the tail that fills no row is dropped, and counted."""

    def __init__(self, path: Path, width: int, vocab_size: int):
        self.path, self.width, self.vocab_size = path, width, vocab_size
        self.writer: TokenRowWriter | None = None
        self.carry = np.zeros(0, dtype=np.uint32)

    def add(self, tokens: np.ndarray) -> None:
        tokens = np.concatenate([self.carry, tokens])
        num_full = len(tokens) // self.width
        if num_full:
            self.writer = self.writer or TokenRowWriter(self.path, self.width, self.vocab_size)
            self.writer.write(tokens[: num_full * self.width].reshape(num_full, self.width))
        self.carry = tokens[num_full * self.width :].copy()  # a copy: the view would keep the whole batch alive

    def close(self) -> dict[str, int]:
        if self.writer:
            self.writer.close()
        return {"blocks": self.writer.num_rows if self.writer else 0, "dropped_tail_tokens": len(self.carry)}


@lru_cache(maxsize=4)
def worker_tokenizer(location: str, vocabulary: str) -> Tokenizer:
    """The tokenizer, loaded once per worker process (`vocabulary`, its digest, keys the cache with its location)."""
    return Tokenizer.from_file(str(storage.local_file(location)))


@contextmanager
def one_thread() -> Iterator[None]:
    """encode_batch on this thread only: the Ray workers are the parallelism, a Rust pool in each over-subscribes the
    cores. Set for the call and restored after, so a BPE training later in the same worker keeps its threads."""
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def tokenize_into(item: tuple[int, str], out_dir: str, tokenizer: str, vocabulary: str, eos: str, val_fraction: float,
                  seq_len: int) -> dict:
    """On a Ray worker (a task: the worker pool the other stages warmed up, no actor process to start): one shard of
    documents -> `train-NNNNN.arrow` / `val-NNNNN.arrow` blocks of seq_len + 1 tokens in `out_dir`, and its counts."""
    index, path = item
    packer = ShardPacker(worker_tokenizer(tokenizer, vocabulary), eos, val_fraction)
    packers = {split: BlockPacker(Path(out_dir) / f"{split}-{index:05d}.arrow", seq_len + 1, packer.vocab_size)
               for split in SPLITS}
    stats = {f"{split}_{what}": 0 for split in SPLITS for what in ("docs", "tokens")}
    with one_thread():
        for batch in iter_batches(path, BATCH_DOCS, ["id", "text"]):
            streams = packer.split_streams(batch.column("id").to_pylist(), batch.column("text").to_pylist())
            for split, (num_docs, tokens) in streams.items():
                packers[split].add(tokens)
                stats[f"{split}_docs"] += num_docs
                stats[f"{split}_tokens"] += len(tokens)
    for split, block_packer in packers.items():
        stats |= {f"{split}_{what}": n for what, n in block_packer.close().items()}
    return stats


class ShardPacker:
    """Splits a batch of documents into the train and validation token streams, EOS after each document."""

    def __init__(self, tokenizer: Tokenizer, eos: str, val_fraction: float):
        self.tokenizer, self.val_fraction = tokenizer, val_fraction
        self.eos = np.array([tokenizer.token_to_id(eos)], dtype=np.uint32)
        self.vocab_size = tokenizer.get_vocab_size()

    def split_streams(self, ids: list[str], texts: list[str]) -> dict[str, tuple[int, np.ndarray]]:
        """Each split's documents of one batch: (how many, their tokens as one array with EOS after each)."""
        pieces: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        for doc_id, enc in zip(ids, self.tokenizer.encode_batch_fast(texts)):  # ids only, no offsets
            split = "val" if is_validation(doc_id, self.val_fraction) else "train"
            pieces[split] += [np.asarray(enc.ids, dtype=np.uint32), self.eos]
        return {split: (len(arrays) // 2, np.concatenate(arrays)) for split, arrays in pieces.items() if arrays}
