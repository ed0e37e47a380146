"""The evaluation report: a self-contained report.html (plots inline), report.md, and the Prefect headline."""

import base64
import html
import io
import json
from pathlib import Path

import yaml

from infra.files import read_jsonl
from infra.stage import Manifest
from tasks.eval.harness import CLOZE_TASK
from tasks.stages import document_stages, stage_names


def pyplot():
    """matplotlib, headless (no display on servers and CI); imported when a figure is drawn, not when the flow or
    the CLI imports this module for its tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def plot_learning_curves(curves: dict[str, dict[str, list[dict]]]) -> str:
    """Train and validation loss over steps, one panel per training stage (their scales differ: next-token,
    classification, response tokens)."""
    fig, axes = pyplot().subplots(1, len(curves), figsize=(5 * len(curves), 3.4), squeeze=False)
    for ax, (stage, splits) in zip(axes[0], curves.items()):
        ax.plot([p["step"] for p in splits["train"]], [p["loss"] for p in splits["train"]], label="train")
        ax.plot([p["step"] for p in splits["val"]], [p["loss"] for p in splits["val"]], "o--", label="val")
        ax.set_title(f"{stage} loss")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return figure_to_data_uri(fig)


def plot_training(metrics_by_run: dict[str, list[dict]]) -> str:
    """Learning rate and throughput of each training run, from the loops' own logs."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 3.4))
    for run, records in metrics_by_run.items():
        train = [r for r in records if r["split"] == "train"]
        axes[0].plot([r["step"] for r in train], [r["lr"] for r in train], label=run)
        axes[1].plot([r["step"] for r in train[1:]], [r["tokens_per_s"] for r in train[1:]], label=run)
    axes[0].set_title("learning rate")
    axes[1].set_title("tokens/s (all ranks)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return figure_to_data_uri(fig)


def plot_funnel(data: dict) -> str:
    stages = [s for s in document_stages() if s in data]
    reasons = sorted({r for s in stages for r in data[s]["rejected_by_reason"]})
    fig, ax = pyplot().subplots(figsize=(7, 3))
    ax.bar(stages, [data[s].get("kept", 0) for s in stages], label="kept", color="#4c9f70")
    bottom = [data[s].get("kept", 0) for s in stages]
    for reason in reasons:
        heights = [data[s]["rejected_by_reason"].get(reason, 0) for s in stages]
        ax.bar(stages, heights, bottom=bottom, label=f"rejected: {reason}")
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("documents")
    ax.set_title("data funnel")
    ax.legend(fontsize=7, loc="lower right")
    return figure_to_data_uri(fig)


def plot_confusion(confusion: list[list[int]], labels: list[str]) -> str:
    fig, ax = pyplot().subplots(figsize=(3.4, 3))
    ax.imshow(confusion, cmap="Blues")
    darkest = max(max(row) for row in confusion)
    for i, row in enumerate(confusion):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > darkest / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (test)")
    return figure_to_data_uri(fig)


def columns(rows: list[dict]) -> list[str]:
    """Every key of every row, in order of first appearance: rows of different stages carry different counts."""
    return list(dict.fromkeys(key for row in rows for key in row))


def html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys = columns(rows)
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(row.get(k, '')))}</td>" for k in keys) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def md_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    keys = columns(rows)
    lines = ["| " + " | ".join(map(str, keys)) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt(value) -> str:
    if isinstance(value, dict):  # e.g. rejected by reason: `rule: count, ...`
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):  # an interval
        return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def comparison_rows(metrics: dict) -> list[dict]:
    cls = metrics["classification"]
    positive = cls["positive_label"]
    runs = [("fine-tuned model", cls["model"])] + [(f"baseline: {n}", m) for n, m in cls["baselines"].items()]
    return [{"model": name, f"{positive} precision": m["per_class"][positive]["precision"],
             f"{positive} recall": m["per_class"][positive]["recall"], f"{positive} F1": m["per_class"][positive]["f1"],
             f"{positive} F1 95% CI": m["ci95"]["f1"][positive], "macro F1": m["macro_f1"],
             "macro F1 95% CI": m["ci95"]["macro_f1"], "accuracy": m["accuracy"], "accuracy 95% CI": m["ci95"]["accuracy"]}
            for name, m in runs]


