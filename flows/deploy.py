"""Operating the pipeline on a Prefect server: `tokenmill serve` and `tokenmill runs`.

`serve` registers the pipeline flow three times, with different default parameters, and runs what the server
schedules for them in this process's working directory (recipes name paths relative to it):

- full:  the whole pipeline, ingest to evaluate;
- data:  ingest, clean, dedup, tokenizer, tokenize+pack (`--until pack`), e.g. nightly as corpus files arrive;
- train: the whole pipeline again, but meant to follow `data`: its stages are content-addressed, so on a corpus
  that `data` processed they come from the cache and only pretrain, export, finetune, [sft], evaluate run.

Each deployment carries the resolved recipe as its `config` parameter (JSON, shown and editable in the UI);
a schedule with `overrides` carries its own copy with those applied.
"""

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

from prefect import serve as prefect_serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.config import PipelineConfig, load_config
from flows.pipeline import pipeline
from flows.watch import EVENT, resource_id

DEPLOYMENTS = {
    "full": ({"until": None}, "the whole pipeline: ingest to evaluate"),
    "data": ({"until": "pack"}, "the data stages: ingest, clean, dedup, tokenizer, tokenize+pack"),
    "train": ({"until": None}, "pretrain to evaluate; the data stages come from the cache the data deployment filled"),
}
HEADLINE_ARTIFACT = "tokenmill-evaluate-stats"  # the evaluate stage's stats table (flows/pipeline.py as_stage)


def deployment_name(config: PipelineConfig, kind: str) -> str:
    return f"{config.name}-{kind}"


def run_parameters(config: PipelineConfig) -> dict:
    """The flow's `config` parameter as JSON, the workdir absolute so the UI shows where outputs go."""
    resolved = config.model_copy(update={"workdir": Path(config.workdir).resolve()})
    return resolved.model_dump(mode="json", exclude={"schedules"})


def deployments(config_path: Path, overrides: list[str] = (), workdir: str | None = None,
                watch: bool = False) -> list[RunnerDeployment]:
    """The three deployments of `pipeline` with the recipe's schedules; with `watch`, the data deployment also
    runs on each `tokenmill.corpus.changed` event of this recipe (flows/watch.py). Raises ConfigError on a bad
    recipe."""
    config = load_config(config_path, overrides, workdir)
    built = []
    for kind, (parameters, description) in DEPLOYMENTS.items():
        schedules = [Cron(s.cron, timezone=s.timezone,
                          parameters={"config": run_parameters(load_config(config_path, [*overrides, *s.overrides], workdir))}
                          if s.overrides else None)
                     for s in config.schedules if s.deployment == kind]
        triggers = [corpus_trigger(config)] if watch and kind == "data" else None
        built.append(pipeline.to_deployment(
            deployment_name(config, kind), schedules=schedules, description=f"{config_path}: {description}",
            parameters={"config": run_parameters(config), "force": None} | parameters, tags=["tokenmill", kind],
            entrypoint_type=EntrypointType.MODULE_PATH, triggers=triggers))
    return built


def corpus_trigger(config: PipelineConfig) -> DeploymentEventTrigger:
    """Run on the watcher's event for this recipe's corpus, naming the files that started it."""
    return DeploymentEventTrigger(name=f"{config.name}: corpus changed", expect={EVENT},
                                  match={"prefect.resource.id": resource_id(config.name)},
                                  parameters={"changed_files": "{{ event.payload.files }}"})


def serve(built: list[RunnerDeployment]) -> None:
    """Register the deployments and run their flow runs until interrupted (schedules pause on the way out)."""
    prefect_serve(*built, print_starting_message=True)


async def recent_runs(limit: int) -> list[dict]:
    """The latest pipeline runs, newest first, each with its headline metrics when its evaluate stage ran."""
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["pipeline"])),
                                           sort=FlowRunSort.START_TIME_DESC, limit=limit)
        headlines = await evaluate_headlines(client, runs)
    return [{"name": run.name, "state": run.state.name if run.state else "-", "started": run.start_time,
             "duration": run.estimated_run_time, "scope": scope(run.parameters),
             "headline": headlines.get(run.id, {})} for run in runs]


async def evaluate_headlines(client, runs: list[FlowRun]) -> dict:
    """run id -> the `headline.*` values of the evaluate stats table filed inside its subflows."""
    async def headline(run: FlowRun) -> dict:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[HEADLINE_ARTIFACT])),
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])),
            task_run_filter=TaskRunFilter(), sort=ArtifactSort.CREATED_DESC, limit=1)
        return headline_of(found[0].data) if found else {}

    return dict(zip([r.id for r in runs], await asyncio.gather(*map(headline, runs))))


def headline_of(table: str | list[dict]) -> dict:
    rows = json.loads(table) if isinstance(table, str) else table
    return {row["metric"].removeprefix("headline."): row["value"] for row in rows if row["metric"].startswith("headline.")}


def scope(parameters: dict) -> str:
    until, force = parameters.get("until"), parameters.get("force")
    return " ".join(part for part in (f"until {until}" if until else "all stages", f"force {force}" if force else "") if part)


def format_duration(duration: timedelta | None) -> str:
    if duration is None:
        return "-"
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    return f"{minutes}m {seconds:02d}s" if minutes else f"{duration.total_seconds():.1f}s"


def format_started(started: datetime | None) -> str:
    return started.astimezone().strftime("%Y-%m-%d %H:%M:%S") if started else "not started"


def list_runs(limit: int) -> list[dict]:
    return asyncio.run(recent_runs(limit))
