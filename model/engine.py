"""The one module that imports DeepSpeed: config generation, partitioned construction, initialisation, checkpoints
that any world size can read, weight gathering."""

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.runtime.zero.partition_parameters import GatheredParameters
from deepspeed.utils import (
    safe_get_full_fp32_param,
    safe_get_full_optimizer_state,
    safe_set_full_fp32_param,
    safe_set_full_optimizer_state,
)
from safetensors import safe_open
from safetensors.torch import save_file

from infra.files import atomic_write, atomic_write_text
from model.spec import TrainConfig

ADAM_STATE = ("exp_avg", "exp_avg_sq")
UNIVERSAL_TENSORS, UNIVERSAL_STATE = "universal.safetensors", "universal.json"


def init_distributed() -> tuple[int, int]:
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo":
        # On CPU, DeepSpeed's comm backend JIT-compiles a shared-memory all-reduce op (`deepspeed_shm_comm`: minutes
        # of C++ the first time in each environment, every rank waiting on one lock) that only its
        # inference_all_reduce uses; training all-reduces through gloo. Marking it unavailable skips the build.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend=backend)
    return dist.get_rank(), dist.get_world_size()


def deepspeed_config(cfg: TrainConfig, world: int) -> dict:
    zero = {"stage": cfg.zero_stage}
    if cfg.zero_stage == 3:
        # DeepSpeed keeps parameters under 1e5 elements whole on every rank; every one of them is partitioned here,
        # so that no rank holds the whole of any model (the debug model's matrices are all under that threshold)
        zero["stage3_param_persistence_threshold"] = 0
    return {
        "train_batch_size": cfg.resolved_global_batch(world),
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.accumulation_steps(world),
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


def build(factory: Callable[[], torch.nn.Module], cfg: TrainConfig, world: int) -> torch.nn.Module:
    """`factory()`, under ZeRO-3 inside `deepspeed.zero.Init`: each module's parameters are split across the ranks
    as soon as that module is built, so no rank ever holds the whole model."""
    if cfg.zero_stage != 3:
        return factory()
    with deepspeed.zero.Init(config_dict_or_path=deepspeed_config(cfg, world)):
        return factory()


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy full tensors into a module built by `build`, whose parameters may be partitioned (ZeRO-3)."""
    for name, param in module.named_parameters():
        if name in tensors:
            with GatheredParameters([param], modifier_rank=0, enabled=hasattr(param, "ds_id")):
                param.data.copy_(tensors[name].reshape(param.shape))


def held_param_numel(model: torch.nn.Module) -> tuple[int, int]:
    """(elements of parameters this rank holds, elements of the whole model): a ZeRO-3 rank holds only its slices."""
    params = list(model.parameters())  # each shared (tied) parameter once
    held = sum(p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in params)
    full = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params)
    return held, full


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the projection matrices only: embeddings (and the lm_head tied to them), norms and biases keep
    their scale, as in GPT-3, Llama and OLMo: shrinking a token's embedding toward 0 only because the token is rare
    is not regularisation."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    params = [p for p in model.parameters() if p.requires_grad]
    # a partitioned (ZeRO-3) parameter reports its full shape in ds_shape
    decayed = [len(getattr(p, "ds_shape", p.shape)) >= 2 and id(p) not in embeddings for p in params]
    groups = [
        {"params": [p for p, d in zip(params, decayed) if d], "weight_decay": weight_decay},
        {"params": [p for p, d in zip(params, decayed) if not d], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]  # LoRA trains matrices only: DeepSpeed drops an empty group


def lr_lambda(cfg: TrainConfig):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def initialize(model: torch.nn.Module, cfg: TrainConfig, world: int):
    fused = torch.cuda.is_available()
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )
    if cfg.compile:
        engine.compile()
    return engine


def save_checkpoint(engine, folder: Path, tag: str, client_state: dict) -> None:
    """Every rank writes its own partition (DeepSpeed's layout, for a resume on the same world size); rank 0 also
    writes the universal copy beside it. `latest` is ours to write (see model/checkpoint.py), not DeepSpeed's."""
    engine.save_checkpoint(str(folder), tag=tag, client_state=client_state, save_latest=False)
    save_universal(engine, folder / tag, client_state)


def load_checkpoint(engine, folder: Path, tag: str) -> dict:
    path, client_state = engine.load_checkpoint(str(folder), tag=tag, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"{folder / tag}: DeepSpeed could not load this checkpoint")
    return client_state


def save_universal(engine, folder: Path, client_state: dict) -> None:
    """The training state by parameter name, whole (fp32 master weights, Adam's moments), with the optimizer step,
    the LR schedule and `client_state` (JSON): what a run on any other world size starts from. Gathered from the
    partitions on rank 0, one parameter at a time."""
    link_optimizer_state(engine)
    tensors = {}
    for name, param in engine.module.named_parameters():
        for key in state_keys(param):
            full = full_tensor(engine, param, key)  # collective: every rank, same order
            if dist.get_rank() == 0:
                tensors[f"{key or 'fp32'}/{name}"] = full.detach().to("cpu", copy=True).contiguous()
    if dist.get_rank() == 0:
        state = {"optimizer_step": optimizer_step(engine), "scheduler": engine.lr_scheduler.state_dict(),
                 "client_state": client_state}
        atomic_write(folder / UNIVERSAL_TENSORS, lambda partial: save_file(tensors, str(partial)))
        atomic_write_text(folder / UNIVERSAL_STATE, json.dumps(state))


def state_keys(param: torch.nn.Parameter) -> tuple[str | None, ...]:
    """What the universal copy keeps of a parameter: its weight (None), and Adam's moments if it trains (a frozen
    LoRA base has none)."""
    return (None, *ADAM_STATE) if param.requires_grad else (None,)


def load_universal(engine, folder: Path, global_batch: int, accumulation: int) -> dict:
    """Start a freshly initialised engine (any world size, any ZeRO stage) from `save_universal`'s copy; returns its
    client_state. Every rank reads each tensor and keeps its own slice."""
    state = json.loads((folder / UNIVERSAL_STATE).read_text())
    create_adam_state(engine, state["optimizer_step"])
    with safe_open(str(folder / UNIVERSAL_TENSORS), framework="pt") as tensors:
        for name, param in engine.module.named_parameters():
            for key in state_keys(param):
                set_full_tensor(engine, param, tensors.get_tensor(f"{key or 'fp32'}/{name}"), key)
    scheduler = engine.lr_scheduler
    scheduler.load_state_dict(state["scheduler"])
    for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr  # what the last scheduler step set: the first step after the resume uses it
    step = state["client_state"]["step"]
    engine.global_steps, engine.global_samples, engine.micro_steps = step, step * global_batch, step * accumulation
    return state["client_state"]


def torch_optimizer(engine) -> torch.optim.Optimizer:
    return getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO wraps the torch optimizer


def optimizer_step(engine) -> int:
    steps = {int(s["step"]) for s in torch_optimizer(engine).state.values() if "step" in s}
    assert len(steps) <= 1, f"parameters at different optimizer steps: {steps}"
    return steps.pop() if steps else 0


def create_adam_state(engine, step: int) -> None:
    """AdamW's state as its first step would create it, at `step`: torch creates it lazily, and the moments are
    about to be overwritten with the checkpoint's. ZeRO-1/2 then link each parameter's fragment of the flat state."""
    inner = torch_optimizer(engine)
    for group, p in optimized_tensors(engine):
        on_device = group.get("fused") or group.get("capturable")
        inner.state[p] = {"step": torch.tensor(float(step), device=p.device if on_device else "cpu"),
                          "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
    link_optimizer_state(engine)


def link_optimizer_state(engine) -> None:
    """ZeRO-1/2 (and bf16) point each parameter at its fragment of the flat optimizer state once, after their first
    step of param group 0, when the other groups have no state yet: link them all (again) before reading them."""
    if hasattr(engine.optimizer, "_lazy_init_hp_params_optimizer_state"):
        engine.optimizer._hp_optimizer_states_linked = False
        engine.optimizer._lazy_init_hp_params_optimizer_state()


def optimized_tensors(engine) -> list[tuple[dict, torch.Tensor]]:
    """(param group, tensor) for each tensor the torch optimizer updates: the model's parameters (ZeRO-0), this rank's
    flat fp32 partitions (ZeRO-1/2; ZeRO-3, which hands them to the optimizer only for the length of its step)."""
    inner = torch_optimizer(engine)
    flat = getattr(engine.optimizer, "fp32_partitioned_groups_flat", None)
    if flat is not None:
        return [(inner.param_groups[engine.optimizer.sub_group_to_group_id[i]], p) for i, p in enumerate(flat)]
    return [(group, p) for group in inner.param_groups for p in group["params"]]


def full_tensor(engine, param: torch.nn.Parameter, key: str | None = None) -> torch.Tensor:
    """A parameter's whole fp32 master weight (key None) or optimizer state, gathered from the ranks' partitions.
    Collective under ZeRO 1-3: every rank calls it for the same parameters in the same order."""
    full = safe_get_full_fp32_param(param) if key is None else safe_get_full_optimizer_state(param, key)
    if full is not None:
        return full.reshape(getattr(param, "ds_shape", param.shape))
    # ZeRO-0 in fp32: the torch optimizer updates the parameters themselves, on every rank
    return param.detach() if key is None else torch_optimizer(engine).state[param][key]


def set_full_tensor(engine, param: torch.nn.Parameter, value: torch.Tensor, key: str | None = None) -> None:
    """The inverse of `full_tensor`: each rank keeps its slice of `value` as master weight or optimizer state, and
    for the weight also the model's (low-precision) copy."""
    value = value.to(param.device)
    if hasattr(param, "ds_id") or hasattr(param, "_hp_mapping"):
        if key is None:
            safe_set_full_fp32_param(param, value)
        else:
            safe_set_full_optimizer_state(param, value, key)
    elif key is not None:
        torch_optimizer(engine).state[param][key].copy_(value)
    if key is None:
        with GatheredParameters([param], modifier_rank=0, enabled=hasattr(param, "ds_id")):
            param.data.copy_(value.reshape(param.shape))


def optimizer_state_numel(engine) -> int:
    """Elements of optimizer state (Adam moments) this rank holds: all of them under ZeRO-0, a 1/N share above."""
    return sum(t.numel() for state in torch_optimizer(engine).state.values() for t in state.values()
               if torch.is_tensor(t) and t.numel() > 1)  # skip per-parameter step counters


def full_state_dict(engine) -> dict | None:
    """The whole model's fp32 master weights on rank 0, gathered from the partitions under ZeRO; None elsewhere.
    On GPUs these are the fp32 weights the optimizer updates, not their bf16 copies the forward pass used."""
    state = {}
    for name, param in engine.module.named_parameters():
        full = full_tensor(engine, param)  # collective
        if dist.get_rank() == 0:
            state[name] = full.detach().to("cpu", copy=True)
    return state if dist.get_rank() == 0 else None


def threads_per_rank() -> int:
    local_size = int(os.environ.get("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, (os.cpu_count() or 1) // max(1, local_size))