def paired_rows(metrics: dict) -> list[dict]:
    """The fine-tuned model minus each baseline, on the same resampled test examples."""
    return [{"comparison": f"fine-tuned model {c['verdict']} baseline: {baseline}", "on": metric.replace("_", " "),
             "difference": c["difference"], "paired 95% CI": c["ci95"]}
            for baseline, by_metric in metrics["classification"]["comparisons"].items() for metric, c in by_metric.items()]


def language_rows(metrics: dict) -> list[dict]:
    """The pretrained model on the validation blocks and on each source's held-out documents."""
    val = metrics["pretrain"]
    rows = [{"text": "validation blocks", "units": f"{val['val_blocks']} blocks",
             **{key: val[f"val_{key}"] for key in LANGUAGE_COLUMNS}}]
    return rows + [{"text": f"source: {source}", "units": f"{figures['documents']} documents",
                    **{key: figures[key] for key in LANGUAGE_COLUMNS}}
                   for source, figures in metrics["per_source"]["sources"].items()]


LANGUAGE_COLUMNS = ("perplexity", "perplexity_ci95", "bits_per_byte", "bits_per_byte_ci95", "tokens", "bytes")


def bootstrap_note(metrics: dict) -> str:
    b, per_source = metrics["bootstrap"], metrics["per_source"]
    return (f"95 % intervals: percentile bootstrap, {b['resamples']:,} resamples, seed {b['seed']}; classification "
            f"resamples test examples (paired: every model on the same resample), validation figures resample blocks, "
            f"per-source figures resample documents (at most {per_source['max_documents']} held-out documents per "
            f"source, the first {per_source['max_tokens_per_document']} tokens of each).")


def lm_eval_rows(metrics: dict) -> list[dict]:
    """Each lm-evaluation-harness task: accuracy (and length-normalised accuracy) with stderr and interval."""
    lm_eval = metrics.get("lm_eval")
    if lm_eval is None:
        return []
    return [{"task": task, "items": scores["items"], **{k: v for k, v in scores.items() if k != "items"},
             **({"chance": lm_eval["chance"]} if task == CLOZE_TASK else {})}
            for task, scores in lm_eval["tasks"].items()]


def lm_eval_note(metrics: dict) -> str:
    lm_eval = metrics["lm_eval"]
    return (f"lm-evaluation-harness {lm_eval['version']} on the Hugging Face export, zero-shot. tokenmill_heldout_cloze: "
            f"{lm_eval['cloze_items']} sentences from {lm_eval['held_out_documents']} held-out (validation) documents, "
            f"the real last word among real-word distractors; stderr as lm-eval reports it, 95 % interval = "
            f"acc ± 1.96 stderr. The task and per-item log-likelihoods are in `{lm_eval['task_folder']}/`; to score "
            f"it again outside the pipeline:")


def per_class_rows(metrics: dict) -> list[dict]:
    return [{"class": label, **values} for label, values in metrics["classification"]["model"]["per_class"].items()]


def stage_table(manifests: dict[str, Manifest]) -> list[dict]:
    """One row per stage of the stage table, in pipeline order; a stage this run did not reach says so."""
    rows = []
    for name in stage_names():
        if (m := manifests.get(name)) is None:
            rows.append({"stage": name, "status": "not run"})
            continue
        counts = ", ".join(f"{k}={v}" for k, v in m.counts.items())
        rows.append({"stage": name, "status": "cached" if m.cached else "ran", "seconds": round(m.seconds, 1),
                     "fingerprint": m.fingerprint, "counts": counts})
    return rows


