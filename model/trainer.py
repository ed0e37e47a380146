"""One training loop for pretraining (next-token LM) and fine-tuning (classification).

    deepspeed --num_gpus N model/trainer.py spec.json          # GPUs
    DS_ACCELERATOR=cpu deepspeed --num_gpus 2 model/trainer.py spec.json   # 2 CPU ranks over gloo

Rank 0 appends one JSON object a line to <out_dir>/metrics.jsonl and writes the
weights as <out_dir>/model.safetensors.
"""

import argparse
import dataclasses
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

from infra import lease
from infra.files import read_jsonl
from model import checkpoint as ckpt
from model import engine as ds
from model.data import (
    IGNORE_INDEX,
    TokenArrays,
    labelled_batch,
    lm_batch,
    micro_batches,
    sft_batch,
)
from model.gpt import GPT, GPTClassifier
from model.lora import add_lora, merged_state
from model.spec import TrainConfig, TrainSpec
from model.weights import read_weights, save_weights

EXTRA_COLUMNS = {"lm": (), "classify": ("length", "label"), "sft": ("prompt_length", "length")}


class Objective:
    """What differs between pretraining, classification and SFT: data, model, loss, validation."""

    def __init__(self, spec: TrainSpec):
        self.spec = spec
        extra = EXTRA_COLUMNS[spec.objective]
        self.train_rows = TokenArrays(spec.train_data, extra)
        self.val_rows = TokenArrays(spec.val_data, extra)

    def build_model(self, cfg: TrainConfig, world: int) -> torch.nn.Module:
        """Under ZeRO-3 built already partitioned (see `engine.build`): no rank holds the whole model."""
        backbone = ds.build(lambda: GPT(self.spec.model), cfg, world)
        if self.spec.init_from:
            ds.load_weights(backbone, read_weights(Path(self.spec.init_from), backbone))
        model = backbone
        if self.spec.objective == "classify":
            model = ds.build(lambda: GPTClassifier(backbone, self.spec.num_classes), cfg, world)
        if self.spec.lora:  # after loading: the adapters start at zero on top of the pretrained weights
            add_lora(model, self.spec.lora, trainable=("score.",) if self.spec.objective == "classify" else ())
        return model

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
    lease_folder = join_lease()
    out_dir = Path(spec.out_dir)
    ckpt_dir = Path(spec.checkpoint_dir) if spec.checkpoint_dir else out_dir / "checkpoints"
    latest = ckpt.latest_complete(ckpt_dir)
    written_with = ckpt.read_complete(ckpt_dir, latest) if latest else {}
    cfg = resolved_config(spec.train, world, written_with)
    seed_everything(cfg.seed)
    objective = Objective(spec)
    model = objective.build_model(cfg, world)
    held = gathered(ds.held_param_numel(model)[0])  # right after construction: each rank's share under ZeRO-3
    backbone = model.backbone if isinstance(model, GPTClassifier) else model
    backbone.activation_checkpointing = cfg.activation_checkpointing
    engine = ds.initialize(model, cfg, world)
    tracker = BestTracker(cfg.early_stopping_patience)
    resumed = resume(engine, ckpt_dir, latest, written_with, tracker, cfg, world)
    log = MetricsLog(out_dir / "metrics.jsonl", enabled=rank == 0, keep_until=resumed)
    log.write(split="model", step=resumed, param_numel=ds.held_param_numel(model)[1], held_param_numel=held,
              trainable_param_numel=sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad),
              zero_stage=cfg.zero_stage)
    if resumed:
        log.write(split="resume", step=resumed, world_size=world, from_world_size=written_with.get("world_size", world),
                  global_batch_size=cfg.global_batch_size)
    accumulation = cfg.accumulation_steps(world)
    batches = micro_batches(len(objective.train_rows), cfg.seed, cfg.global_batch_size, cfg.micro_batch_size, rank,
                            world, first_sample=resumed * cfg.global_batch_size)
    throughput = Throughput(backbone, world)
    started, step = time.perf_counter(), resumed
    for step in range(resumed + 1, cfg.max_steps + 1):
        stop_if_orphaned()
        if rank == 0 and lease_folder:
            lease.renew(lease_folder)
        step_started, losses, num_tokens = time.perf_counter(), [], 0
        for _ in range(accumulation):
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
    log.write(split="done", step=step, elapsed_s=time.perf_counter() - started, world_size=world,
              optimizer_state_numel=gathered(ds.optimizer_state_numel(engine)))


