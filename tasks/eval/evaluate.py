"""Evaluate: perplexity, classification metrics beside trivial baselines, generation samples, the report."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from infra.code_hash import stage_code
from infra.stage import Manifest, file_digest, fingerprint, run_stage
from infra.token_files import TokenRowWriter
from tasks.data.tokenizer import EOS

# torch, scikit-learn and matplotlib are imported in the functions that use them: loading a recipe imports this
# module for EvaluateConfig, and `tokenmill plan` or a cached run must not pay seconds for them
from tasks.stages import document_stages

CODE = stage_code(__name__, libraries=("torch", "scikit-learn", "tokenizers", "matplotlib"))
SCHEMA_VERSION = 1


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = Field(default_factory=lambda: ["The State of the Union", "Call me Ishmael."])
    max_new_tokens: int = Field(40, ge=1, le=1024)
    top_p: float = Field(0.9, gt=0, le=1)
    max_val_blocks: int | None = Field(512, ge=1, description="cap on validation blocks for perplexity")
    extra_texts: list[Path] = Field(default_factory=list, description="more .txt files or folders to measure perplexity on")


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, label_names: list[str]) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    labels = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(label_names)}
    return {"accuracy": float(accuracy_score(truth, predicted)), "macro_f1": float(np.mean(f1)), "per_class": per_class,
            "confusion": confusion_matrix(truth, predicted, labels=labels).tolist()}


def baselines(train_texts: list[str], train_labels: np.ndarray, test_texts: list[str]) -> dict[str, np.ndarray]:
    """Predictions of the trivial models the fine-tuned one must beat, on the same split."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    majority = np.full(len(test_texts), np.bincount(train_labels).argmax())
    vectorizer = CountVectorizer(lowercase=True, ngram_range=(1, 2), min_df=1)
    bow = LogisticRegression(max_iter=2000, class_weight="balanced")
    bow.fit(vectorizer.fit_transform(train_texts), train_labels)
    return {"majority": majority, "bow_logreg": bow.predict(vectorizer.transform(test_texts))}


def generation_samples(pretrained: Manifest, tokenizer: Manifest, cfg: EvaluateConfig) -> list[dict]:
    from model.inference import generate
    from model.weights import load_gpt

    model = load_gpt(pretrained.local_root())
    tok = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
    samples = []
    for prompt in cfg.prompts:
        ids = tok.encode(prompt).ids
        for mode, top_p in (("greedy", None), (f"top-p {cfg.top_p}", cfg.top_p)):
            out = generate(model, ids, cfg.max_new_tokens, top_p=top_p)
            samples.append({"prompt": prompt, "mode": mode, "text": tok.decode(out)})
    return samples


def text_files(paths: list[Path]) -> list[Path]:
    return [f for p in paths for f in (sorted(p.rglob("*.txt")) if p.is_dir() else [p])]


def extra_perplexities(model, tokenizer: Manifest, cfg: EvaluateConfig, folder: Path) -> dict:
    """Perplexity on each extra text set, packed into blocks the way the training data is."""
    from model.inference import perplexity

    tok = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
    eos, width = tok.token_to_id(EOS), model.cfg.seq_len + 1
    results = {}
    for i, path in enumerate(cfg.extra_texts):
        ids = [t for f in text_files([path]) for t in tok.encode(f.read_text(encoding="utf-8", errors="replace")).ids + [eos]]
        num_blocks = len(ids) // width
        if num_blocks == 0:
            raise ValueError(f"evaluate.extra_texts[{i}]: {path} holds fewer than {width} tokens")
        blocks_path = folder / f"extra-{i}.arrow"
        writer = TokenRowWriter(blocks_path, width, tok.get_vocab_size())
        writer.write(np.asarray(ids[: num_blocks * width]).reshape(num_blocks, width))
        writer.close()
        results[str(path)] = perplexity(model, blocks_path)
    return results


