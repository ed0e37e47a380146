"""The pipeline, as in the diagram: ingest -> clean -> dedup -> tokenizer -> tokenize+pack -> pretrain -> finetune -> evaluate.

Beside the main line: the Hugging Face export of the pretrained model, and SFT when the recipe names prompt/response data.
Each phase is a subflow, so a run in the Prefect UI reads prepare-data -> pretrain -> finetune -> evaluate.
"""

import functools
from pathlib import Path

from prefect import Task, flow, task
from prefect.artifacts import create_table_artifact
from prefect.context import TaskRunContext
from prefect.states import Completed, State

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


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig, until: str | None = None, force: str | None = None) -> dict[str, Manifest]:
    workdir = Path(config.workdir).resolve()
    configure_ray(config.ray.num_cpus, config.ray.address)
    done = Stages(until)
    with forcing(forced_from(force)), done:
        data = done.keep(prepare_data(config, workdir, until))
        models = done.keep(pretrain(data["pack"], data["tokenizer"], config, workdir, until))
        done.keep(finetune(models["pretrain"], data["tokenizer"], config, workdir, until))
        done.keep(evaluate(dict(done.manifests), config, workdir))
    return done.manifests


@flow(name="prepare-data")
def prepare_data(config: PipelineConfig, workdir: Path, until: str | None = None) -> dict[str, Manifest]:
    with Stages(until) as s:
        ingested = s.run("ingest", ingest_task, config.ingest, workdir)
        cleaned = s.run("clean", clean_task, ingested, config.clean, workdir)
        deduped = s.run("dedup", dedup_task, cleaned, config.dedup, workdir, config.finetune)
        tokenizer = s.run("tokenizer", tokenizer_task, deduped, config.tokenizer, workdir)
        s.run("pack", pack_task, deduped, tokenizer, config.pack, workdir)
    return s.manifests


@flow(name="pretrain")
def pretrain(packed: Manifest, tokenizer: Manifest, config: PipelineConfig, workdir: Path,
             until: str | None = None) -> dict[str, Manifest]:
    with Stages(until) as s:
        pretrained = s.run("pretrain", pretrain_task, packed, config.pretrain, workdir)
        s.run("export", export_task, pretrained, tokenizer, workdir)
    return s.manifests


@flow(name="finetune")
def finetune(pretrained: Manifest, tokenizer: Manifest, config: PipelineConfig, workdir: Path,
             until: str | None = None) -> dict[str, Manifest]:
    with Stages(until) as s:
        s.run("finetune", finetune_task, pretrained, tokenizer, config.finetune, workdir)
        if config.sft.data:
            s.run("sft", sft_task, pretrained, tokenizer, config.sft, workdir)
    return s.manifests


@flow(name="evaluate")
def evaluate(manifests: dict[str, Manifest], config: PipelineConfig, workdir: Path) -> dict[str, Manifest]:
    with Stages(None) as s:
        s.run("evaluate", evaluate_task, manifests, config.evaluate, config.model_dump(mode="json"), workdir)
    return s.manifests


class UntilReached(Exception):
    pass


class Stages:
    """Runs stage tasks in order, keeps their manifests, and stops after `until` (`--until pack`: data only).

    Used as a context manager around the stages: reaching `until` ends the `with` block, so a phase that
    stops early still finishes Completed and the flow returns what ran.
    """

    def __init__(self, until: str | None):
        self.until, self.manifests = until, {}

    def run(self, name: str, task_fn: Task, *args) -> Manifest:
        state = as_stage(name, task_fn)(*args, return_state=True)
        return self.keep({name: state.result()})[name]

    def keep(self, manifests: dict[str, Manifest]) -> dict[str, Manifest]:
        self.manifests |= manifests
        if self.until in manifests:
            raise UntilReached(self.until)
        return manifests

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        return kind is UntilReached


def forced_from(stage: str | None) -> set[str]:
    """`--force clean` rebuilds clean (its signals step too) and everything after it."""
    forced = set(STAGES[STAGES.index(stage):]) if stage else set()
    return forced | {"clean_signals"} if "clean" in forced else forced


def as_stage(name: str, task_fn: Task) -> Task:
    """`task_fn` as the pipeline runs it: its run named `<stage> <fingerprint>`, its counts and stats filed as a
    table artifact, and a reused output ending the run in a Completed state named Cached, as the UI shows
    Prefect's own cache hits, instead of a plain Completed."""

    @functools.wraps(task_fn.fn)
    def run_stage_task(*args) -> Manifest | State:
        manifest = task_fn.fn(*args)
        # The fingerprint is known only once the stage has hashed its config and inputs, after Prefect created
        # and named the run (a `task_run_name` callable sees only the parameters). Prefect records a task run
        # from the state events its engine sends, each carrying this run object: renaming it here lands with
        # the final state. (`client.set_task_run_name` would race with those events and can lose.)
        TaskRunContext.get().task_run.name = f"{name} {manifest.fingerprint}"
        create_table_artifact(key=f"tokenmill-{name}-stats", table=stat_rows(manifest),
                              description=f"{name} {manifest.fingerprint}: {'cached' if manifest.cached else 'ran'}")
        if manifest.cached:
            return Completed(name="Cached", data=manifest, message=f"reused {manifest.path}")
        return manifest

    return task(run_stage_task, name=task_fn.name, retries=task_fn.retries,
                retry_delay_seconds=task_fn.retry_delay_seconds, task_run_name=name)


def stat_rows(manifest: Manifest) -> list[dict]:
    """A manifest's counts and scalar stats as `metric, value` rows; nested dicts one level deep (`rejected_by_reason.too_short`)."""
    flat = {"cached": manifest.cached, "seconds": round(manifest.seconds, 2), **manifest.counts}
    for key, value in manifest.stats.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
        elif isinstance(value, (int, float, str, bool)):
            flat[key] = value
    return [{"metric": key, "value": value} for key, value in flat.items()]
