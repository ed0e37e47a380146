"""Evaluate: perplexity, classification metrics beside trivial baselines, generation samples, the report."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from infra.code_hash import stage_code
from infra.files import read_jsonl
from infra.stage import Manifest, file_digest, fingerprint, run_stage
from infra.token_files import TokenRowWriter
from tasks.data.tokenizer import EOS
from tasks.eval.bootstrap import (
    CONFIDENCE,
    classification_intervals,
    paired_f1_difference,
    resampled_confusions,
)
from tasks.eval.harness import (
    CLOZE_TASK,
    LmEvalConfig,
    lm_eval_command,
    run_lm_eval,
    write_cloze_task,
)
from tasks.eval.language import (
    held_out_documents,
    per_source_figures,
    token_byte_lengths,
    val_block_figures,
)

# torch, scikit-learn and matplotlib are imported in the functions that use them: loading a recipe imports this
# module for EvaluateConfig, and `tokenmill plan` or a cached run must not pay seconds for them
from tasks.stages import document_stages

CODE = stage_code(__name__, libraries=("torch", "scikit-learn", "tokenizers", "matplotlib", "lm_eval", "transformers"))
SCHEMA_VERSION = 2


class EvaluateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompts: list[str] = Field(default_factory=lambda: ["The State of the Union", "Call me Ishmael."])
    max_new_tokens: int = Field(40, ge=1, le=1024)
    top_p: float = Field(0.9, gt=0, le=1)
    max_val_blocks: int | None = Field(512, ge=1, description="cap on validation blocks for perplexity")
    extra_texts: list[Path] = Field(default_factory=list, description="more .txt files or folders to measure perplexity on")
    bootstrap_resamples: int = Field(1000, ge=100, description="resamples behind every 95 % interval")
    bootstrap_seed: int = Field(0, description="seed of the resampling: the same seed gives the same intervals")
    max_docs_per_source: int = Field(200, ge=1, description="held-out documents scored per input source")
    max_doc_tokens: int = Field(4096, ge=1, description="tokens of each such document scored (its beginning)")
    lm_eval: LmEvalConfig | None = Field(None, description="run lm-evaluation-harness on the export: a cloze task "
                                         "built from held-out documents, and your own local tasks")


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


def with_intervals(truth: np.ndarray, predictions: dict[str, np.ndarray], label_names: list[str], positive: str,
                   cfg: EvaluateConfig) -> dict:
    """Each model's metrics with 95 % intervals, and the fine-tuned model against each baseline, paired: every
    model is scored on the same resamples of the test examples."""
    confusions = resampled_confusions(truth, predictions, len(label_names), cfg.bootstrap_resamples, cfg.bootstrap_seed)
    scored = {name: classification_metrics(truth, predicted, label_names)
                    | {"ci95": classification_intervals(confusions[name], label_names)}
              for name, predicted in predictions.items()}
    comparisons = {name: {f"{positive}_f1": comparison(scored, confusions, name, label_names.index(positive)),
                          "macro_f1": comparison(scored, confusions, name, None)}
                   for name in predictions if name != "model"}
    return {"model": scored.pop("model"), "baselines": scored, "comparisons": comparisons}


def comparison(scored: dict[str, dict], confusions: dict[str, np.ndarray], baseline: str, class_index: int | None) -> dict:
    """The model's F1 minus the baseline's (one class's, or macro F1 when class_index is None), and its paired interval."""
    def f1(name: str) -> float:
        metrics = scored[name]
        return metrics["macro_f1"] if class_index is None else list(metrics["per_class"].values())[class_index]["f1"]

    return {"difference": f1("model") - f1(baseline),
            **paired_f1_difference(confusions["model"], confusions[baseline], class_index)}


def classification_section(finetuned: Manifest, cfg: EvaluateConfig) -> dict:
    from model.inference import predict
    from model.weights import load_classifier

    label_names, positive = finetuned.stats["label_names"], finetuned.stats["positive_label"]
    truth, predicted = predict(load_classifier(finetuned.local_root(), len(label_names)), finetuned.local_file("test_arrow"))
    train = pq.read_table(finetuned.local_file("train_parquet"))
    test = pq.read_table(finetuned.local_file("test_parquet"))
    base = baselines(train.column("text").to_pylist(), train.column("label").to_numpy(), test.column("text").to_pylist())
    return {"labels": label_names, "positive_label": positive, "test_examples": len(truth),
            **with_intervals(truth, {"model": predicted, **base}, label_names, positive, cfg)}


def language_sections(manifests: dict[str, Manifest], cfg: EvaluateConfig, folder: Path,
                      documents: dict[str, list[str]]) -> dict:
    """The pretrained model on the packed validation blocks, the extra texts and each source's held-out documents."""
    from model.weights import load_gpt

    packed, pretrained = manifests["pack"], manifests["pretrain"]
    model = load_gpt(pretrained.local_root())
    tok = Tokenizer.from_file(str(manifests["tokenizer"].local_file("tokenizer")))
    byte_lengths = token_byte_lengths(tok)
    resampling = (cfg.bootstrap_resamples, cfg.bootstrap_seed)
    val = val_block_figures(model, packed, byte_lengths, cfg.max_val_blocks, *resampling)
    sources = per_source_figures(model, tok, byte_lengths, documents, cfg.max_doc_tokens, tok.token_to_id(EOS), *resampling)
    return {
        "pretrain": {**{f"val_{key}": value for key, value in val.items()}, **pretrained.stats,
                     "extra_texts": extra_perplexities(model, manifests["tokenizer"], cfg, folder)},
        "per_source": {"max_documents": cfg.max_docs_per_source, "max_tokens_per_document": cfg.max_doc_tokens,
                       "sources": sources},
    }


def learning_curves(manifests: dict[str, Manifest]) -> dict:
    """Train and validation loss over steps of each training stage (those that keep the loop's metrics.jsonl)."""
    curves = {}
    for name, manifest in manifests.items():
        if manifest.files.get("metrics", "").endswith(".jsonl"):
            records = read_jsonl(manifest.local_file("metrics"))
            curves[name] = {split: [{"step": r["step"], "loss": r["loss"]} for r in records if r["split"] == split]
                            for split in ("train", "val")}
    return curves


def lm_eval_section(manifests: dict[str, Manifest], cfg: LmEvalConfig, folder: Path,
                    documents: dict[str, list[str]], command: str) -> dict:
    """lm-evaluation-harness on the export: the cloze task over held-out documents, then the user's own tasks."""
    import torch

    tok = Tokenizer.from_file(str(manifests["tokenizer"].local_file("tokenizer")))
    window = manifests["pack"].stats["seq_len"]
    texts = [text for source in sorted(documents) for text in documents[source]]
    num_items = write_cloze_task(folder / "lm_eval", texts, cfg, lambda text: len(tok.encode(text).ids), window)
    results = run_lm_eval(manifests["export"].local_root(), folder / "lm_eval", cfg,
                          "cuda" if torch.cuda.is_available() else "cpu")
    return {**results, "task_folder": "lm_eval", "cloze_items": num_items, "chance": 1 / cfg.cloze_choices,
            "held_out_documents": len(texts), "command": command}


def compute_metrics(manifests: dict[str, Manifest], cfg: EvaluateConfig, folder: Path, lm_eval_cmd: str) -> dict:
    documents = held_out_documents(manifests["dedup"], manifests["pack"].lineage["config"]["val_fraction"],
                                   cfg.max_docs_per_source)
    return {
        "schema_version": SCHEMA_VERSION,
        "bootstrap": {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed, "confidence": CONFIDENCE,
                      "method": "percentile", "classification_unit": "test example, one resample shared by every model",
                      "val_unit": "validation block", "per_source_unit": "document"},
        **language_sections(manifests, cfg, folder, documents),
        "classification": classification_section(manifests["finetune"], cfg),
        "curves": learning_curves(manifests),
        **({"lm_eval": lm_eval_section(manifests, cfg.lm_eval, folder, documents, lm_eval_cmd)} if cfg.lm_eval else {}),
    }


def headline(metrics: dict) -> dict:
    cls, val = metrics["classification"], metrics["pretrain"]
    positive = cls["positive_label"]
    versus_bow = cls["comparisons"]["bow_logreg"][f"{positive}_f1"]
    return {"val_perplexity": val["val_perplexity"], "val_perplexity_ci95": val["val_perplexity_ci95"],
            "val_bits_per_byte": val["val_bits_per_byte"], f"{positive}_f1": cls["model"]["per_class"][positive]["f1"],
            f"{positive}_f1_ci95": cls["model"]["ci95"]["f1"][positive],
            **{f"{positive}_f1_{name}": m["per_class"][positive]["f1"] for name, m in cls["baselines"].items()},
            f"{positive}_f1_minus_bow_logreg": versus_bow["difference"],
            f"{positive}_f1_minus_bow_logreg_ci95": versus_bow["ci95"], "versus_bow_baseline": versus_bow["verdict"],
            **cloze_headline(metrics.get("lm_eval"))}


def cloze_headline(lm_eval: dict | None) -> dict:
    if lm_eval is None:
        return {}
    cloze = lm_eval["tasks"][CLOZE_TASK]
    return {"heldout_cloze_acc": cloze["acc"], "heldout_cloze_acc_ci95": cloze.get("acc_ci95"),
            "heldout_cloze_chance": lm_eval["chance"]}


def evaluate(manifests: dict[str, Manifest], cfg: EvaluateConfig, workdir: str, recipe: dict) -> Manifest:
    """`recipe`: the whole resolved recipe, shown in the report."""
    # the extra texts by content: an edited file is a new measurement even under the same name
    extra = [f"{f}:{file_digest(f)}" for f in text_files(cfg.extra_texts)]
    inputs = [m.fingerprint for m in manifests.values()] + extra
    fp = fingerprint("evaluate", CODE, cfg.model_dump(mode="json"), inputs)

    def build(folder: Path) -> dict:
        from tasks.eval.report import render_report, save_report_inputs, verdict

        command = lm_eval_command(workdir, fp, manifests["export"].fingerprint) if "export" in manifests else ""
        metrics = compute_metrics(manifests, cfg, folder, command)
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
        return {"stats": {"headline": metrics["headline"], "verdict": verdict(metrics)},
                "files": {"report": "report.html", "report_md": "report.md", "metrics": "metrics.json"}}

    return run_stage(workdir, "evaluate", fp, build)
