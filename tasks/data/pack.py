"""Tokenize on Ray (Ray tasks on the warm worker pool; each worker process loads the tokenizer once) and pack
fixed-length blocks, shard by shard.

Each document ends with EOS. Documents go to train or validation by a hash of their id
(not by block), so no document straddles the split. Blocks hold seq_len + 1 tokens: the
trainer reads inputs [:-1] and targets [1:]. Each shard is packed on its own into
`train-NNNNN.arrow` / `val-NNNNN.arrow` (its tail that fills no block is dropped and counted),
so the driver never holds or concatenates tokens; the manifest names every block file, one
role per file (`train-00003`), and `packed.roles("train-")` lists a split's roles in shard order.
"""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from infra import storage
from infra.code_hash import stage_code
from infra.shard_cache import cached_map, content_keys
from infra.stage import Manifest, fingerprint, run_stage
from tasks.data.shards import shard_paths
from tasks.data.tokenize_shard import SPLITS, is_validation, tokenize_into  # noqa: F401 - is_validation: sft
from tasks.data.tokenizer import EOS

CODE = stage_code(__name__, libraries=("tokenizers", "numpy", "pyarrow"))


class PackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(128, ge=8, le=65536, description="tokens the model sees per sequence")
    val_fraction: float = Field(0.05, gt=0, lt=1, description="share of documents (by id hash) held out")


def block_files(unit_stats: list[dict]) -> dict[str, str]:
    """Role -> file name of every block file the linked units hold (a unit writes no file for a split with no block)."""
    return {f"{split}-{index:05d}": f"{split}-{index:05d}.arrow"
            for index, stats in enumerate(unit_stats) for split in SPLITS if stats[f"{split}_blocks"] > 0}


def summed_counts(unit_stats: list[dict]) -> dict[str, int]:
    per_unit = [{k: v for k, v in s.items() if isinstance(v, int)} for s in unit_stats]
    return {k: sum(s[k] for s in per_unit) for k in per_unit[0]} if per_unit else {}


def tokenize_and_pack(deduped: Manifest, tokenizer: Manifest, cfg: PackConfig, workdir: str) -> Manifest:
    fp = fingerprint("pack", CODE, cfg.model_dump(mode="json"),
                     [deduped.fingerprint, tokenizer.fingerprint])

    def build(folder: Path) -> dict:
        cache_dir = storage.join(workdir, "pack", ".units")
        unit_cfg = {"val_fraction": cfg.val_fraction, "seq_len": cfg.seq_len}  # what a unit's blocks depend on, besides its bytes
        # keyed by the tokenizer's bytes, not its fingerprint: the same vocabulary trained again reuses the units
        vocabulary = storage.digest(tokenizer.file("tokenizer"))
        paths = shard_paths(deduped.root)
        keyed = [(fingerprint("tokenize-shard", CODE, unit_cfg, [vocabulary, key]), p)
                 for key, p in zip(content_keys(paths), paths)]
        # unit i's files -> train-0000i.arrow, ...
        unit_stats = cached_map(tokenize_into, keyed, "tokenize", cache_dir, tokenizer=tokenizer.file("tokenizer"),
                                vocabulary=vocabulary, eos=EOS, **unit_cfg)
        counts = summed_counts(unit_stats)
        for split in SPLITS:
            if counts.get(f"{split}_blocks", 0) == 0:
                raise ValueError(f"pack: the {split} split holds no full block of {cfg.seq_len + 1} tokens in any shard; "
                                 f"lower pack.seq_len, change pack.val_fraction or add documents")
        eos_id = Tokenizer.from_file(str(tokenizer.local_file("tokenizer"))).token_to_id(EOS)  # for document masks
        return {"counts": counts, "files": block_files(unit_stats),
                "stats": {"seq_len": cfg.seq_len, "vocab_size": tokenizer.counts["vocab_size"], "eos_id": eos_id,
                          "num_shards": len(keyed)}}

    return run_stage(workdir, "pack", fp, build)
