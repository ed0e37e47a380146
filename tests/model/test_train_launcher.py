"""`deepspeed model/trainer.py spec.json` on its own: 2 CPU ranks over gloo, no Prefect, no Ray."""

import json
from pathlib import Path

import numpy as np
import pytest

import model
from infra.launch import LaunchFailed, deepspeed_command, launch_env, run_streaming
from model.data import TokenRowWriter
from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec
from model.weights import load_gpt

TRAIN_SCRIPT = Path(model.__file__).parent / "trainer.py"


def counting_rows(n: int, width: int, seed: int) -> np.ndarray:
    """Sequences that count upwards mod 50: learnable in a few dozen steps."""
    starts = np.random.default_rng(seed).integers(0, 50, size=(n, 1))
    return (starts + np.arange(width)) % 50


def write_split(path: Path, rows: np.ndarray) -> None:
    writer = TokenRowWriter(path, rows.shape[1], 64)
    writer.write(rows)
    writer.close()


def launch(spec: TrainSpec, tmp_path: Path, num_procs: int = 2) -> list[str]:
    spec_path = tmp_path / "spec.json"
    spec.save(spec_path)
    lines: list[str] = []
    run_streaming(deepspeed_command(TRAIN_SCRIPT, [str(spec_path)], num_procs), launch_env(num_procs, False),
                  lines.append, cwd=tmp_path)
    return lines


@pytest.fixture
def lm_spec(tmp_path) -> TrainSpec:
    write_split(tmp_path / "train.arrow", counting_rows(256, 17, 0))
    write_split(tmp_path / "val.arrow", counting_rows(32, 17, 1))
    return TrainSpec(objective="lm", model=GPTConfig(vocab_size=64, seq_len=16, n_layer=2, n_head=2, d_model=64),
                     train=TrainConfig(max_steps=30, micro_batch_size=8, lr=3e-3, warmup_steps=3, log_every=5,
                                       eval_every=15, zero_stage=2),
                     train_data=str(tmp_path / "train.arrow"), val_data=str(tmp_path / "val.arrow"),
                     out_dir=str(tmp_path / "out"))


def shared_memory_files() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("deepspeed*")} if Path("/dev/shm").is_dir() else set()


def test_two_ranks_train_and_loss_falls(lm_spec, tmp_path):
    before = shared_memory_files()
    launch(lm_spec, tmp_path)
    # DeepSpeed's CPU shared-memory all-reduce leaves 64 MB buffers in /dev/shm that no one removes (20 GB of RAM
    # after a few hundred runs): model/engine.py keeps it from being built, so a run leaves none
    assert shared_memory_files() - before == set()
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert records[-1] == {**records[-1], "split": "done", "world_size": 2}
    model = load_gpt(tmp_path / "out")  # weights saved as safetensors, loadable without DeepSpeed
    assert model.cfg.vocab_size == 64


def test_a_failing_rank_fails_the_launch_with_its_output(lm_spec, tmp_path):
    lm_spec.train_data = str(tmp_path / "missing.arrow")
    with pytest.raises(LaunchFailed, match="missing.arrow"):
        launch(lm_spec, tmp_path)
