"""The evaluation report: a self-contained report.html (plots inline), report.md, and the Prefect headline."""

import base64
import html
import io
import json
from pathlib import Path

import yaml

from infra.files import read_jsonl
from infra.stage import Manifest
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


def plot_training(metrics_by_run: dict[str, list[dict]]) -> str:
    """Loss per run (their scales differ: next-token vs classification), learning rate, throughput."""
    fig, axes = pyplot().subplots(1, len(metrics_by_run) + 2, figsize=(15, 3.4))
    for ax, (run, records) in zip(axes, metrics_by_run.items()):
        train = [r for r in records if r["split"] == "train"]
        val = [r for r in records if r["split"] == "val"]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o--", label="val")
        ax.set_title(f"{run} loss")
    for run, records in metrics_by_run.items():
        train = [r for r in records if r["split"] == "train"]
        axes[-2].plot([r["step"] for r in train], [r["lr"] for r in train], label=run)
        axes[-1].plot([r["step"] for r in train[1:]], [r["tokens_per_s"] for r in train[1:]], label=run)
    axes[-2].set_title("learning rate")
    axes[-1].set_title("tokens/s (all ranks)")
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
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def comparison_rows(metrics: dict) -> list[dict]:
    cls = metrics["classification"]
    positive = cls["positive_label"]
    runs = [("fine-tuned model", cls["model"])] + [(f"baseline: {n}", m) for n, m in cls["baselines"].items()]
    return [{"model": name, f"{positive} precision": m["per_class"][positive]["precision"],
             f"{positive} recall": m["per_class"][positive]["recall"], f"{positive} F1": m["per_class"][positive]["f1"],
             "macro F1": m["macro_f1"], "accuracy": m["accuracy"]} for name, m in runs]


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
    h = metrics["headline"]
    positive = metrics["classification"]["positive_label"]
    if h["beats_bow_baseline"]:
        return f"The fine-tuned model beats the bag-of-words baseline on {positive} F1."
    return (f"The fine-tuned model does NOT beat the bag-of-words baseline on {positive} F1 "
            f"({h[f'{positive}_f1']:.3f} vs {h[f'{positive}_f1_bow_logreg']:.3f}).")


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
    metrics = json.loads((folder / "metrics.json").read_text())
    manifests = {k: Manifest.model_validate(v) for k, v in json.loads((folder / "manifests.json").read_text()).items()}
    samples = json.loads((folder / "samples.json").read_text())
    run_config = json.loads((folder / "run_config.json").read_text())
    write_report(folder, metrics, manifests, samples, run_config)
    return folder / "report.html"


def write_report(folder: Path, metrics: dict, manifests: dict[str, Manifest], samples: list[dict], run_config: dict) -> None:
    runs = {name: read_jsonl(manifests[name].local_file("metrics")) for name in ("pretrain", "finetune", "sft")
            if name in manifests}
    cls = metrics["classification"]
    images = {"training": plot_training(runs), "funnel": plot_funnel(metrics["data"]),
              "confusion": plot_confusion(cls["model"]["confusion"], cls["labels"])}
    pretrain = {k: v for k, v in metrics["pretrain"].items() if k != "extra_texts"}
    extra = [{"text set": name, **values} for name, values in metrics["pretrain"].get("extra_texts", {}).items()]
    sections = {
        "Headline": f"<p><b>{html.escape(verdict(metrics))}</b></p>" + html_table([metrics["headline"]]),
        "Classification (test split)": html_table(comparison_rows(metrics)) + html_table(per_class_rows(metrics))
        + f'<img src="{images["confusion"]}" alt="confusion matrix">',
        "Pretraining": html_table([pretrain]) + (html_table(extra) if extra else "")
        + f'<img src="{images["training"]}" alt="training curves">',
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


def markdown_report(metrics: dict, manifests: dict[str, Manifest], samples: list[dict]) -> str:
    return (f"# tokenmill report\n\n**{verdict(metrics)}**\n\n## Classification (test split)\n\n{md_table(comparison_rows(metrics))}"
            f"\n## Pretraining\n\n{md_table([metrics['pretrain']])}\n## Stages\n\n{md_table(stage_table(manifests))}"
            f"\n## Generation samples\n\n{md_table(samples)}")


def headline_markdown(metrics: dict, report_path: Path) -> str:
    return (f"# tokenmill run\n\n**{verdict(metrics)}**\n\n{md_table(comparison_rows(metrics))}\n"
            f"Validation perplexity of the pretrained model: **{metrics['pretrain']['val_perplexity']:.2f}**\n\n"
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
