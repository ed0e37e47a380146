"""The tokenize actor of the pack stage: one shard of documents -> packed train and validation blocks.

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
from infra.shard_cache import build_unit
from infra.token_files import TokenRowWriter
from tasks.data.shards import iter_batches

SPLITS = ("train", "val")
BATCH_DOCS = 512  # documents tokenized at once: what an actor holds, however large its shard


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


class ShardTokenizer:
    """A Ray actor: loads the tokenizer once, then packs each shard's documents into its own block files
    (cached per shard)."""

    def __init__(self, tokenizer_location: str, eos: str, cache_dir: str, val_fraction: float, seq_len: int):
        # one Rust thread per actor: the actors are the parallelism; a thread pool per actor over-subscribes cores
        os.environ["RAYON_NUM_THREADS"] = "1"
        self.tokenizer = Tokenizer.from_file(str(storage.local_file(tokenizer_location)))
        self.eos = np.array([self.tokenizer.token_to_id(eos)], dtype=np.uint32)
        self.cache_dir, self.val_fraction, self.width = cache_dir, val_fraction, seq_len + 1

    def tokenize(self, keyed: tuple[str, str]) -> dict:
        return build_unit(keyed, self.tokenize_into, self.cache_dir)

    def tokenize_into(self, item: tuple[int, str], out_dir: str) -> dict:
        index, path = item
        vocab_size = self.tokenizer.get_vocab_size()
        packers = {split: BlockPacker(Path(out_dir) / f"{split}-{index:05d}.arrow", self.width, vocab_size)
                   for split in SPLITS}
        stats = {f"{split}_{what}": 0 for split in SPLITS for what in ("docs", "tokens")}
        for batch in iter_batches(path, BATCH_DOCS, ["id", "text"]):
            streams = self.split_streams(batch.column("id").to_pylist(), batch.column("text").to_pylist())
            for split, (num_docs, tokens) in streams.items():
                packers[split].add(tokens)
                stats[f"{split}_docs"] += num_docs
                stats[f"{split}_tokens"] += len(tokens)
        for split, packer in packers.items():
            stats |= {f"{split}_{what}": n for what, n in packer.close().items()}
        return stats

    def split_streams(self, ids: list[str], texts: list[str]) -> dict[str, tuple[int, np.ndarray]]:
        """Each split's documents of one batch: (how many, their tokens as one array with EOS after each)."""
        pieces: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
        for doc_id, enc in zip(ids, self.tokenizer.encode_batch_fast(texts)):  # ids only, no offsets
            split = "val" if is_validation(doc_id, self.val_fraction) else "train"
            pieces[split] += [np.asarray(enc.ids, dtype=np.uint32), self.eos]
        return {split: (len(arrays) // 2, np.concatenate(arrays)) for split, arrays in pieces.items() if arrays}
