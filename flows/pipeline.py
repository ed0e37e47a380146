"""The pipeline, as in the diagram: ingest -> clean -> dedup -> tokenizer -> tokenize+pack -> pretrain -> finetune -> evaluate.

Beside the main line: the Hugging Face export of the pretrained model, and SFT when the recipe names prompt/response data.
"""

from collections.abc import Callable
from pathlib import Path

from prefect import flow

from flows.config import PipelineConfig
from infra.ray_runtime import configure_ray
from tasks.clean import clean_task
from tasks.dedup import dedup_task
from tasks.evaluate import evaluate_task
from tasks.export import export_task
from tasks.finetune import finetune_task
from tasks.ingest import ingest_task
from tasks.pack import pack_task
from tasks.sft import sft_task
from tasks.stage import Manifest, forcing
from tasks.tokenizer import tokenizer_task
from tasks.train import pretrain_task


STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack", "pretrain", "export", "finetune", "sft", "evaluate"]


class UntilReached(Exception):
    pass


class Stages:
    """Runs stage tasks in order, keeps their manifests, and stops after `until` (`--until pack`: data only)."""

    def __init__(self, until: str | None):
        self.until, self.manifests = until, {}

    def run(self, name: str, task_fn: Callable, *args) -> Manifest:
        manifest = task_fn(*args)
        self.manifests[name] = manifest
        if name == self.until:
            raise UntilReached(name)
        return manifest


def forced_from(stage: str | None) -> set[str]:
    """`--force clean` rebuilds clean (its signals step too) and everything after it."""
    forced = set(STAGES[STAGES.index(stage):]) if stage else set()
    return forced | {"clean_signals"} if "clean" in forced else forced


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig, until: str | None = None, force: str | None = None) -> dict[str, Manifest]:
    workdir = Path(config.workdir).resolve()
    configure_ray(config.ray.num_cpus, config.ray.address)
    stages = Stages(until)
    with forcing(forced_from(force)):
        try:
            run_stages(stages, config, workdir)
        except UntilReached:
            pass
    return stages.manifests


def run_stages(s: Stages, config: PipelineConfig, workdir: Path) -> None:
    ingested = s.run("ingest", ingest_task, config.ingest, workdir)
    cleaned = s.run("clean", clean_task, ingested, config.clean, workdir)
    deduped = s.run("dedup", dedup_task, cleaned, config.dedup, workdir)
    tokenizer = s.run("tokenizer", tokenizer_task, deduped, config.tokenizer, workdir)
    packed = s.run("pack", pack_task, deduped, tokenizer, config.pack, workdir)
    pretrained = s.run("pretrain", pretrain_task, packed, config.pretrain, workdir)
    s.run("export", export_task, pretrained, tokenizer, workdir)
    s.run("finetune", finetune_task, pretrained, tokenizer, config.finetune, workdir)
    if config.sft.data:
        s.run("sft", sft_task, pretrained, tokenizer, config.sft, workdir)
    s.run("evaluate", evaluate_task, dict(s.manifests), config.evaluate, config.model_dump(mode="json"), workdir)
