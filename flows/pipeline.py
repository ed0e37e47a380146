"""The pipeline, as in the diagram: ingest -> clean -> dedup -> tokenizer -> tokenize+pack -> pretrain -> finetune -> evaluate.

The stages and their order come from the stage table (`tasks/stages.py`); this file makes them Prefect
tasks. Each phase is a subflow, so a run in the Prefect UI reads prepare-data -> pretrain -> finetune ->
evaluate, and each stage is one task named `<stage> <fingerprint>` with its stats as a table artifact.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import TaskRunContext
from prefect.states import Completed, State

from flows.config import PipelineConfig
from infra import storage
from infra.progress import reporting
from infra.ray_runtime import cluster_address, configure_ray, ensure_ray
from infra.runs import finish_run, start_run, used
from infra.stage import Manifest, OutputNotWritable, forcing, recording_use
from tasks.eval.report import headline_markdown, stage_table
from tasks.stages import PHASES, Stage, forced_from, stage_arguments, stages_in


@flow(name="pipeline", log_prints=True)
def pipeline(config: PipelineConfig, until: str | None = None, force: str | None = None,
             changed_files: list[str] | None = None) -> dict[str, Manifest]:
    """`changed_files`: the new or changed corpus files that started this run (`tokenmill serve --watch`)."""
    workdir = storage.normalize(config.workdir)
    if changed_files:
        get_run_logger().info("started by %d new or changed corpus file(s): %s", len(changed_files),
                              ", ".join(changed_files[:20]))
    storage.configure(config.storage.resolved())  # before Ray starts: its local workers inherit the options
    configure_ray(config.ray.num_cpus, config.ray.address, workdir)
    if cluster_address():  # a cluster: prove that every node can read the workdir before any stage runs
        ensure_ray()
    done: dict[str, Manifest] = {}
    try:
        record = start_run(workdir)  # the run's lease on what it uses, and gc's record of it afterwards
    except OutputNotWritable as err:  # the first stage's write fails the same way and names the stage too
        get_run_logger().warning("%s", err)
        record = None
    try:
        with forcing(forced_from(force)), recording_use(lambda stage, fp: record and used(record, stage, fp)):
            for phase in PHASES:  # prepare-data -> pretrain -> finetune -> evaluate
                done |= PHASE_FLOWS[phase](config, workdir, done, until)
                if until in done:
                    break
    except BaseException:
        if record:
            finish_run(record, ok=False)
        raise
    if record:
        finish_run(record, ok=True)
    return done


def run_phase(phase: str, config: PipelineConfig, workdir: str, upstream: dict[str, Manifest],
              until: str | None) -> dict[str, Manifest]:
    """Run the phase's stages in table order; stop after `until` (`--until pack`: the data stages only)."""
    manifests = dict(upstream)
    for row in stages_in(phase):
        section = getattr(config, row.name, None)
        if row.config is not None and not row.enabled(section):
            continue
        state = as_task(row)(*stage_arguments(row, config, workdir, manifests), return_state=True)
        manifests[row.name] = state.result()
        if row.name == until:
            break
    return {name: m for name, m in manifests.items() if name not in upstream}


def phase_flow(phase: str):
    def run_this_phase(config: PipelineConfig, workdir: str, upstream: dict[str, Manifest],
                       until: str | None = None) -> dict[str, Manifest]:
        return run_phase(phase, config, workdir, upstream, until)

    return flow(name=phase)(run_this_phase)


PHASE_FLOWS = {phase: phase_flow(phase) for phase in PHASES}


def as_task(row: Stage):
    """The stage function as the pipeline runs it: a Prefect task with the table's retries, its run named
    `<stage> <fingerprint>`, its logs and training progress in the run, its counts and stats filed as a table
    artifact, and a reused output ending the run in a Completed state named Cached, as the UI shows Prefect's
    own cache hits, instead of a plain Completed."""

    def run_stage_task(*args) -> Manifest | State:
        *positional, sections = args
        with forwarded_logs(), reporting(progress_artifacts()):
            manifest = row.load()(*positional, **sections)
        # The fingerprint is known only once the stage has hashed its config and inputs, after Prefect created
        # and named the run (a `task_run_name` callable sees only the parameters). Prefect records a task run
        # from the state events its engine sends, each carrying this run object: renaming it here lands with
        # the final state. (`client.set_task_run_name` would race with those events and can lose.)
        TaskRunContext.get().task_run.name = f"{row.name} {manifest.fingerprint}"
        file_artifacts(row.name, manifest, positional)
        if manifest.cached:
            return Completed(name="Cached", data=manifest, message=f"reused {manifest.path}")
        return manifest

    run_stage_task.__name__ = row.name
    return task(run_stage_task, name=row.name, retries=row.retries, task_run_name=row.name)


def file_artifacts(name: str, manifest: Manifest, positional: list) -> None:
    create_table_artifact(key=f"tokenmill-{name}-stats", table=stat_rows(manifest),
                          description=f"{name} {manifest.fingerprint}: {'cached' if manifest.cached else 'ran'}")
    if "report" not in manifest.files:
        return
    metrics = json.loads(storage.read_text(manifest.file("metrics")))
    create_markdown_artifact(key="tokenmill-report", markdown=headline_markdown(metrics, manifest.file("report")),
                             description="tokenmill evaluation headline")
    upstream = next((arg for arg in positional if isinstance(arg, dict)), {})
    create_table_artifact(key="tokenmill-stage-stats", table=stage_table(upstream | {name: manifest}),
                          description="every stage of the run")
    report = manifest.file("report")
    create_link_artifact(key="tokenmill-report-html", link=report if storage.is_remote(report) else Path(report).as_uri(),
                         link_text="report.html", description="the full evaluation report")


class _ToRunLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        get_run_logger().log(record.levelno, "%s", record.getMessage())


@contextmanager
def forwarded_logs() -> Iterator[None]:
    """What stages and the Ray map log (loggers `tasks.*`, `infra.*`) lands in the task run's log, once: the run
    logger prints it to the console too, so the records stop there instead of also reaching the root logger."""
    handler, loggers = _ToRunLog(logging.INFO), [logging.getLogger("tasks"), logging.getLogger("infra")]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (level, propagate) in zip(loggers, saved):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def progress_artifacts():
    """A progress callback that keeps one Prefect progress artifact per key up to date."""
    artifact_ids: dict[str, object] = {}

    def on_progress(key: str, fraction: float, description: str) -> None:
        if key not in artifact_ids:
            artifact_ids[key] = create_progress_artifact(100.0 * fraction, description=description)
        else:
            update_progress_artifact(artifact_ids[key], 100.0 * fraction)

    return on_progress


def stat_rows(manifest: Manifest) -> list[dict]:
    """A manifest's counts and scalar stats as `metric, value` rows; nested dicts one level deep (`rejected_by_reason.too_short`)."""
    flat = {"cached": manifest.cached, "seconds": round(manifest.seconds, 2), **manifest.counts}
    if manifest.why and not manifest.cached:  # what `tokenmill plan` would have said: why this output was built
        flat["why"] = "; ".join(manifest.why)
    for key, value in manifest.stats.items():
        if isinstance(value, dict):
            flat |= {f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
        elif isinstance(value, (int, float, str, bool)):
            flat[key] = value
    return [{"metric": key, "value": value} for key, value in flat.items()]
