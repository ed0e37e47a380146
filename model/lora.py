"""LoRA: train a low-rank update B @ A beside each frozen target projection, then fold it into the weight.

Written here rather than taken from peft: peft is built around Hugging Face `PreTrainedModel`s and would bring
transformers into every training rank, while for a plain module LoRA is the few lines below (Hu et al., 2021:
A ~ Kaiming-uniform, B = 0, so training starts from the pretrained function; the update is scaled by alpha / r).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ATTENTION, MLP, LoRAConfig  # noqa: F401 - plain data, torch-free for config loading


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * B(A(dropout(x))), the base frozen."""

    def __init__(self, base: nn.Linear, cfg: LoRAConfig):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = cfg.alpha / cfg.rank
        self.lora_a = nn.Parameter(torch.empty(cfg.rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, cfg.rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)  # (..., out) through rank r
        return self.base(x) + self.scale * update

    def merged(self) -> nn.Linear:
        """The base projection with the update folded in: W + (alpha / r) B A."""
        with torch.no_grad():
            self.base.weight += self.scale * (self.lora_b @ self.lora_a).to(self.base.weight.dtype)
        return self.base.requires_grad_(True)


def add_lora(model: nn.Module, cfg: LoRAConfig, trainable: tuple[str, ...] = ()) -> nn.Module:
    """Freeze `model` except the parameters named with a prefix in `trainable` (a classifier's new head) and
    wrap each target projection in LoRALinear, in place."""
    cfg.validate()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(trainable))
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if child_name in cfg.targets and isinstance(child, nn.Linear):
                setattr(parent, child_name, LoRALinear(child, cfg))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear back into a plain projection, in place: the state dict has the original keys."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merged())
    return model


def num_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merged_state(state: dict[str, torch.Tensor], cfg: LoRAConfig) -> dict[str, torch.Tensor]:
    """A LoRA model's state dict with every adapter folded into its projection, under the original keys:
    `x.base.weight`, `x.lora_a`, `x.lora_b` -> `x.weight` (the live model keeps training unchanged)."""
    scale = cfg.alpha / cfg.rank
    merged = {}
    for key, value in state.items():
        if key.endswith((".lora_a", ".lora_b")):
            continue
        if key.endswith(".base.weight"):
            prefix = key[: -len("base.weight")]
            update = state[prefix + "lora_b"].float() @ state[prefix + "lora_a"].float()
            merged[prefix + "weight"] = (value.float() + scale * update).to(value.dtype)
        else:
            merged[key] = value
    return merged
