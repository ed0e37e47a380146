"""ZeRO stages 1, 2 and 3 on 2 CPU ranks: the same losses as stage 0, each rank holds only its share of the optimizer
state, ZeRO-3 builds the model already partitioned, and the saved weights are the whole model's."""

import pytest
import torch

from model.weights import load_gpt
from tests.model.conftest import ZERO_STEPS, metrics


@pytest.fixture(scope="module")
def runs(zero_run) -> dict[int, list[dict]]:
    return {stage: metrics(zero_run(stage)) for stage in (0, 1, 2, 3)}


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_sharded_stages_reach_the_losses_of_stage_0(runs, stage):
    baseline = [r["loss"] for r in runs[0] if r["split"] in ("train", "val")]
    sharded = [r["loss"] for r in runs[stage] if r["split"] in ("train", "val")]
    assert len(sharded) == len(baseline) == ZERO_STEPS + 2
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


def test_zero3_never_builds_the_whole_model_on_a_rank(runs):
    """Each rank's parameter elements right after construction, before DeepSpeed's engine exists."""
    built = next(r for r in runs[3] if r["split"] == "model")
    assert max(built["held_param_numel"]) <= 0.55 * built["param_numel"]
    assert sum(built["held_param_numel"]) >= built["param_numel"]
    unsharded = next(r for r in runs[2] if r["split"] == "model")  # ZeRO 0-2 replicate the parameters
    assert unsharded["held_param_numel"] == [unsharded["param_numel"]] * 2 == [built["param_numel"]] * 2


def test_zero3_saves_the_whole_model_gathered_from_its_partitions(zero_run):
    gathered, replicated = load_gpt(zero_run(3)).state_dict(), load_gpt(zero_run(0)).state_dict()
    assert gathered.keys() == replicated.keys()
    for name, tensor in replicated.items():
        assert gathered[name].shape == tensor.shape
        torch.testing.assert_close(gathered[name], tensor, rtol=1e-3, atol=1e-4, msg=name)
