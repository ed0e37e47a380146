"""One training loop for pretraining (next-token LM) and fine-tuning (classification).

    deepspeed --num_gpus N model/trainer.py spec.json          # GPUs
    DS_ACCELERATOR=cpu deepspeed --num_gpus 2 model/trainer.py spec.json   # 2 CPU ranks over gloo

Rank 0 appends one JSON object a line to <out_dir>/metrics.jsonl and writes the
weights as <out_dir>/model.safetensors.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a file by the launcher: make `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.files import read_jsonl
from model import checkpoint as ckpt
from model import engine as ds
from model.data import (
    IGNORE_INDEX,
    TokenArrays,
    labelled_batch,
    lm_batch,
    rank_batches,
    sft_batch,
)
from model.gpt import GPT, GPTClassifier
from model.spec import TrainSpec
from model.weights import load_into, save_weights

EXTRA_COLUMNS = {"lm": (), "classify": ("length", "label"), "sft": ("prompt_length", "length")}


class Objective:
    """What differs between pretraining, classification and SFT: data, model, loss, validation."""

    def __init__(self, spec: TrainSpec):
        self.spec = spec
        extra = EXTRA_COLUMNS[spec.objective]
        self.train_rows = TokenArrays(spec.train_data, extra)
        self.val_rows = TokenArrays(spec.val_data, extra)

    def build_model(self) -> torch.nn.Module:
        backbone = GPT(self.spec.model)
        if self.spec.init_from:
            load_into(backbone, Path(self.spec.init_from))
        if self.spec.objective == "classify":
            return GPTClassifier(backbone, self.spec.num_classes)
        return backbone

    def batch(self, rows: TokenArrays, indices: np.ndarray):
        readers = {"lm": lm_batch, "classify": labelled_batch, "sft": sft_batch}
        return readers[self.spec.objective](rows, indices)

    def loss(self, engine, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, logits); logits are (B, T, V) for lm and sft, (B, C) for classify."""
        if self.spec.objective in ("lm", "sft"):
            x, y = (t.to(engine.device) for t in batch)
            logits = engine(x)
            # sft targets hold IGNORE_INDEX on prompt and padding positions: only the response is learned
            return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX), logits
        tokens, lengths, labels = (t.to(engine.device) for t in batch)
        logits = engine(tokens, lengths)
        weight = torch.tensor(self.spec.class_weights, device=logits.device) if self.spec.class_weights else None
        return F.cross_entropy(logits.float(), labels, weight=weight), logits

    def tokens_in(self, batch) -> int:
        return batch[0].numel()


