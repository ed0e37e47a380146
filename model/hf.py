"""Export our GPT as a Hugging Face `LlamaForCausalLM` folder: safetensors + config.json + tokenizer files.

Our parameter names already follow Llama's; the export adds the `model.` prefix, writes a
matching LlamaConfig, and copies the tokenizer, so `transformers` loads it with no code of ours.
"""

import json
import shutil
from pathlib import Path

from safetensors.torch import save_file

from model.gpt import GPT

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def llama_config(model: GPT, eos_id: int, pad_id: int | None) -> dict:
    cfg = model.cfg
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: GPT) -> dict:
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            if model.cfg.tie_embeddings:
                continue  # transformers re-ties it from embed_tokens
            tensors[name] = tensor
        else:
            tensors[f"model.{name}"] = tensor
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def export_hf(model: GPT, tokenizer_dir: Path, out_dir: Path, eos_id: int, pad_id: int | None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(hf_state_dict(model), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(llama_config(model, eos_id, pad_id), indent=2))
    (out_dir / "generation_config.json").write_text(json.dumps({"bos_token_id": eos_id, "eos_token_id": eos_id,
                                                                "pad_token_id": pad_id}, indent=2))
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, out_dir / name)
    return out_dir
