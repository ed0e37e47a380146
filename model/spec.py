"""The training spec: everything one `deepspeed model/trainer.py spec.json` run needs.

Plain dataclasses (validated at the CLI/flow boundary by pydantic; here we only
round-trip JSON), so that model/ stays free of prefect and ray.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from model.config import GPTConfig, LoRAConfig


@dataclass
class TrainConfig:
    # pydantic (at the CLI boundary) rejects unknown keys; plain dataclass everywhere else
    __pydantic_config__ = {"extra": "forbid"}

    max_steps: int = 100
    micro_batch_size: int = 8  # samples per rank per forward/backward
    # samples per optimizer step over all ranks; each rank accumulates global / (micro * ranks) micro batches, so a
    # run keeps its batch (and resumes) on any rank count that divides it. Unset: one micro batch per rank.
    global_batch_size: int | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPUs, fp32 on CPU
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile through DeepSpeed (GPU; slow to start on CPU)
    seed: int = 1234
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    # stop after this many evaluations without a better validation score (classification: macro F1)
    early_stopping_patience: int | None = None
    # checkpoints (model, optimizer, scheduler, data position, RNG) every N steps; the last K are kept
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    peak_tflops: float | None = None  # per device, for MFU; looked up for known GPUs when unset

    def resolved_global_batch(self, world: int) -> int:
        return self.global_batch_size or self.micro_batch_size * world

    def accumulation_steps(self, world: int) -> int:
        """Micro batches each rank runs per optimizer step; ValueError when the global batch does not split evenly."""
        global_batch = self.resolved_global_batch(world)
        if global_batch % (self.micro_batch_size * world):
            raise ValueError(f"train.global_batch_size={global_batch} is not a multiple of train.micro_batch_size="
                             f"{self.micro_batch_size} x {world} ranks; choose a global batch that is, or another "
                             f"micro batch or rank count")
        return global_batch // (self.micro_batch_size * world)


@dataclass
class TrainSpec:
    objective: Literal["lm", "classify", "sft"]
    model: GPTConfig
    train: TrainConfig
    # one token file, or the shards of a split (pack writes one file per unit); read as one sequence of rows
    train_data: str | list[str]
    val_data: str | list[str]
    out_dir: str
    init_from: str | None = None  # safetensors of a pretrained GPT backbone
    num_classes: int = 0
    class_weights: list[float] | None = None
    label_names: list[str] = field(default_factory=list)
    checkpoint_dir: str | None = None  # default: <out_dir>/checkpoints
    lora: LoRAConfig | None = None  # train low-rank adapters on the frozen model instead of every weight

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainSpec":
        raw = json.loads(Path(path).read_text())
        raw["model"] = GPTConfig(**raw["model"])
        train = raw["train"]
        train["betas"] = tuple(train["betas"])
        raw["train"] = TrainConfig(**train)
        raw["lora"] = LoRAConfig(**raw["lora"]) if raw.get("lora") else None
        return cls(**raw)
