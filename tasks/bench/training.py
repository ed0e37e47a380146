"""`tokenmill bench train`: our DeepSpeed loop against a plain PyTorch loop, same model, batch and process count.

Both read the same memory-mapped token blocks with the same batch function, run the same
model and AdamW settings with the same threads, and are timed per optimizer step; the
figure is the median tokens/s over the steps after a warm-up. The token values are random
(throughput does not depend on them), so the benchmark needs no data stages.
"""

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

import model
from infra.files import read_jsonl
from infra.launch import deepspeed_command, gpu_count, launch_env, run_streaming
from model.data import TokenArrays, TokenRowWriter, lm_batch, rank_batches
from model.engine import lr_lambda, param_groups, resolved_precision
from model.gpt import GPT, MODEL_SIZES, GPTConfig
from model.spec import TrainConfig, TrainSpec
from model.trainer import Throughput


class BenchTrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str = Field("tiny", description=f"one of {sorted(MODEL_SIZES)}")
    seq_len: int = Field(128, ge=8)
    vocab_size: int = Field(4096, ge=16)
    micro_batch_size: int = Field(16, ge=1)
    steps: int = Field(30, ge=4)
    warmup: int = Field(5, ge=1, description="steps left out of the figure (allocation, compilation)")
    zero_stage: int = Field(2, ge=0, le=3)
    precision: str = Field("auto", pattern="^(auto|fp32|bf16)$")
    compile: bool = False
    activation_checkpointing: bool = False


def train_config(cfg: BenchTrainConfig) -> TrainConfig:
    return TrainConfig(max_steps=cfg.steps, micro_batch_size=cfg.micro_batch_size, warmup_steps=2, log_every=1,
                       eval_every=10**9, eval_batches=1, zero_stage=cfg.zero_stage, precision=cfg.precision,
                       compile=cfg.compile, activation_checkpointing=cfg.activation_checkpointing)


def write_random_blocks(folder: Path, cfg: BenchTrainConfig) -> tuple[Path, Path]:
    rows = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(cfg.micro_batch_size * (cfg.steps + 2), cfg.seq_len + 1))
    paths = folder / "train.arrow", folder / "val.arrow"
    for path, part in zip(paths, (rows, rows[: cfg.micro_batch_size])):
        writer = TokenRowWriter(path, cfg.seq_len + 1, cfg.vocab_size)
        writer.write(part)
        writer.close()
    return paths


def plain_pytorch(gpt_cfg: GPTConfig, train: TrainConfig, train_path: Path) -> list[float]:
    """The baseline: a textbook loop (AdamW, clipping, LR schedule, autocast on GPU), tokens/s per step."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(train.seed)
    net = GPT(gpt_cfg).to(device)
    net.activation_checkpointing = train.activation_checkpointing
    optimizer = torch.optim.AdamW(param_groups(net, train.weight_decay), lr=train.lr, betas=train.betas,
                                  fused=device == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train))
    step_fn = torch.compile(net) if train.compile else net
    bf16 = resolved_precision(train) == "bf16"
    rows = TokenArrays(train_path)
    batches = rank_batches(len(rows), train.micro_batch_size, train.seed, 0, 1)
    rates = []
    for _ in range(train.max_steps):
        started = time.perf_counter()
        x, y = (t.to(device) for t in lm_batch(rows, next(batches)))
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = step_fn(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), train.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # the DeepSpeed loop reads the loss every step too
        rates.append(x.numel() / (time.perf_counter() - started))
    return rates


def deepspeed_loop(gpt_cfg: GPTConfig, train: TrainConfig, paths: tuple[Path, Path], folder: Path) -> list[float]:
    """Our loop, as the pipeline runs it: model/trainer.py under the deepspeed launcher, 1 process."""
    spec = TrainSpec(objective="lm", model=gpt_cfg, train=train, train_data=str(paths[0]), val_data=str(paths[1]),
                     out_dir=str(folder / "deepspeed"))
    spec_path = folder / "spec.json"
    spec.save(spec_path)
    cmd = deepspeed_command(Path(model.__file__).parent / "trainer.py", [str(spec_path)], 1)
    lines: list[str] = []
    run_streaming(cmd, launch_env(1, gpu_count() > 0), lines.append, cwd=folder)
    records = read_jsonl(folder / "deepspeed" / "metrics.jsonl")
    return [r["tokens_per_s"] for r in records if r["split"] == "train"]


def bench_train(cfg: BenchTrainConfig, folder: Path) -> dict:
    folder = folder.resolve()  # the launcher runs in it: paths handed over must not be relative
    folder.mkdir(parents=True, exist_ok=True)
    gpt_cfg = GPTConfig(**(MODEL_SIZES[cfg.size] | {"vocab_size": cfg.vocab_size, "seq_len": cfg.seq_len}))
    train = train_config(cfg)
    paths = write_random_blocks(folder, cfg)
    torch.set_num_threads(os.cpu_count() or 1)  # what the launcher gives its one CPU rank
    plain = statistics.median(plain_pytorch(gpt_cfg, train, paths[0])[cfg.warmup:])
    ours = statistics.median(deepspeed_loop(gpt_cfg, train, paths, folder)[cfg.warmup:])
    with torch.device("meta"):  # shapes only: counting parameters needs no memory
        shape_only = GPT(gpt_cfg)
    result = {"config": cfg.model_dump(), "params": shape_only.num_params(),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{os.cpu_count()}",
              "precision": resolved_precision(train), "plain_tokens_per_s": plain, "deepspeed_tokens_per_s": ours,
              "overhead": plain / ours}
    peak = Throughput(shape_only, 1)
    if peak.peak:
        result |= {"plain_mfu": peak.measure(plain, 1.0)["mfu"], "deepspeed_mfu": peak.measure(ours, 1.0)["mfu"]}
    (folder / "bench_train.json").write_text(json.dumps(result, indent=2))
    return result