def verdict(metrics: dict) -> str:
    """The headline in words: the fine-tuned model against the bag-of-words baseline, decided by the paired interval."""
    positive = metrics["classification"]["positive_label"]
    c = metrics["classification"]["comparisons"]["bow_logreg"][f"{positive}_f1"]
    low, high = c["ci95"]
    verb = "is not distinguishable from" if c["verdict"] == "not distinguishable from" else c["verdict"]
    return (f"The fine-tuned model {verb} the bag-of-words baseline on {positive} F1 "
            f"(difference {c['difference']:+.3f}, paired 95 % interval [{low:+.3f}, {high:+.3f}], "
            f"{metrics['bootstrap']['resamples']:,} resamples).")


REPORT_INPUTS = ("metrics.json", "manifests.json", "samples.json", "run_config.json")
REPORT_OUTPUTS = ("report.html", "report.md")


def save_report_inputs(folder: Path, manifests: dict[str, Manifest], samples: list[dict], run_config: dict) -> None:
    """Everything the report is drawn from, so that `tokenmill report` can redraw it without retraining."""
    (folder / "manifests.json").write_text(json.dumps({k: m.model_dump(mode="json") for k, m in manifests.items()}, indent=2))
    (folder / "samples.json").write_text(json.dumps(samples, indent=2))
    (folder / "run_config.json").write_text(json.dumps(run_config, indent=2))


