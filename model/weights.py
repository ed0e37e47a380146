"""Weights on disk: safetensors only (no pickle), with the model config beside them."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from infra.files import atomic_write, atomic_write_text
from model.gpt import GPT, GPTClassifier, GPTConfig

TIED_KEYS = ("lm_head.weight", "backbone.lm_head.weight")


def save_weights(state: dict[str, torch.Tensor], path: Path, model_cfg: GPTConfig) -> None:
    # safetensors refuses shared storage: a tied lm_head is rebuilt from the embedding on load
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if not (model_cfg.tie_embeddings and k in TIED_KEYS)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda partial: save_file(tensors, str(partial)))
    atomic_write_text(path.with_name("model_config.json"), json.dumps(model_cfg.to_dict(), indent=2))


def read_weights(path: Path, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of `path`, checked against the parameter names of `module` (which may be partitioned)."""
    tensors = load_file(str(path))
    expected = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    missing = sorted(expected - set(tensors) - set(TIED_KEYS))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return tensors


def load_into(module: torch.nn.Module, path: Path) -> None:
    module.load_state_dict(read_weights(path, module), strict=False)  # a tied lm_head is the embedding already


def load_gpt(folder: Path) -> GPT:
    cfg = GPTConfig(**json.loads((folder / "model_config.json").read_text()))
    model = GPT(cfg)
    load_into(model, folder / "model.safetensors")
    return model.eval()


def load_classifier(folder: Path, num_classes: int) -> GPTClassifier:
    cfg = GPTConfig(**json.loads((folder / "model_config.json").read_text()))
    model = GPTClassifier(GPT(cfg), num_classes)
    load_into(model, folder / "model.safetensors")
    return model.eval()
