"""Train a byte-level BPE tokenizer (HF `tokenizers`) on the deduplicated text."""

import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from infra.stage import Manifest, file_digest, fingerprint, run_stage
from tasks.data.shards import iter_batches, shard_paths

VERSION = "1"
EOS, PAD = "<|endoftext|>", "<|pad|>"


class TokenizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(4096, ge=300, le=1_000_000, description="including the 256 byte symbols and special tokens")
    min_frequency: int = Field(2, ge=1, description="merges must occur at least this often")
    special_tokens: list[str] = Field(default_factory=lambda: [EOS, PAD])
    path: Path | None = Field(None, description="use this tokenizer.json instead of training one (it must have EOS and PAD)")

    @field_validator("special_tokens")
    @classmethod
    def _needs_eos_and_pad(cls, tokens: list[str]) -> list[str]:
        missing = [t for t in (EOS, PAD) if t not in tokens]
        if missing:
            raise ValueError(f"must include {missing}")
        return tokens


def iter_texts(folder: str, batch_size: int = 256) -> Iterator[str]:
    """Stream texts shard by shard, batch by batch: the corpus is never all in memory."""
    for path in shard_paths(folder):
        for batch in iter_batches(path, batch_size, ["text"]):
            yield from batch.column("text").to_pylist()


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
    fp = fingerprint("tokenizer", VERSION, cfg.model_dump(mode="json", exclude={"path"}), inputs)

    def build(folder: Path) -> dict:
        tokenizer = load_given(cfg.path) if cfg.path else train_bpe(iter_texts(deduped.root), cfg)
        save_tokenizer(tokenizer, folder)
        return {"counts": {"vocab_size": tokenizer.get_vocab_size()}, "files": {"tokenizer": "tokenizer.json"}}

    return run_stage(workdir, "tokenizer", fp, build)
