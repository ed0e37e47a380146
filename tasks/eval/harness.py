"""lm-evaluation-harness on the exported model, inside `evaluate`: the held-out cloze task and any local YAML tasks.

The task is written beside the metrics as an ordinary lm-eval task folder (YAML + JSONL), so the score can be
reproduced with the README's `lm_eval` command and nothing of ours in between.
"""

import json
import math
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tasks.eval.cloze import cloze_items, fit_context

CLOZE_TASK = "tokenmill_heldout_cloze"
CLOZE_DATA = "heldout_cloze.jsonl"
# the README shows this command; a test runs the README's copy on the tiny recipe's export
COMMAND = ("cd <workdir>/evaluate/<evaluate fp>/lm_eval\n"
           "lm_eval --model hf --model_args pretrained=<workdir>/export/<export fp>,dtype=float32 \\\n"
           f"        --include_path . --tasks {CLOZE_TASK} --device cpu")
INSTALL_HINT = "pip install -e '.[lm-eval]' (the Makefile installs it), or remove evaluate.lm_eval from the recipe"


class LmEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cloze_items: int = Field(200, ge=1, description="items of the held-out cloze task (fewer if the held-out text has fewer sentences)")
    cloze_choices: int = Field(4, ge=2, le=10, description="choices per item: the real last word and real-word distractors")
    seed: int = Field(0, description="seed of the item sampling and the distractors")
    include_path: Path | None = Field(None, description="a folder of your own lm-eval YAML tasks (local data only)")
    tasks: list[str] = Field(default_factory=list, description="tasks from include_path to run besides the cloze task")
    batch_size: int = Field(16, ge=1)


def cloze_task(data_file: str) -> dict:
    """The lm-eval task definition: a multiple choice scored by the log-likelihood of each choice."""
    return {
        "task": CLOZE_TASK, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": data_file}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}", "target_delimiter": "",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
    }


def write_cloze_task(folder: Path, texts: list[str], cfg: LmEvalConfig, count_tokens, max_tokens: int) -> int:
    """Write the task folder; the YAML names its data relative to the folder (run lm_eval from there).
    `count_tokens(text)` and `max_tokens`: the model's tokenizer and window, which each context is cut to fit."""
    items = [fit_context(item, count_tokens, max_tokens)
             for item in cloze_items(texts, cfg.cloze_items, cfg.cloze_choices, cfg.seed)]
    if not items:
        raise ValueError("evaluate.lm_eval: the held-out documents hold no sentence to build the cloze task from "
                         "(raise pack.val_fraction, or remove evaluate.lm_eval)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLOZE_DATA).write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    header = "# Written by tokenmill evaluate from held-out (validation) documents; run lm_eval from this folder.\n"
    (folder / f"{CLOZE_TASK}.yaml").write_text(header + yaml.safe_dump(cloze_task(CLOZE_DATA), sort_keys=False))
    return len(items)


def lm_eval_command(workdir: str, evaluate_fp: str, export_fp: str) -> str:
    return (COMMAND.replace("<workdir>", workdir).replace("<evaluate fp>", evaluate_fp)
            .replace("<export fp>", export_fp))


def run_lm_eval(export_dir: Path, task_folder: Path, cfg: LmEvalConfig, device: str) -> dict:
    """Scores with stderr per task, and each item's choice log-likelihoods in `samples_<task>.jsonl`."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise RuntimeError(f"evaluate.lm_eval is set but lm-evaluation-harness is not installed ({err}): {INSTALL_HINT}") from err
    if cfg.tasks and cfg.include_path is None:
        raise ValueError("evaluate.lm_eval.tasks names tasks but evaluate.lm_eval.include_path is not set")
    # in-process, the data file is named absolutely; the written YAML keeps it relative so the folder can move
    tasks = [cloze_task(str(task_folder / CLOZE_DATA)), *cfg.tasks]
    manager = TaskManager(include_path=str(cfg.include_path) if cfg.include_path else None)
    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(export_dir), "dtype": "float32"},
                                  tasks=tasks, device=device, batch_size=cfg.batch_size, task_manager=manager,
                                  log_samples=True, random_seed=cfg.seed)
    for task, samples in out["samples"].items():
        (task_folder / f"samples_{task}.jsonl").write_text("".join(json.dumps(sample_record(s)) + "\n" for s in samples))
    return {"version": lm_eval.__version__, "tasks": {task: task_scores(values, out["n-samples"][task]["effective"])
                                                      for task, values in out["results"].items()}}


def task_scores(values: dict, num_items: int) -> dict:
    """lm-eval's `metric,filter` keys as {metric: value, metric_stderr, metric_ci95 (normal approximation)}."""
    scores = {"items": num_items}
    for key, value in values.items():
        metric, comma, _ = key.partition(",")  # "acc,none": metric acc under filter none
        if comma and isinstance(value, int | float):
            scores[metric] = float(value)
    for metric in [m for m in scores if m != "items" and not m.endswith("_stderr")]:
        stderr = scores.get(f"{metric}_stderr")
        if stderr is not None and math.isfinite(stderr):
            scores[f"{metric}_ci95"] = [scores[metric] - 1.96 * stderr, scores[metric] + 1.96 * stderr]
    return scores


def sample_record(sample: dict) -> dict:
    """One item as lm-eval's --log_samples keeps it, trimmed to what explains the score."""
    loglikelihoods = [float(r[0]) for r in sample["filtered_resps"]]
    return {"doc_id": sample["doc_id"], "doc": sample["doc"], "target": sample["target"],
            "loglikelihoods": loglikelihoods, "acc": sample.get("acc")}
