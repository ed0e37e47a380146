"""Train a byte-level BPE tokenizer (HF `tokenizers`) on a sample of the deduplicated text that Ray workers draw.

The sample: every document gets a score, a 64-bit hash of (tokenizer.sample_seed, its id); the
sample is the documents with the smallest scores until their UTF-8 bytes reach tokenizer.sample_bytes
(every document of a smaller corpus). Ties at the last score are all in, so the sample, and the
tokenizer, do not depend on how the corpus is sharded. Workers score their shards in rounds and
return only their own smallest scores (bounded by the cap, and by the threshold found so far);
the driver keeps the merged bottom, never the corpus. Then the workers write the chosen texts to
scratch files, which the driver reads (the sample is bounded) and feeds to the trainer in score order.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from infra import storage
from infra.code_hash import stage_code
from infra.ray_map import cluster_cpus, map_shards
from infra.stage import Manifest, file_digest, fingerprint, run_stage
from tasks.data.shards import (
    iter_batches,
    read_table,
    shard_paths,
    write_parquet_atomic,
)

CODE = stage_code(__name__, libraries=("tokenizers", "numpy", "pyarrow"))
EOS, PAD = "<|endoftext|>", "<|pad|>"
SAMPLE_BYTES = 256 * 2**20
SCORE_BATCH = 8192  # documents a worker scores at once (ids and lengths only stay in memory)
ROUND_SHARDS_PER_CPU = 4  # shards per scoring round, per cluster CPU: enough to keep every CPU busy


class TokenizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(4096, ge=300, le=1_000_000, description="including the 256 byte symbols and special tokens")
    min_frequency: int = Field(2, ge=1, description="merges must occur at least this often")
    special_tokens: list[str] = Field(default_factory=lambda: [EOS, PAD])
    sample_bytes: int = Field(SAMPLE_BYTES, ge=1, description=(
        "BPE trains on a sample of about this many UTF-8 bytes of text (default 256 MiB): the documents with the "
        "smallest hash of (sample_seed, id) until their bytes reach it; a smaller corpus is used whole"))
    sample_seed: int = Field(0, ge=0, lt=2**63, description="seed of the hash that picks the sample: another seed, "
                                                            "another sample of the same size")
    path: Path | None = Field(None, description="use this tokenizer.json instead of training one (it must have EOS and PAD)")

    @field_validator("special_tokens")
    @classmethod
    def _needs_eos_and_pad(cls, tokens: list[str]) -> list[str]:
        missing = [t for t in (EOS, PAD) if t not in tokens]
        if missing:
            raise ValueError(f"must include {missing}")
        return tokens


def doc_scores(seed: int, ids: list[str]) -> np.ndarray:
    """64-bit hashes of (seed, id): the order documents enter the sample, whatever shard they are in."""
    digests = (hashlib.blake2b(f"{seed}\0{doc_id}".encode(), digest_size=8).digest() for doc_id in ids)
    return np.fromiter((int.from_bytes(d, "big") for d in digests), dtype=np.uint64, count=len(ids))


def bottom(scores: np.ndarray, sizes: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest scores whose sizes first reach `cap` (all when they never do), sorted, with every tie of the last."""
    order = np.argsort(scores, kind="stable")
    scores, sizes = scores[order], sizes[order]
    reached = np.cumsum(sizes) >= cap
    if reached.any():
        end = np.searchsorted(scores, scores[np.argmax(reached)], side="right")
        scores, sizes = scores[:end], sizes[:end]
    return scores, sizes


def shard_candidates(path: str, seed: int, cap: int, below: int | None) -> tuple[np.ndarray, np.ndarray]:
    """On a worker: (scores, UTF-8 sizes) of this shard's documents that can be in the sample, at most its own bottom
    `cap` bytes, and none above `below` (the threshold of the shards merged so far)."""
    scores, sizes = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    for batch in iter_batches(path, SCORE_BATCH, ["id", "text"]):
        batch_scores = doc_scores(seed, batch.column("id").to_pylist())
        batch_sizes = pc.binary_length(batch.column("text")).fill_null(0).to_numpy().astype(np.int64)
        keep = batch_scores <= np.uint64(below if below is not None else np.iinfo(np.uint64).max)
        scores, sizes = bottom(np.concatenate([scores, batch_scores[keep]]), np.concatenate([sizes, batch_sizes[keep]]), cap)
    return scores, sizes


def sample_bottom(paths: list[str], cfg: TokenizerConfig) -> tuple[np.ndarray, np.ndarray]:
    """(scores, sizes) of the sample, merged a round of shards at a time: the driver holds one round's candidates."""
    scores, sizes = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    per_round = ROUND_SHARDS_PER_CPU * cluster_cpus() if paths else 1
    for start in range(0, len(paths), per_round):
        # once the cap is reached no score above the current last one can enter: later shards return none of them
        below = int(scores[-1]) if sizes.sum() >= cfg.sample_bytes else None
        found = map_shards(shard_candidates, paths[start : start + per_round], "tokenizer sample",
                           seed=cfg.sample_seed, cap=cfg.sample_bytes, below=below)
        for shard_scores, shard_sizes in found:
            scores, sizes = bottom(np.concatenate([scores, shard_scores]), np.concatenate([sizes, shard_sizes]),
                                   cfg.sample_bytes)
    return scores, sizes


