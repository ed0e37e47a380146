"""Exact resume: kill -9 a 2-rank CPU run mid-training, relaunch, and get the uninterrupted run's losses."""

import os
import signal
import subprocess
import time
from pathlib import Path

from infra.launch import deepspeed_command, launch_env
from model.checkpoint import (
    COMPLETE,
    complete_tags,
    latest_complete,
    mark_complete,
    prune,
)
from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec
from tests.model.conftest import TRAIN_SCRIPT, VOCAB, launch, metrics

MAX_STEPS, EVERY = 40, 5


def spec_for(blocks: tuple[Path, Path], out_dir: Path) -> TrainSpec:
    return TrainSpec(objective="lm", model=GPTConfig(vocab_size=VOCAB, seq_len=32, n_layer=2, n_head=4, d_model=128),
                     train=TrainConfig(max_steps=MAX_STEPS, micro_batch_size=16, lr=3e-3, warmup_steps=4, log_every=1,
                                       eval_every=10, zero_stage=2, precision="fp32", checkpoint_every=EVERY,
                                       keep_checkpoints=2, seed=7),
                     train_data=str(blocks[0]), val_data=str(blocks[1]), out_dir=str(out_dir))


def kill_after_step(spec: TrainSpec, folder: Path, step: int) -> int:
    """Start the launcher, wait until rank 0 has logged `step` (past a checkpoint), then SIGKILL every process."""
    folder.mkdir(parents=True)
    spec.save(folder / "spec.json")
    cmd = deepspeed_command(TRAIN_SCRIPT, [str(folder / "spec.json")], 2)
    with (folder / "launcher.log").open("w") as log:
        proc = subprocess.Popen(cmd, env=launch_env(2, False), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        metrics_file, deadline = Path(spec.out_dir) / "metrics.jsonl", time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [r["step"] for r in _records(metrics_file) if r["split"] == "train"]
            if steps and steps[-1] >= step:
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, no chance to clean up
        proc.wait()
    return max(r["step"] for r in _records(metrics_file) if r["split"] == "train")


def _records(path: Path) -> list[dict]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_killed_run_resumes_with_identical_losses(text_blocks, tmp_path):
    reference = spec_for(text_blocks, tmp_path / "uninterrupted" / "out")
    launch(reference, tmp_path / "uninterrupted")
    expected = {r["step"]: r["loss"] for r in metrics(Path(reference.out_dir), "train")}
    assert sorted(expected) == list(range(1, MAX_STEPS + 1))

    spec = spec_for(text_blocks, tmp_path / "killed" / "out")
    reached = kill_after_step(spec, tmp_path / "killed", step=12)
    assert reached < MAX_STEPS, "the run finished before it could be killed"
    ckpt_dir = Path(spec.out_dir) / "checkpoints"
    resume_step = int(latest_complete(ckpt_dir).removeprefix("step"))
    assert resume_step >= 10 and resume_step % EVERY == 0

    launch(spec, tmp_path / "killed")
    records = metrics(Path(spec.out_dir))
    assert [r["step"] for r in records if r["split"] == "resume"] == [resume_step]
    resumed = {r["step"]: r["loss"] for r in records if r["split"] == "train"}
    assert sorted(resumed) == sorted(expected)  # no step lost or logged twice
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) <= 1e-6, f"step {step}: {resumed[step]} != {loss}"
    assert len(complete_tags(ckpt_dir)) == 2  # keep_checkpoints


def test_a_checkpoint_without_its_marker_is_never_latest(tmp_path):
    for step in (5, 10):
        (tmp_path / f"step{step:08d}").mkdir()
        mark_complete(tmp_path, f"step{step:08d}", step)
    (tmp_path / "step00000015").mkdir()  # a save the kill interrupted: files, no marker
    assert latest_complete(tmp_path) == "step00000010"
    (tmp_path / "latest_complete").unlink()  # even with the pointer gone, a scan finds the newest complete tag
    assert latest_complete(tmp_path) == "step00000010"
    (tmp_path / "step00000010" / COMPLETE).unlink()
    assert latest_complete(tmp_path) == "step00000005"


def test_prune_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (5, 10, 15):
        (tmp_path / f"step{step:08d}").mkdir()
        mark_complete(tmp_path, f"step{step:08d}", step)
    (tmp_path / "step00000012").mkdir()  # an abandoned partial save older than the newest complete one
    prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step00000010", "step00000015"]


def test_a_rank_killed_mid_training_fails_the_launch_without_hanging(text_blocks, tmp_path):
    """kill -9 rank 1 only: the launcher must notice, stop rank 0 and report, not wait forever on gloo."""
    import threading

    import psutil
    import pytest

    from infra.launch import LaunchFailed, run_streaming

    spec = spec_for(text_blocks, tmp_path / "out")
    spec.train.max_steps = 100_000  # it would run for a long time if nothing failed
    spec.save(tmp_path / "spec.json")
    cmd = deepspeed_command(TRAIN_SCRIPT, [str(tmp_path / "spec.json")], 2)
    killed = threading.Event()

    def on_line(line: str) -> None:
        if line.startswith('[metrics] {"split": "train", "step": 5,') and not killed.is_set():
            rank1 = [p for p in psutil.process_iter(["cmdline"])
                     if "--local_rank=1" in (p.info["cmdline"] or []) and str(tmp_path) in " ".join(p.info["cmdline"])]
            rank1[0].kill()
            killed.set()

    started = time.monotonic()
    with pytest.raises(LaunchFailed, match="exited with code"):
        run_streaming(cmd, launch_env(2, False), on_line, cwd=tmp_path)
    assert killed.is_set()
    assert time.monotonic() - started < 120