def all_mean(value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def evaluate(engine, objective: Objective, rank: int, world: int) -> dict:
    cfg = objective.spec.train
    engine.eval()
    losses, num_classes = [], max(objective.spec.num_classes, 1)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    per_rank = len(objective.val_rows) // world
    indices = np.arange(rank, world * per_rank, world)  # every rank sees its own val rows
    batch_limit = None if objective.spec.objective == "classify" else cfg.eval_batches
    with torch.no_grad():
        for i, start in enumerate(range(0, len(indices), cfg.micro_batch_size)):
            if batch_limit is not None and i >= batch_limit:
                break
            batch = objective.batch(objective.val_rows, indices[start : start + cfg.micro_batch_size])
            loss, logits = objective.loss(engine, batch)
            losses.append(loss.item())
            if objective.spec.objective == "classify":
                for t, p in zip(batch[2].tolist(), logits.argmax(-1).tolist()):
                    confusion[t, p] += 1
    engine.train()
    dist.all_reduce(confusion)
    result = {"loss": all_mean(float(np.mean(losses)) if losses else float("nan"))}
    if objective.spec.objective == "classify":
        result["macro_f1"] = macro_f1(confusion)
    return result


def macro_f1(confusion: torch.Tensor) -> float:
    tp = confusion.diag()
    precision = tp / confusion.sum(0).clamp(min=1)
    recall = tp / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return f1.mean().item()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(spec: TrainSpec) -> None:
    rank, world = ds.init_distributed()
    torch.set_num_threads(ds.threads_per_rank())
    cfg = spec.train
    seed_everything(cfg.seed)
    objective = Objective(spec)
    model = objective.build_model()
    backbone = model.backbone if isinstance(model, GPTClassifier) else model
    backbone.activation_checkpointing = cfg.activation_checkpointing
    engine = ds.initialize(model, cfg)
    out_dir = Path(spec.out_dir)
    ckpt_dir = Path(spec.checkpoint_dir) if spec.checkpoint_dir else out_dir / "checkpoints"
    tracker = BestTracker(cfg.early_stopping_patience)
    resumed = resume(engine, ckpt_dir, tracker, world)
    log = MetricsLog(out_dir / "metrics.jsonl", enabled=rank == 0, keep_until=resumed)
    if resumed:
        log.write(split="resume", step=resumed)
    batches = rank_batches(len(objective.train_rows), cfg.micro_batch_size, cfg.seed, rank, world,
                           skip=resumed * cfg.grad_accum_steps)
    throughput = Throughput(backbone, world)
    started, step = time.perf_counter(), resumed
    for step in range(resumed + 1, cfg.max_steps + 1):
        stop_if_orphaned()
        step_started, losses, num_tokens = time.perf_counter(), [], 0
        for _ in range(cfg.grad_accum_steps):
            batch = objective.batch(objective.train_rows, next(batches))
            loss, _ = objective.loss(engine, batch)
            engine.backward(loss)
            engine.step()  # DeepSpeed only steps the optimizer at the accumulation boundary
            losses.append(loss.item())
            num_tokens += objective.tokens_in(batch) * world
        if step % cfg.log_every == 0 or step in (1, cfg.max_steps):
            elapsed = time.perf_counter() - step_started
            log.write(split="train", step=step, loss=all_mean(float(np.mean(losses))), lr=engine.get_lr()[0],
                      elapsed_s=time.perf_counter() - started, **throughput.measure(num_tokens, elapsed))
        stop = False
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            result = evaluate(engine, objective, rank, world)
            log.write(split="val", step=step, **result)
            # the LM keeps its latest weights; a classifier keeps its best by validation F1
            score = result["macro_f1"] if spec.objective == "classify" else float(step)
            if tracker.improved(score):
                save(engine, spec, out_dir)
            stop = tracker.should_stop()  # every rank sees the same all-reduced score, so all stop together
            if stop:
                log.write(split="early_stop", step=step, best_score=tracker.best)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not stop:
            write_checkpoint(engine, ckpt_dir, step, tracker, cfg, log)
        if stop:
            break
    state_numel = [None] * world
    dist.all_gather_object(state_numel, ds.optimizer_state_numel(engine))
    log.write(split="done", step=step, elapsed_s=time.perf_counter() - started, world_size=world,
              optimizer_state_numel=state_numel)


def resume(engine, ckpt_dir: Path, tracker: "BestTracker", world: int) -> int:
    """Load the latest complete checkpoint, if any; returns the step it was taken after (0: fresh start)."""
    tag = ckpt.latest_complete(ckpt_dir)
    if tag is None:
        return 0
    state = ds.load_checkpoint(engine, ckpt_dir, tag)
    if state["world_size"] != world:
        raise RuntimeError(f"{ckpt_dir / tag} was written by {state['world_size']} ranks; resuming needs the same "
                           f"number (got {world}), or remove {ckpt_dir} to start over")
    ckpt.set_rng_state(state["rng"][dist.get_rank()])
    tracker.best, tracker.since_best = state["tracker"]
    return state["step"]


def write_checkpoint(engine, ckpt_dir: Path, step: int, tracker: "BestTracker", cfg, log: "MetricsLog") -> None:
    tag = ckpt.tag_for(step)
    client_state = {"step": step, "world_size": dist.get_world_size(), "seed": cfg.seed,
                    "micro_batches_per_rank": step * cfg.grad_accum_steps,
                    "tracker": (tracker.best, tracker.since_best), "rng": ckpt.gathered_rng_states()}
    ds.save_checkpoint(engine, ckpt_dir, tag, client_state)
    dist.barrier()  # every rank's partition is on disk before the tag is called complete
    if dist.get_rank() == 0:
        ckpt.mark_complete(ckpt_dir, tag, step)
        ckpt.prune(ckpt_dir, cfg.keep_checkpoints)
    log.write(split="checkpoint", step=step, tag=tag)
    dist.barrier()


def stop_if_orphaned() -> None:
    """The ranks run in their own session: if the tokenmill process that launched them is gone, stop."""
    owner = os.environ.get("TOKENMILL_OWNER_PID")
    if owner and not Path(f"/proc/{owner}").exists():
        raise SystemExit(f"the launching process {owner} is gone; stopping (the last checkpoint stays for resume)")


class Throughput:
    """Tokens per second over all ranks and, on GPUs, model FLOPs utilisation."""

    PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}

    def __init__(self, model: GPT, world: int):
        self.world, self.flops_per_token = world, model.flops_per_token()
        self.peak = self.peak_flops() if torch.cuda.is_available() else None

    def peak_flops(self) -> float | None:
        name = torch.cuda.get_device_name()
        found = [tflops for key, tflops in self.PEAK_BF16_TFLOPS.items() if key in name]
        return found[0] * 1e12 if found else None

    def measure(self, num_tokens: int, seconds: float) -> dict:
        tokens_per_s = num_tokens / seconds
        result = {"tokens_per_s": tokens_per_s}
        if self.peak:
            result["mfu"] = tokens_per_s * self.flops_per_token / (self.peak * self.world)
        return result


class BestTracker:
    """Remembers the best validation score and how many evaluations have passed without beating it."""

    def __init__(self, patience: int | None):
        self.patience, self.best, self.since_best = patience, float("-inf"), 0

    def improved(self, score: float) -> bool:
        if score > self.best:
            self.best, self.since_best = score, 0
            return True
        self.since_best += 1
        return False

    def should_stop(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience


def save(engine, spec: TrainSpec, out_dir: Path) -> None:
    state = ds.full_state_dict(engine)
    if state is not None:
        save_weights(state, out_dir / "model.safetensors", spec.model)
    dist.barrier()


class MetricsLog:
    """metrics.jsonl; a resumed run keeps the records up to its checkpoint and drops the rest."""

    def __init__(self, path: Path, enabled: bool, keep_until: int = 0):
        self.path, self.enabled = path, enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = []
            if keep_until and path.exists():
                records = read_jsonl(path)
                kept = [r for r in records if r["step"] <= keep_until and r["split"] not in ("done", "resume")]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, **record) -> None:
        if self.enabled:
            line = json.dumps(record)
            with self.path.open("a") as f:
                f.write(line + "\n")
            print(f"[metrics] {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tokenmill training entry point")
    parser.add_argument("spec", type=Path, help="TrainSpec JSON written by the pipeline")
    parser.add_argument("--local_rank", type=int, default=0, help="set by the deepspeed launcher")
    args = parser.parse_args(argv)
    train(TrainSpec.load(args.spec))
    dist.barrier()
    dist.destroy_process_group()
    # Every output is written and closed by now. Leave without running C++ static destructors:
    # gloo/DeepSpeed comm threads sometimes abort ("terminate called without an active
    # exception") while the interpreter tears down, which would fail a finished run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