def write_sample(item: tuple[int, str], seed: int, threshold: int, sample_dir: str) -> int:
    """On a worker: this shard's documents scored <= threshold, as <sample_dir>/sample-NNNNN.parquet (none: no file)."""
    index, path = item
    chosen = []
    for batch in iter_batches(path, SCORE_BATCH, ["id", "text"]):
        scores = doc_scores(seed, batch.column("id").to_pylist())
        mask = pa.array(scores <= np.uint64(threshold))
        chosen.append(pa.table({"score": pa.array(scores, pa.uint64()).filter(mask), "text": batch.column("text").filter(mask)}))
    table = pa.concat_tables(chosen) if chosen else None
    if table is None or table.num_rows == 0:
        return 0
    with storage.writing(sample_dir) as out:
        write_parquet_atomic(table, out / f"sample-{index:05d}.parquet")
    return table.num_rows


def sample_texts(files: list[str]) -> Iterator[str]:
    """The sample in (score, text) order, so the trainer sees the same sequence for any sharding."""
    table = pa.concat_tables([read_table(f) for f in files]).sort_by([("score", "ascending"), ("text", "ascending")])
    for batch in table.to_batches(max_chunksize=256):
        yield from batch.column("text").to_pylist()


def train_on_sample(deduped: Manifest, cfg: TokenizerConfig, sample_dir: str) -> tuple[Tokenizer, dict]:
    paths = shard_paths(deduped.root)
    scores, sizes = sample_bottom(paths, cfg)
    counts = {"sample_docs": len(scores), "sample_bytes": int(sizes.sum())}
    files = []
    if len(scores):
        written = map_shards(write_sample, list(enumerate(paths)), "tokenizer sample texts",
                             seed=cfg.sample_seed, threshold=int(scores[-1]), sample_dir=sample_dir)
        if sum(written) != len(scores):  # our own invariant: the shards did not change between the two passes
            raise AssertionError(f"tokenizer sample: {sum(written)} documents written, {len(scores)} chosen")
        files = [storage.join(sample_dir, f"sample-{i:05d}.parquet") for i, n in enumerate(written) if n]
    (trained,) = map_shards(bpe_on_worker, [files], "tokenizer: train BPE", cfg=cfg)
    return Tokenizer.from_str(trained), counts


def bpe_on_worker(files: list[str], cfg: TokenizerConfig) -> str:
    """On a Ray worker: the BPE trainer's memory follows the sample, and the driver's stays flat."""
    return train_bpe(sample_texts(files) if files else iter([]), cfg).to_str()


def train_bpe(texts: Iterator[str], cfg: TokenizerConfig) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=cfg.special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    """tokenizer.json plus the config that lets transformers' PreTrainedTokenizerFast load the folder."""
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS, "pad_token": PAD,
              "model_max_length": 1_000_000}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def load_given(path: Path) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception type with the parse error
        raise ValueError(f"tokenizer.path: {path} is not a tokenizers JSON file ({str(err).splitlines()[0]})") from None
    missing = [t for t in (EOS, PAD) if tokenizer.token_to_id(t) is None]
    if missing:
        raise ValueError(f"tokenizer.path: {path} lacks the special tokens {missing}")
    return tokenizer


def train_tokenizer(deduped: Manifest, cfg: TokenizerConfig, workdir: str) -> Manifest:
    # a given tokenizer depends on its own bytes only: a growing corpus keeps it, and the token shards already made
    inputs = [file_digest(cfg.path)] if cfg.path else [deduped.fingerprint]
    unused = {"path", "sample_bytes", "sample_seed"} if cfg.path else {"path"}
    fp = fingerprint("tokenizer", CODE, cfg.model_dump(mode="json", exclude=unused), inputs)

    def build(folder: Path) -> dict:
        if cfg.path:
            tokenizer, counts, stats = load_given(cfg.path), {}, {}
        else:
            sample_dir = storage.join(workdir, "tokenizer", f".sample-{storage.new_attempt()}")  # scratch, not output
            try:
                tokenizer, counts = train_on_sample(deduped, cfg, sample_dir)
            finally:
                storage.remove(sample_dir)
            stats = {"sample_cap_bytes": cfg.sample_bytes, "sample_seed": cfg.sample_seed}
        save_tokenizer(tokenizer, folder)
        return {"counts": {"vocab_size": tokenizer.get_vocab_size(), **counts}, "stats": stats,
                "files": {"tokenizer": "tokenizer.json"}}

    return run_stage(workdir, "tokenizer", fp, build)
