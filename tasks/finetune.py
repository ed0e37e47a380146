"""Fine-tuning: a labelled file -> stratified splits of padded token rows -> the shared training loop."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import train_test_split
from tokenizers import Tokenizer

from model.data import TokenRowWriter
from model.spec import TrainConfig, TrainSpec
from tasks.stage import Manifest, file_digest, fingerprint, run_stage
from tasks.tokenizer import PAD
from tasks.train import LaunchConfig, launch_training, loss_summary, read_metrics, training_fingerprint_config

VERSION = "1"
SPLITS = ("train", "val", "test")


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Path = Field(description="labelled file: .parquet, .csv, .tsv or .jsonl")
    text_column: str = "text"
    label_column: str = "label"
    column_names: list[str] | None = Field(None, description="for a CSV/TSV without a header row: its column names")
    positive_label: str = Field("spam", description="the class whose F1 is the headline metric")
    max_len: int = Field(64, ge=4, description="tokens per example (truncated or padded)")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 1234
    class_weighting: bool = Field(True, description="weight the loss by inverse class frequency")
    train: TrainConfig = TrainConfig(max_steps=200, micro_batch_size=32, lr=5e-4, warmup_steps=20, eval_every=50)
    launch: LaunchConfig = LaunchConfig()


def read_table(path: Path, column_names: list[str] | None) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix in (".csv", ".tsv"):
        # TSV exports rarely quote; a stray " in a message must not swallow the lines after it
        parse = pacsv.ParseOptions(delimiter="\t", quote_char=False) if suffix == ".tsv" else pacsv.ParseOptions()
        read = pacsv.ReadOptions(column_names=column_names) if column_names else pacsv.ReadOptions()
        return pacsv.read_csv(path, read_options=read, parse_options=parse)
    if suffix == ".jsonl":
        return pajson.read_json(path)
    raise ValueError(f"{path}: unsupported labelled file type {suffix!r} (parquet, csv, tsv, jsonl)")


def read_labelled(cfg: "FinetuneConfig") -> tuple[list[str], list[str], list[dict]]:
    """(texts, labels, rejected): rows with no label are set aside with a reason, never dropped silently."""
    path = cfg.data
    try:
        table = read_table(path, cfg.column_names)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: cannot read as {path.suffix} ({str(err).splitlines()[0]})") from None
    for role, column in (("text_column", cfg.text_column), ("label_column", cfg.label_column)):
        if column not in table.column_names:
            raise ValueError(f"{path}: no column {column!r} (finetune.{role}); columns are {table.column_names}")
    texts, labels, rejected = [], [], []
    raw_texts, raw_labels = table.column(cfg.text_column).to_pylist(), table.column(cfg.label_column).to_pylist()
    for row, (text, label) in enumerate(zip(raw_texts, raw_labels), start=1):
        if label is None or str(label).strip() == "":
            rejected.append({"row": row, "text": text, "reason": "missing_label"})
            continue
        texts.append(text if isinstance(text, str) else "")
        labels.append(str(label).strip())
    return texts, labels, rejected


def stratified_splits(labels: list[str], cfg: FinetuneConfig) -> dict[str, np.ndarray]:
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=cfg.test_fraction, stratify=labels, random_state=cfg.seed)
    val_share = cfg.val_fraction / (1 - cfg.test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=[labels[i] for i in rest], random_state=cfg.seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


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
    texts, labels, rejected = read_labelled(cfg)
    if rejected:
        pq.write_table(pa.Table.from_pylist(rejected), folder / "rejected.parquet")
    label_names = sorted(set(labels))
    if cfg.positive_label not in label_names:
        raise ValueError(f"finetune.positive_label {cfg.positive_label!r} is not a label in {cfg.data} ({label_names})")
    rare = {name: n for name, n in zip(label_names, np.bincount([label_names.index(x) for x in labels])) if n < 3}
    if rare:
        raise ValueError(f"{cfg.data}: every label needs at least 3 examples for a stratified split; too few: {rare}")
    label_ids = np.array([label_names.index(label) for label in labels])
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    splits = stratified_splits(labels, cfg)
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
            "counts": {f"{s}_examples": len(i) for s, i in splits.items()} | {"rejected_missing_label": len(rejected)}}


def finetune(pretrained: Manifest, tokenizer: Manifest, cfg: FinetuneConfig, workdir: Path) -> Manifest:
    config = training_fingerprint_config(cfg, exclude=frozenset({"data"}))
    fp = fingerprint("finetune", VERSION, config, [pretrained.fingerprint, tokenizer.fingerprint, file_digest(cfg.data)])

    def build(folder: Path) -> dict:
        prepared = prepare_labelled(cfg, tokenizer.file("tokenizer"), folder)
        backbone = TrainSpec.load(pretrained.file("spec")).model
        spec = TrainSpec(objective="classify", model=backbone, train=cfg.train, train_data=str(folder / "train.arrow"),
                         val_data=str(folder / "val.arrow"), out_dir=str(folder), init_from=str(pretrained.file("weights")),
                         num_classes=len(prepared["label_names"]), class_weights=prepared["class_weights"],
                         label_names=prepared["label_names"])
        launch_training(spec, cfg.launch, folder, "finetune")
        summary = loss_summary(read_metrics(folder / "metrics.jsonl"))
        files = {"weights": "model.safetensors", "metrics": "metrics.jsonl", "spec": "train_spec.json"}
        files |= {f"{s}_{kind}": f"{s}.{kind}" for s in SPLITS for kind in ("arrow", "parquet")}
        return {"counts": prepared["counts"], "stats": summary | {"label_names": prepared["label_names"],
                "positive_label": cfg.positive_label}, "files": files}

    return run_stage(workdir, "finetune", fp, build, resumable=True)


@task(name="finetune", retries=0)
def finetune_task(pretrained: Manifest, tokenizer: Manifest, cfg: FinetuneConfig, workdir: Path) -> Manifest:
    return finetune(pretrained, tokenizer, cfg, workdir)
