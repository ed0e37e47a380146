"""Tokenize on Ray (one actor per worker loads the tokenizer once) and pack fixed-length blocks.

Each document ends with EOS. Documents go to train or validation by a hash of their id
(not by block), so no document straddles the split. Blocks hold seq_len + 1 tokens: the
trainer reads inputs [:-1] and targets [1:].
"""

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infra import storage
from infra.ray_map import map_with_actors
from infra.shard_cache import is_complete, unit_files, unit_record
from infra.stage import Manifest, fingerprint, run_stage
from infra.token_files import TokenRowWriter
from tasks.data.shards import shard_paths
from tasks.data.tokenize_shard import SPLITS, ShardTokenizer, is_validation  # noqa: F401 - is_validation: sft
from tasks.data.tokenizer import EOS

VERSION = "1"


class PackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(128, ge=8, le=65536, description="tokens the model sees per sequence")
    val_fraction: float = Field(0.05, gt=0, lt=1, description="share of documents (by id hash) held out")
    num_actors: int = Field(2, ge=1, description="Ray actors that tokenize in parallel")


def pack_blocks(stream_paths: list[Path], out_path: Path, seq_len: int, vocab_size: int) -> dict:
    """Concatenate token streams shard by shard into blocks of seq_len + 1; the tail that fills no block is dropped."""
    width = seq_len + 1
    writer = TokenRowWriter(out_path, width, vocab_size)
    carry = np.zeros(0, dtype=np.uint32)
    for path in stream_paths:
        tokens = np.concatenate([carry, np.load(path, allow_pickle=False).astype(np.uint32)])
        num_full = len(tokens) // width
        writer.write(tokens[: num_full * width].reshape(num_full, width))
        carry = tokens[num_full * width :]
    writer.close()
    return {"blocks": writer.num_rows, "dropped_tail_tokens": int(len(carry))}


def tokenize_and_pack(deduped: Manifest, tokenizer: Manifest, cfg: PackConfig, workdir: str) -> Manifest:
    fp = fingerprint("pack", VERSION, cfg.model_dump(mode="json", exclude={"num_actors"}),
                     [deduped.fingerprint, tokenizer.fingerprint])

    def build(folder: Path) -> dict:
        cache_dir = storage.join(workdir, "pack", ".units")
        unit_cfg = {"val_fraction": cfg.val_fraction}  # what a shard's token streams depend on, besides its bytes
        keyed = [(fingerprint("tokenize-shard", VERSION, unit_cfg, [tokenizer.fingerprint, storage.digest(p)]), p)
                 for p in shard_paths(deduped.root)]
        todo = [(key, path) for key, path in dict(keyed).items() if not is_complete(cache_dir, key)]
        init = (tokenizer.file("tokenizer"), EOS, cache_dir, cfg.val_fraction)
        if todo:
            map_with_actors(ShardTokenizer, init, "tokenize", todo, cfg.num_actors, "tokenize")
        records = [unit_record(cache_dir, key) for key, _ in keyed]
        per_shard = [{k: v for k, v in r["stats"].items() if isinstance(v, int)} for r in records]
        counts = {k: sum(s[k] for s in per_shard) for k in per_shard[0]} if per_shard else {}
        counts["units_reused"] = len(keyed) - len(todo)
        vocab_size = tokenizer.counts["vocab_size"]
        streams = [unit_files(cache_dir, key, record) for (key, _), record in zip(keyed, records)]
        packed = {split: pack_blocks([storage.local_file(f) for files in streams for f in files
                                      if storage.name_of(f).startswith(f"{split}-")],
                                     folder / f"{split}.arrow", cfg.seq_len, vocab_size)
                  for split in SPLITS}
        for split, result in packed.items():
            if result["blocks"] == 0:
                raise ValueError(f"pack: the {split} split holds no full block of {cfg.seq_len + 1} tokens; "
                                 f"lower pack.seq_len, change pack.val_fraction or add documents")
            counts[f"{split}_blocks"] = result["blocks"]
        return {"counts": counts, "stats": {"seq_len": cfg.seq_len, "vocab_size": vocab_size, "num_shards": len(per_shard)},
                "files": {split: f"{split}.arrow" for split in SPLITS}}

    return run_stage(workdir, "pack", fp, build)
