"""LoRA on the real DeepSpeed loop (2 CPU ranks, ZeRO-2): adapters train, the saved weights have them merged."""

import dataclasses
from pathlib import Path

import pytest
import torch

from model.lora import LoRAConfig
from model.spec import TrainSpec
from model.weights import load_gpt, read_weights
from tests.model.conftest import launch, metrics, zero_spec


def test_lora_finetuning_trains_only_adapters_and_saves_merged_weights(text_blocks, zero_run, tmp_path):
    pretrained = zero_run(2)
    base = zero_spec(text_blocks, 2, tmp_path / "out", checkpoint_every=4)  # the universal copy skips frozen state
    spec: TrainSpec = dataclasses.replace(base, init_from=str(pretrained / "model.safetensors"),
                                          lora=LoRAConfig(rank=4, alpha=8, targets=["q_proj", "v_proj"]))
    launch(spec, tmp_path)
    (model_record,) = metrics(Path(spec.out_dir), "model")
    assert model_record["trainable_param_numel"] == 2 * 2 * 4 * (64 + 64)  # 2 layers x (q, v) x r (in + out)
    tuned = load_gpt(Path(spec.out_dir))  # plain keys: loads like any GPT
    before = read_weights(pretrained / "model.safetensors", tuned)
    after = tuned.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"layers.{i}.self_attn.{p}.weight" for i in range(2) for p in ("q_proj", "v_proj")}


def test_lora_with_zero3_is_refused_with_the_field_named():
    from tasks.train.sft import SFTConfig

    with pytest.raises(ValueError, match="train.zero_stage"):
        SFTConfig(data="x.jsonl", lora={"rank": 4}, train={"zero_stage": 3})
    with pytest.raises(ValueError, match="lora.targets"):
        SFTConfig(data="x.jsonl", lora={"targets": ["wq"]})