def sft_metrics(tuned: Manifest, tokenizer: Manifest, cfg: EvaluateConfig) -> dict:
    """Validation loss on response tokens, and what the tuned model answers to held-out prompts."""
    from model.inference import generate
    from model.weights import load_gpt

    model = load_gpt(tuned.local_root())
    tok = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
    prompts = json.loads(tuned.local_file("val_prompts").read_text())
    answers = [{"prompt": p, "response": tok.decode(generate(model, tok.encode(p).ids[-(model.cfg.seq_len // 2):],
                                                              cfg.max_new_tokens, stop_id=tok.token_to_id(EOS)))}
               for p in prompts]
    return {"val_loss": tuned.stats["final_val_loss"], "first_train_loss": tuned.stats["first_train_loss"],
            "final_train_loss": tuned.stats["final_train_loss"], "samples": answers}


def compute_metrics(manifests: dict[str, Manifest], cfg: EvaluateConfig, folder: Path) -> dict:
    from model.inference import perplexity, predict
    from model.weights import load_classifier, load_gpt

    packed, pretrained, finetuned = manifests["pack"], manifests["pretrain"], manifests["finetune"]
    lm_model = load_gpt(pretrained.local_root())
    lm = perplexity(lm_model, packed.local_files("val-"), max_blocks=cfg.max_val_blocks)
    label_names = finetuned.stats["label_names"]
    truth, predicted = predict(load_classifier(finetuned.local_root(), len(label_names)), finetuned.local_file("test_arrow"))
    train = pq.read_table(finetuned.local_file("train_parquet"))
    test = pq.read_table(finetuned.local_file("test_parquet"))
    base = baselines(train.column("text").to_pylist(), train.column("label").to_numpy(), test.column("text").to_pylist())
    return {
        "schema_version": SCHEMA_VERSION,
        "pretrain": {"val_loss": lm["loss"], "val_perplexity": lm["perplexity"], "val_tokens": lm["tokens"],
                     **pretrained.stats, "extra_texts": extra_perplexities(lm_model, manifests["tokenizer"], cfg, folder)},
        "classification": {
            "labels": label_names, "positive_label": finetuned.stats["positive_label"], "test_examples": len(truth),
            "model": classification_metrics(truth, predicted, label_names),
            "baselines": {name: classification_metrics(truth, pred, label_names) for name, pred in base.items()},
        },
    }


def headline(metrics: dict) -> dict:
    cls = metrics["classification"]
    positive = cls["positive_label"]
    f1 = {name: m["per_class"][positive]["f1"] for name, m in [("model", cls["model"]), *cls["baselines"].items()]}
    return {"val_perplexity": metrics["pretrain"]["val_perplexity"], f"{positive}_f1": f1["model"],
            f"{positive}_f1_majority": f1["majority"], f"{positive}_f1_bow_logreg": f1["bow_logreg"],
            "beats_bow_baseline": f1["model"] > f1["bow_logreg"]}


def evaluate(manifests: dict[str, Manifest], cfg: EvaluateConfig, workdir: str, recipe: dict) -> Manifest:
    """`recipe`: the whole resolved recipe, shown in the report."""
    # the extra texts by content: an edited file is a new measurement even under the same name
    extra = [f"{f}:{file_digest(f)}" for f in text_files(cfg.extra_texts)]
    inputs = [m.fingerprint for m in manifests.values()] + extra
    fp = fingerprint("evaluate", CODE, cfg.model_dump(mode="json"), inputs)

    def build(folder: Path) -> dict:
        from tasks.eval.report import render_report, save_report_inputs

        metrics = compute_metrics(manifests, cfg, folder)
        metrics["headline"] = headline(metrics)
        metrics["data"] = {name: m.counts | {"rejected_by_reason": m.stats.get("rejected_by_reason", {})}
                           for name, m in manifests.items() if name in document_stages()}
        metrics["lineage"] = {name: m.fingerprint for name, m in manifests.items()}
        # what each of those outputs was made with: code, libraries, config, input files (`tokenmill lineage`)
        metrics["lineage_detail"] = {name: {k: m.lineage.get(k) for k in ("code", "libraries", "config", "inputs")}
                                     for name, m in manifests.items()}
        if "sft" in manifests:
            metrics["sft"] = sft_metrics(manifests["sft"], manifests["tokenizer"], cfg)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        samples = generation_samples(manifests["pretrain"], manifests["tokenizer"], cfg)
        save_report_inputs(folder, manifests, samples, recipe)
        render_report(folder)
        return {"stats": {"headline": metrics["headline"]},
                "files": {"report": "report.html", "report_md": "report.md", "metrics": "metrics.json"}}

    return run_stage(workdir, "evaluate", fp, build)
