"""Token blocks from real text (the tiny Moby-Dick chapters) for training tests without the data stages."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import model
from infra.launch import deepspeed_command, launch_env, run_streaming
from model.data import TokenRowWriter
from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = Path(model.__file__).parent / "trainer.py"
VOCAB = 256


@pytest.fixture(scope="session")
def text_blocks(tmp_path_factory) -> tuple[Path, Path]:
    """(train.arrow, val.arrow): blocks of 33 tokens from a byte-level BPE trained on a few chapters."""
    folder = tmp_path_factory.mktemp("text-blocks")
    texts = [p.read_text() for p in sorted((REPO / "data" / "tiny").glob("chapter_*.txt"))[:6]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, show_progress=False,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ids = np.concatenate([tokenizer.encode(t).ids for t in texts])
    blocks = ids[: len(ids) // 33 * 33].reshape(-1, 33)
    paths = folder / "train.arrow", folder / "val.arrow"
    for path, rows in zip(paths, (blocks[:-32], blocks[-32:])):
        writer = TokenRowWriter(path, 33, VOCAB)
        writer.write(rows)
        writer.close()
    return paths


def launch(spec: TrainSpec, folder: Path, num_procs: int = 2) -> list[str]:
    """Run the spec under the real deepspeed launcher (CPU ranks over gloo); returns its output lines."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.json"
    spec.save(spec_path)
    lines: list[str] = []
    run_streaming(deepspeed_command(TRAIN_SCRIPT, [str(spec_path)], num_procs), launch_env(num_procs, False),
                  lines.append, cwd=folder)
    return lines


def metrics(out_dir: Path, split: str | None = None) -> list[dict]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]


def records(path: Path) -> list[dict]:
    """metrics.jsonl as far as it is written (a killed run may leave half a line)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def kill_after_checkpoint(spec: TrainSpec, folder: Path, step: int, num_procs: int = 2) -> int:
    """Start the launcher, wait until rank 0 has logged the checkpoint after `step`, then SIGKILL every process (the
    launcher and its ranks, no chance to clean up). Returns the last step the killed run logged."""
    folder.mkdir(parents=True)
    spec.save(folder / "spec.json")
    cmd = deepspeed_command(TRAIN_SCRIPT, [str(folder / "spec.json")], num_procs)
    metrics_file, deadline = Path(spec.out_dir) / "metrics.jsonl", time.monotonic() + 180
    with (folder / "launcher.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=launch_env(num_procs, False), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while time.monotonic() < deadline and proc.poll() is None:
            if any(r["split"] == "checkpoint" and r["step"] >= step for r in records(metrics_file)):
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return max(r["step"] for r in records(metrics_file) if r["split"] == "train")


# The debug-size LM of the ZeRO and elastic-resume tests: 8 steps, a global batch of 16 (2 ranks x 8, or 1 x 2 x 8)
ZERO_STEPS = 8


def zero_spec(blocks: tuple[Path, Path], stage: int, out_dir: Path, **train) -> TrainSpec:
    return TrainSpec(objective="lm", model=GPTConfig(vocab_size=VOCAB, seq_len=32, n_layer=2, n_head=2, d_model=64),
                     train=TrainConfig(max_steps=ZERO_STEPS, micro_batch_size=8, global_batch_size=16, lr=3e-3,
                                       warmup_steps=2, log_every=1, eval_every=4, eval_batches=4, zero_stage=stage,
                                       precision="fp32", seed=3, **train),
                     train_data=str(blocks[0]), val_data=str(blocks[1]), out_dir=str(out_dir))


@pytest.fixture(scope="session")
def zero_run(text_blocks, tmp_path_factory):
    """zero_run(stage) -> the output folder of an uninterrupted 2-rank run at that ZeRO stage (run once a session)."""
    done: dict[int, Path] = {}

    def run(stage: int) -> Path:
        if stage not in done:
            folder = tmp_path_factory.mktemp(f"zero{stage}")
            spec = zero_spec(text_blocks, stage, folder / "out")
            launch(spec, folder)
            done[stage] = Path(spec.out_dir)
        return done[stage]

    return run
