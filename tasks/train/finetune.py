"""Fine-tuning: a labelled file -> stratified splits of padded token rows -> the shared training loop."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator
from tokenizers import Tokenizer

from infra.code_hash import stage_code
from infra.stage import Manifest, file_digest, fingerprint
from infra.token_files import TokenRowWriter
from model.config import LoRAConfig
from model.spec import TrainConfig, TrainSpec
from tasks.data.labelled import LabelledData, read_labelled, stratified_splits
from tasks.data.tokenizer import PAD
from tasks.train.launch import (
    LaunchConfig,
    lora_fits_the_launch,
    ranks_share_the_global_batch,
    run_training,
    training_fingerprint_config,
)

CODE = stage_code(__name__, scripts=("model/trainer.py",), libraries=("torch", "deepspeed", "numpy", "tokenizers"))
SPLITS = ("train", "val", "test")


class FinetuneConfig(LabelledData):
    max_len: int = Field(64, ge=4, description="tokens per example (truncated or padded)")
    class_weighting: bool = Field(True, description="weight the loss by inverse class frequency")
    train: TrainConfig = TrainConfig(max_steps=200, micro_batch_size=32, global_batch_size=64, lr=5e-4, warmup_steps=20, eval_every=50)
    launch: LaunchConfig = LaunchConfig()
    lora: LoRAConfig | None = Field(None, description="train low-rank adapters (rank, alpha, dropout, targets) on the "
                                    "frozen model instead of every weight; the saved weights have them merged")
    _ranks_share_the_global_batch = model_validator(mode="after")(ranks_share_the_global_batch)
    _lora_fits_the_launch = model_validator(mode="after")(lora_fits_the_launch)


def encode_padded(tokenizer: Tokenizer, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    pad = tokenizer.token_to_id(PAD)
    rows = np.full((len(texts), max_len), pad, dtype=np.int64)
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, enc in enumerate(tokenizer.encode_batch(texts)):
        ids = enc.ids[:max_len] or [pad]  # an empty text still has one position to pool over
        rows[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return rows, lengths


def prepare_labelled(cfg: FinetuneConfig, tokenizer_path: Path, folder: Path) -> dict:
    labelled = read_labelled(cfg)
    if labelled.set_aside:
        pq.write_table(pa.Table.from_pylist(labelled.set_aside), folder / "rejected.parquet")
    texts, labels = labelled.texts, labelled.labels
    label_names = sorted(set(labels))
    if cfg.positive_label not in label_names:
        raise ValueError(f"finetune.positive_label {cfg.positive_label!r} is not a label in {cfg.data} ({label_names})")
    splits = stratified_splits(labels, cfg)
    label_ids = np.array([label_names.index(label) for label in labels])
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    for split, idx in splits.items():
        rows, lengths = encode_padded(tokenizer, [texts[i] for i in idx], cfg.max_len)
        writer = TokenRowWriter(folder / f"{split}.arrow", cfg.max_len, tokenizer.get_vocab_size(), ("length", "label"))
        writer.write(rows, length=lengths, label=label_ids[idx])
        writer.close()
        # the raw texts travel beside the tokens for the baselines and for error analysis
        pq.write_table(pa.table({"text": [texts[i] for i in idx], "label": label_ids[idx]}), folder / f"{split}.parquet")
    train_counts = np.bincount(label_ids[splits["train"]], minlength=len(label_names))
    weights = (len(splits["train"]) / (len(label_names) * np.maximum(train_counts, 1))).tolist()
    return {"label_names": label_names, "class_weights": weights if cfg.class_weighting else None,
            "counts": {f"{s}_examples": len(i) for s, i in splits.items()} | labelled.counts()}


def finetune(pretrained: Manifest, tokenizer: Manifest, cfg: FinetuneConfig, workdir: str) -> Manifest:
    config = training_fingerprint_config(cfg, exclude=frozenset({"data"}))
    fp = fingerprint("finetune", CODE, config, [pretrained.fingerprint, tokenizer.fingerprint, file_digest(cfg.data)])

    def prepare(work: Path) -> tuple[TrainSpec, dict]:
        prepared = prepare_labelled(cfg, tokenizer.local_file("tokenizer"), work)
        backbone = TrainSpec.load(pretrained.local_file("spec")).model
        spec = TrainSpec(objective="classify", model=backbone, train=cfg.train, train_data=str(work / "train.arrow"),
                         val_data=str(work / "val.arrow"), out_dir=str(work), init_from=str(pretrained.local_file("weights")),
                         num_classes=len(prepared["label_names"]), class_weights=prepared["class_weights"],
                         label_names=prepared["label_names"], lora=cfg.lora)
        split_files = {f"{s}_{kind}": f"{s}.{kind}" for s in SPLITS for kind in ("arrow", "parquet")}
        return spec, {"counts": prepared["counts"], "files": split_files,
                      "stats": {"label_names": prepared["label_names"], "positive_label": cfg.positive_label}}

    return run_training(workdir, "finetune", fp, cfg.launch, prepare)
