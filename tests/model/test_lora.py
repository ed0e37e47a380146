"""LoRA adapters: only the low-rank factors (and a new head) train, and merging them changes no logit."""

import copy

import pytest
import torch
import torch.nn.functional as F

from model.gpt import GPT, MODEL_SIZES, GPTClassifier, GPTConfig
from model.lora import LoRAConfig, add_lora, merge_lora, num_trainable

DEBUG = GPTConfig(vocab_size=64, seq_len=16, **MODEL_SIZES["debug"])  # 2 layers, d_model 64, ffn 192


def train_a_little(model, steps=5):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 64, (4, 17))
    for _ in range(steps):
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_only_the_low_rank_factors_train_and_the_merged_model_gives_the_same_logits():
    torch.manual_seed(0)
    model = GPT(DEBUG)
    before = copy.deepcopy(model.state_dict())
    add_lora(model, LoRAConfig(rank=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"]))
    # per layer: q and v (64 -> 64): 4 * (64 + 64) each; down (192 -> 64): 4 * (192 + 64)
    assert num_trainable(model) == 2 * (2 * 4 * 128 + 4 * 256) == 4096
    train_a_little(model)
    x = torch.randint(0, 64, (2, 16))
    model.eval()
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(model)
        assert list(merged.state_dict()) == list(before)  # the original keys: saves and exports as before
        assert torch.allclose(merged(x), adapted, atol=1e-5)
    changed = [k for k in before if not torch.equal(before[k], merged.state_dict()[k])]
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight")) for k in changed)


def test_a_classifier_trains_its_new_head_beside_the_adapters():
    torch.manual_seed(0)
    classifier = add_lora(GPTClassifier(GPT(DEBUG), 2), LoRAConfig(rank=2), trainable=("score.",))
    trainable = {n for n, p in classifier.named_parameters() if p.requires_grad}
    assert {"score.weight", "score.bias"} <= trainable
    assert all(n.startswith("score.") or ".lora_" in n for n in trainable)


def test_bad_lora_settings_name_the_field():
    with pytest.raises(ValueError, match="lora.targets"):
        add_lora(GPT(DEBUG), LoRAConfig(targets=["wq"]))
    with pytest.raises(ValueError, match="lora.rank"):
        add_lora(GPT(DEBUG), LoRAConfig(rank=0))
