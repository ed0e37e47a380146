"""The one module that imports DeepSpeed: config generation, initialisation, weight gathering."""

import math
import os
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist

from model.spec import TrainConfig


def init_distributed() -> tuple[int, int]:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo":
        # On CPU, DeepSpeed's comm backend JIT-compiles a shared-memory all-reduce op (`deepspeed_shm_comm`: minutes
        # of C++ the first time in each environment, every rank waiting on one lock) that only its
        # inference_all_reduce uses; training all-reduces through gloo. Marking it unavailable skips the build.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def deepspeed_config(cfg: TrainConfig) -> dict:
    zero = {"stage": cfg.zero_stage}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": resolved_precision(cfg) == "bf16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }


def resolved_precision(cfg: TrainConfig) -> str:
    if cfg.precision == "auto":
        return "bf16" if torch.cuda.is_available() else "fp32"
    return cfg.precision


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms and biases (1-D) keep their scale."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def initialize(model: torch.nn.Module, cfg: TrainConfig):
    fused = torch.cuda.is_available()
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg)
    )
    if cfg.compile:
        engine.compile()
    return engine


def save_checkpoint(engine, folder: Path, tag: str, client_state: dict) -> None:
    """Every rank writes its own partition; `latest` is ours to write (see model/checkpoint.py), not DeepSpeed's."""
    engine.save_checkpoint(str(folder), tag=tag, client_state=client_state, save_latest=False)


def load_checkpoint(engine, folder: Path, tag: str) -> dict:
    path, client_state = engine.load_checkpoint(str(folder), tag=tag, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"{folder / tag}: DeepSpeed could not load this checkpoint")
    return client_state


def optimizer_state_numel(engine) -> int:
    """Elements of optimizer state (Adam moments) this rank holds: all of them under ZeRO-0, a 1/N share above."""
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the torch optimizer
    return sum(t.numel() for state in inner.state.values() for t in state.values()
               if torch.is_tensor(t) and t.numel() > 1)  # skip per-parameter step counters


def full_state_dict(engine) -> dict | None:
    """The whole model's weights on rank 0 (gathered from partitions under ZeRO-3); None elsewhere."""
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
        return state if dist.get_rank() == 0 else None
    return engine.module.state_dict() if dist.get_rank() == 0 else None


def threads_per_rank() -> int:
    local_size = int(os.environ.get("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(1, local_size))
