"""Pretraining: next-token prediction on the packed blocks, through the shared training path."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infra.code_hash import stage_code
from infra.stage import Manifest, fingerprint
from model.config import MODEL_SIZES, GPTConfig
from model.spec import TrainConfig, TrainSpec
from tasks.train.launch import (
    LaunchConfig,
    ranks_share_the_global_batch,
    run_training,
    training_fingerprint_config,
)

CODE = stage_code(__name__, scripts=("model/trainer.py",), libraries=("torch", "deepspeed", "numpy"))


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str | None = Field("tiny", description=f"named model size, one of {sorted(MODEL_SIZES)}; overrides model.n_*")
    model: GPTConfig = GPTConfig()
    train: TrainConfig = TrainConfig(global_batch_size=16)
    launch: LaunchConfig = LaunchConfig()
    _ranks_share_the_global_batch = model_validator(mode="after")(ranks_share_the_global_batch)

    @model_validator(mode="after")
    def _known_size(self):
        if self.size is not None and self.size not in MODEL_SIZES:
            raise ValueError(f"size {self.size!r} is not one of {sorted(MODEL_SIZES)}")
        return self

    def model_config_for(self, vocab_size: int, seq_len: int, eos_id: int | None = None) -> GPTConfig:
        fields = self.model.to_dict() | (MODEL_SIZES[self.size] if self.size else {})
        return GPTConfig(**(fields | {"vocab_size": vocab_size, "seq_len": seq_len, "eos_id": eos_id}))


def pretrain(packed: Manifest, cfg: PretrainConfig, workdir: str) -> Manifest:
    fp = fingerprint("pretrain", CODE, training_fingerprint_config(cfg), [packed.fingerprint])

    def prepare(work: Path) -> tuple[TrainSpec, dict]:
        train_data, val_data = ([str(path) for path in packed.local_files(f"{split}-")] for split in ("train", "val"))
        spec = TrainSpec(objective="lm", model=cfg.model_config_for(packed.stats["vocab_size"], packed.stats["seq_len"], packed.stats["eos_id"]),
                         train=cfg.train, train_data=train_data, val_data=val_data, out_dir=str(work))
        return spec, {"counts": {"steps": cfg.train.max_steps}}

    return run_training(workdir, "pretrain", fp, cfg.launch, prepare)
