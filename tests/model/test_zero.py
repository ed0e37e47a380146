"""ZeRO stages 1, 2 and 3 on 2 CPU ranks: the same losses as stage 0, and each rank holds only its share."""

from pathlib import Path

import pytest

from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec
from tests.model.conftest import VOCAB, launch, metrics


@pytest.fixture(scope="module")
def runs(text_blocks, tmp_path_factory) -> dict[int, list[dict]]:
    results = {}
    for stage in (0, 1, 2, 3):
        folder = tmp_path_factory.mktemp(f"zero{stage}")
        spec = TrainSpec(objective="lm", model=GPTConfig(vocab_size=VOCAB, seq_len=32, n_layer=2, n_head=2, d_model=64),
                         train=TrainConfig(max_steps=6, micro_batch_size=8, lr=3e-3, warmup_steps=2, log_every=1,
                                           eval_every=6, zero_stage=stage, precision="fp32", seed=3),
                         train_data=str(text_blocks[0]), val_data=str(text_blocks[1]), out_dir=str(folder / "out"))
        launch(spec, folder)
        results[stage] = metrics(Path(spec.out_dir))
    return results


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sharded_stages_reach_the_losses_of_stage_0(runs, stage):
    baseline = [r["loss"] for r in runs[0] if r["split"] in ("train", "val")]
    sharded = [r["loss"] for r in runs[stage] if r["split"] in ("train", "val")]
    assert len(sharded) == len(baseline) == 7
    assert sharded == pytest.approx(baseline, rel=1e-4, abs=1e-5)
    assert baseline[-2] < baseline[0]  # and they trained


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_rank_holds_only_its_partition_of_the_optimizer_state(runs, stage):
    replicated = runs[0][-1]["optimizer_state_numel"]  # ZeRO-0: every rank holds all of Adam's moments
    assert replicated[0] == replicated[1] > 0
    per_rank = runs[stage][-1]["optimizer_state_numel"]
    assert len(per_rank) == 2
    assert max(per_rank) <= 0.55 * replicated[0]  # about half each (partitions are padded for alignment)
    assert sum(per_rank) >= replicated[0]  # and between them, all of it