def resolved_config(cfg: TrainConfig, world: int, written_with: dict) -> TrainConfig:
    """The global batch this run trains with: the spec's, else the checkpoint's (kept on any world size), else one
    micro batch per rank. ValueError when it cannot be split over this world size, or differs from the checkpoint's."""
    kept = written_with.get("global_batch_size")
    global_batch = cfg.global_batch_size or kept or cfg.micro_batch_size * world
    if kept is not None and kept != global_batch:
        raise ValueError(f"train.global_batch_size={global_batch}, but the checkpoint to resume was trained with "
                         f"{kept}: set it back to {kept}, or start over in another checkpoint folder")
    cfg = dataclasses.replace(cfg, global_batch_size=global_batch)
    cfg.accumulation_steps(world)  # the ValueError that names the fields, before any model is built
    return cfg


def gathered(value):
    """`value` from every rank, in rank order."""
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def join_lease() -> Path | None:
    """Every rank's host and PID join the lease the launching process took on the training folder (rank 0 writes)."""
    folder = os.environ.get(lease.FOLDER_ENV)
    holders = gathered(lease.Holder.this_process(f"rank {dist.get_rank()}"))
    if folder and dist.get_rank() == 0:
        lease.add_holders(Path(folder), holders)
    return Path(folder) if folder else None


def resume(engine, ckpt_dir: Path, tag: str | None, written_with: dict, tracker: "BestTracker", cfg: TrainConfig,
           world: int) -> int:
    """Load the latest complete checkpoint, if any; returns the step it was taken after (0: fresh start).

    On the world size that wrote it, DeepSpeed's own per-rank files; on any other, the universal copy beside them,
    resharded over this world size as it loads: no conversion step for the user.
    """
    if tag is None:
        return 0
    written_by = written_with.get("world_size", world)
    if written_by == world:
        state = ds.load_checkpoint(engine, ckpt_dir, tag)
    else:
        print(f"[resume] {ckpt_dir / tag} was written by {written_by} ranks; resuming on {world} from its universal "
              f"copy, global batch {cfg.global_batch_size} kept", flush=True)
        state = ds.load_universal(engine, ckpt_dir / tag, cfg.global_batch_size, cfg.accumulation_steps(world))
    rng = state["rng"]
    ckpt.set_rng_state(rng[dist.get_rank() % len(rng)])  # a new rank takes the state of an old one
    tracker.best, tracker.since_best = state["tracker"]
    return state["step"]


def write_checkpoint(engine, ckpt_dir: Path, step: int, tracker: "BestTracker", cfg: TrainConfig,
                     log: "MetricsLog") -> None:
    tag = ckpt.tag_for(step)
    client_state = {"step": step, "samples": step * cfg.global_batch_size, "seed": cfg.seed,
                    "tracker": (tracker.best, tracker.since_best), "rng": ckpt.gathered_rng_states()}
    ds.save_checkpoint(engine, ckpt_dir, tag, client_state)
    dist.barrier()  # every rank's partition is on disk before the tag is called complete
    if dist.get_rank() == 0:
        ckpt.mark_complete(ckpt_dir, tag, step, world_size=dist.get_world_size(),
                           global_batch_size=cfg.global_batch_size, micro_batch_size=cfg.micro_batch_size)
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
        # adapters folded in: the saved model has the plain model's keys, for load_gpt, export and evaluation
        save_weights(merged_state(state, spec.lora) if spec.lora else state, out_dir / "model.safetensors", spec.model)
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
                kept = [r for r in records if r["step"] <= keep_until and r["split"] not in ("done", "resume", "model")]
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
