"""Supervised fine-tuning on prompt/response pairs: the loss counts response tokens only.

Optional: runs when `sft.data` names a JSONL file of {"prompt": ..., "response": ...} objects.
"""

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tokenizers import Tokenizer

from infra.code_hash import stage_code
from infra.files import iter_jsonl
from infra.stage import Manifest, file_digest, fingerprint
from infra.token_files import TokenRowWriter
from model.config import LoRAConfig
from model.spec import TrainConfig, TrainSpec
from tasks.data.pack import is_validation
from tasks.data.tokenizer import EOS, PAD
from tasks.train.launch import (
    EXPORT_FOLDER,
    LaunchConfig,
    lora_fits_the_launch,
    ranks_share_the_global_batch,
    run_training,
    training_fingerprint_config,
)

CODE = stage_code(__name__, scripts=("model/trainer.py",), libraries=("torch", "deepspeed", "numpy", "tokenizers"))


class SFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Path | None = Field(None, description="JSONL of prompt/response objects; no SFT stage when unset")
    prompt_field: str = "prompt"
    response_field: str = "response"
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of pairs (by hash) held out")
    train: TrainConfig = TrainConfig(max_steps=100, micro_batch_size=16, global_batch_size=32, lr=5e-4, warmup_steps=10, eval_every=50)
    launch: LaunchConfig = LaunchConfig()
    lora: LoRAConfig | None = Field(None, description="train low-rank adapters (rank, alpha, dropout, targets) on the "
                                    "frozen model instead of every weight; the saved weights have them merged")
    _ranks_share_the_global_batch = model_validator(mode="after")(ranks_share_the_global_batch)
    _lora_fits_the_launch = model_validator(mode="after")(lora_fits_the_launch)


def read_pairs(path: Path, cfg: SFTConfig) -> list[tuple[str, str]]:
    """(prompt, response) pairs; a malformed line is an error that names file and line."""
    pairs = []
    for number, record in iter_jsonl(path):
        prompt, response = (record.get(cfg.prompt_field), record.get(cfg.response_field)) if isinstance(record, dict) else (None, None)
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ValueError(f"{path}:{number}: needs string fields {cfg.prompt_field!r} and {cfg.response_field!r}")
        pairs.append((prompt, response))
    if not pairs:
        raise ValueError(f"{path}: no prompt/response pairs")
    return pairs


def encode_pairs(tokenizer: Tokenizer, pairs: list[tuple[str, str]], width: int) -> dict[str, np.ndarray]:
    """Rows of prompt + response + EOS, cut to `width` and padded; the prompt keeps at least half."""
    pad, eos = tokenizer.token_to_id(PAD), tokenizer.token_to_id(EOS)
    rows = np.full((len(pairs), width), pad, dtype=np.int64)
    prompt_lengths, lengths = np.zeros(len(pairs), np.int64), np.zeros(len(pairs), np.int64)
    for i, (prompt, response) in enumerate(pairs):
        prompt_ids = tokenizer.encode(prompt).ids[-(width // 2):]
        ids = (prompt_ids + tokenizer.encode(response).ids + [eos])[:width]
        rows[i, : len(ids)] = ids
        prompt_lengths[i], lengths[i] = len(prompt_ids), len(ids)
    return {"rows": rows, "prompt_length": prompt_lengths, "length": lengths}


def prepare_pairs(cfg: SFTConfig, tokenizer_path: Path, width: int, folder: Path) -> dict[str, int]:
    pairs = read_pairs(cfg.data, cfg)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    encoded = encode_pairs(tokenizer, pairs, width)
    is_val = np.array([is_validation(f"{p}\n{r}", cfg.val_fraction) for p, r in pairs])
    counts = {}
    for split, mask in (("train", ~is_val), ("val", is_val)):
        if not mask.any():
            raise ValueError(f"sft: the {split} split of {cfg.data} is empty; add pairs or change sft.val_fraction")
        writer = TokenRowWriter(folder / f"{split}.arrow", width, tokenizer.get_vocab_size(), ("prompt_length", "length"))
        writer.write(encoded["rows"][mask], prompt_length=encoded["prompt_length"][mask], length=encoded["length"][mask])
        writer.close()
        counts[f"{split}_pairs"] = int(mask.sum())
    (folder / "val_prompts.json").write_text(json.dumps([p for (p, _), v in zip(pairs, is_val) if v][:4]))
    return counts


def sft(pretrained: Manifest, tokenizer: Manifest, cfg: SFTConfig, workdir: str) -> Manifest:
    config = training_fingerprint_config(cfg, exclude=frozenset({"data"}))
    fp = fingerprint("sft", CODE, config, [pretrained.fingerprint, tokenizer.fingerprint, file_digest(cfg.data)])

    def prepare(work: Path) -> tuple[TrainSpec, dict]:
        backbone = TrainSpec.load(pretrained.local_file("spec")).model
        counts = prepare_pairs(cfg, tokenizer.local_file("tokenizer"), backbone.seq_len + 1, work)
        spec = TrainSpec(objective="sft", model=backbone, train=cfg.train, train_data=str(work / "train.arrow"),
                         val_data=str(work / "val.arrow"), out_dir=str(work), init_from=str(pretrained.local_file("weights")),
                         lora=cfg.lora)
        return spec, {"counts": counts, "files": {"val_prompts": "val_prompts.json"}}

    def finish(work: Path) -> dict:
        """The tuned model as a Hugging Face LlamaForCausalLM, like the pretrained model's export."""
        from model.hf import export_hf
        from model.weights import load_gpt

        tok = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
        export_hf(load_gpt(work), tokenizer.local_root(), work / EXPORT_FOLDER, tok.token_to_id(EOS), tok.token_to_id(PAD))
        return {"hf_config": f"{EXPORT_FOLDER}/config.json", "hf_weights": f"{EXPORT_FOLDER}/model.safetensors"}

    return run_training(workdir, "sft", fp, cfg.launch, prepare, finish)