def render_report(folder: Path) -> Path:
    """(Re)draw report.html and report.md from the stored inputs in an evaluate output folder."""
    missing = [name for name in REPORT_INPUTS if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{folder}: not an evaluation output (missing {', '.join(missing)})")
    from tasks.eval.evaluate import SCHEMA_VERSION

    metrics = json.loads((folder / "metrics.json").read_text())
    if metrics.get("schema_version") != SCHEMA_VERSION:  # older metrics lack what this report shows (its intervals)
        raise ValueError(f"{folder}: metrics.json has schema version {metrics.get('schema_version')}, this report draws "
                         f"version {SCHEMA_VERSION}; `tokenmill run --force evaluate` measures it again")
    manifests = {k: Manifest.model_validate(v) for k, v in json.loads((folder / "manifests.json").read_text()).items()}
    samples = json.loads((folder / "samples.json").read_text())
    run_config = json.loads((folder / "run_config.json").read_text())
    write_report(folder, metrics, manifests, samples, run_config)
    return folder / "report.html"


def write_report(folder: Path, metrics: dict, manifests: dict[str, Manifest], samples: list[dict], run_config: dict) -> None:
    runs = {name: read_jsonl(manifests[name].local_file("metrics")) for name in metrics["curves"]}
    cls = metrics["classification"]
    images = {"curves": plot_learning_curves(metrics["curves"]), "training": plot_training(runs),
              "funnel": plot_funnel(metrics["data"]), "confusion": plot_confusion(cls["model"]["confusion"], cls["labels"])}
    pretrain = {k: v for k, v in metrics["pretrain"].items() if k != "extra_texts"}
    extra = [{"text set": name, **values} for name, values in metrics["pretrain"].get("extra_texts", {}).items()]
    sections = {
        "Headline": f"<p><b>{html.escape(verdict(metrics))}</b></p>" + html_table([metrics["headline"]])
        + f"<p>{html.escape(bootstrap_note(metrics))}</p>",
        "Classification (test split)": html_table(comparison_rows(metrics)) + html_table(paired_rows(metrics))
        + html_table(per_class_rows(metrics)) + f'<img src="{images["confusion"]}" alt="confusion matrix">',
        "Language model (held-out text)": html_table(language_rows(metrics)) + (html_table(extra) if extra else ""),
        **({"lm-evaluation-harness": html_table(lm_eval_rows(metrics)) + f"<p>{html.escape(lm_eval_note(metrics))}</p>"
            + f"<pre>{html.escape(metrics['lm_eval']['command'])}</pre>"} if "lm_eval" in metrics else {}),
        "Learning curves": f'<img src="{images["curves"]}" alt="learning curves">'
        + f'<img src="{images["training"]}" alt="learning rate and throughput">',
        "Pretraining": html_table([pretrain]),
        "Data": f'<img src="{images["funnel"]}" alt="data funnel">' + html_table(
            [{"stage": s, **{k: v for k, v in d.items() if k != "rejected_by_reason"}, "rejected by reason": d["rejected_by_reason"]}
             for s, d in metrics["data"].items()]),
        "Stages": html_table(stage_table(manifests)),
        "Generation samples": html_table(samples),
        **({"SFT (response tokens only)": html_table([{k: v for k, v in metrics["sft"].items() if k != "samples"}])
            + html_table(metrics["sft"]["samples"])} if "sft" in metrics else {}),
        "Lineage": html_table([metrics["lineage"]]) + "<details><summary>resolved config</summary><pre>"
        + html.escape(yaml.safe_dump(run_config, sort_keys=False)) + "</pre></details>",
    }
    body = "".join(f"<h2>{title}</h2>{content}" for title, content in sections.items())
    (folder / "report.html").write_text(PAGE.format(body=body))
    (folder / "report.md").write_text(markdown_report(metrics, manifests, samples))


def curve_rows(curves: dict) -> list[dict]:
    """First and last loss of each curve: the learning curves in numbers, for the markdown report."""
    return [{"stage": stage, "split": split, "points": len(points), "first step": points[0]["step"],
             "first loss": points[0]["loss"], "last step": points[-1]["step"], "last loss": points[-1]["loss"]}
            for stage, splits in curves.items() for split, points in splits.items() if points]


def markdown_report(metrics: dict, manifests: dict[str, Manifest], samples: list[dict]) -> str:
    return (f"# tokenmill report\n\n**{verdict(metrics)}**\n\n{bootstrap_note(metrics)}\n\n"
            f"## Classification (test split)\n\n{md_table(comparison_rows(metrics))}\n{md_table(paired_rows(metrics))}"
            f"\n## Language model (held-out text)\n\n{md_table(language_rows(metrics))}"
            + (f"\n## lm-evaluation-harness\n\n{md_table(lm_eval_rows(metrics))}\n{lm_eval_note(metrics)}\n\n"
               f"```bash\n{metrics['lm_eval']['command']}\n```\n" if "lm_eval" in metrics else "")
            + f"\n## Learning curves\n\n{md_table(curve_rows(metrics['curves']))}"
            f"\n## Pretraining\n\n{md_table([{k: v for k, v in metrics['pretrain'].items() if k != 'extra_texts'}])}"
            f"\n## Stages\n\n{md_table(stage_table(manifests))}"
            f"\n## Generation samples\n\n{md_table(samples)}")


def cloze_line(metrics: dict) -> str:
    if "lm_eval" not in metrics:
        return ""
    cloze = metrics["lm_eval"]["tasks"][CLOZE_TASK]
    low, high = cloze.get("acc_ci95") or (float("nan"), float("nan"))
    return (f"Held-out cloze (lm-evaluation-harness): accuracy **{cloze['acc']:.3f}** [{low:.3f}, {high:.3f}] over "
            f"{cloze['items']} items, chance {metrics['lm_eval']['chance']:.2f}\n\n")


def headline_markdown(metrics: dict, report_path: Path) -> str:
    return (f"# tokenmill run\n\n**{verdict(metrics)}**\n\n{md_table(comparison_rows(metrics))}\n"
            f"Validation perplexity of the pretrained model: **{metrics['pretrain']['val_perplexity']:.2f}**, "
            f"bits per byte: **{metrics['pretrain']['val_bits_per_byte']:.3f}**\n\n{cloze_line(metrics)}"
            f"{bootstrap_note(metrics)}\n\n"
            f"Full report: `{report_path}`\n")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenmill report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; margin: 0.5em 0; }}
pre {{ background: #f7f7f7; padding: 1em; font-size: 0.85em; overflow-x: auto; }}
</style></head>
<body><h1>tokenmill report</h1>{body}</body></html>
"""
