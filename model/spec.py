"""The training spec: everything one `deepspeed model/trainer.py spec.json` run needs.

Plain dataclasses (validated at the CLI/flow boundary by pydantic; here we only
round-trip JSON), so that model/ stays free of prefect and ray.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from model.config import GPTConfig


@dataclass
class TrainConfig:
    # pydantic (at the CLI boundary) rejects unknown keys; plain dataclass everywhere else
    __pydantic_config__ = {"extra": "forbid"}

    max_steps: int = 100
    micro_batch_size: int = 8
    grad_accum_steps: int = 1
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

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainSpec":
        raw = json.loads(Path(path).read_text())
        raw["model"] = GPTConfig(**raw["model"])
        train = raw["train"]
        train["betas"] = tuple(train["betas"])
        raw["train"] = TrainConfig(**train)
        return cls(**raw)
