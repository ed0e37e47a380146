"""Elastic resume: kill -9 a run mid-training, resume it on another number of ranks with no command in between, and
get the losses of an uninterrupted 2-rank run (the same global batch of 16, fp32 on CPU)."""

from pathlib import Path

import pytest

from model.checkpoint import latest_complete, read_complete
from tests.model.conftest import (
    ZERO_STEPS,
    kill_after_checkpoint,
    launch,
    metrics,
    zero_spec,
)


@pytest.mark.parametrize("stage, before, after", [(1, 2, 1), (2, 2, 1), (3, 2, 1), (2, 1, 2)],
                         ids=["zero1-2to1", "zero2-2to1", "zero3-2to1", "zero2-1to2"])
def test_a_killed_run_resumes_on_another_world_size(text_blocks, zero_run, tmp_path, stage, before, after):
    expected = [(r["split"], r["step"], r["loss"]) for r in metrics(zero_run(stage)) if r["split"] in ("train", "val")]

    spec = zero_spec(text_blocks, stage, tmp_path / "out", checkpoint_every=2, keep_checkpoints=2)
    reached = kill_after_checkpoint(spec, tmp_path / "killed", step=2, num_procs=before)
    assert reached < ZERO_STEPS, "the run finished before it could be killed"
    ckpt_dir = tmp_path / "out" / "checkpoints"
    written = read_complete(ckpt_dir, latest_complete(ckpt_dir))
    assert written["world_size"] == before and written["global_batch_size"] == 16
    resume_step = written["step"]

    lines = launch(spec, tmp_path / "resumed", num_procs=after)
    assert any(f"was written by {before} ranks; resuming on {after}" in line for line in lines)
    records = metrics(Path(spec.out_dir))
    assert [r for r in records if r["split"] == "resume"] == [
        {"split": "resume", "step": resume_step, "world_size": after, "from_world_size": before, "global_batch_size": 16}]
    resumed = [(r["split"], r["step"], r["loss"]) for r in records if r["split"] in ("train", "val")]
    assert [r[:2] for r in resumed] == [r[:2] for r in expected]  # no step lost or logged twice
    for (split, step, loss), (_, _, want) in zip(resumed, expected):
        assert abs(loss - want) <= 1e-4, f"{split} loss at step {step}: {loss} != {want} (resumed after {resume_step})"
    assert records[-1]["split"] == "done" and records[-1]["world_size"] == after
