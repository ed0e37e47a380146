"""`tokenmill plan`: what a run would reuse and what it would build, and why, without running anything.

The stage functions run as usual inside `infra.stage.planning()`: each computes its fingerprint from its
config, its code and its inputs' fingerprints, and run_stage records whether that output exists and, if
not, what differs from the stage's newest finished output, instead of building it. No Ray, no training,
no Prefect: ingest uses the digests it has cached, and a file it has not hashed yet is named as such.
"""

from flows.config import PipelineConfig
from infra import storage
from infra.runs import finish_run, start_run, used
from infra.stage import Manifest, forcing, planning
from tasks.stages import STAGES, forced_from, stage_arguments


def plan(config: PipelineConfig, until: str | None = None, force: str | None = None) -> list[dict]:
    """One entry per stage (and clean's signals step): stage, fingerprint, action (reuse | run), why."""
    return plan_with_outputs(config, until, force)[0]


def plan_with_outputs(config: PipelineConfig, until: str | None = None,
                      force: str | None = None) -> tuple[list[dict], dict[str, Manifest]]:
    """The plan, and the manifests the stage functions handed on: the finished outputs where they exist."""
    workdir = storage.normalize(config.workdir)
    storage.configure(config.storage.resolved())
    manifests: dict[str, Manifest] = {}
    with planning() as recorded, forcing(forced_from(force)):
        for row in STAGES:
            if row.config is not None and not row.enabled(getattr(config, row.name)):
                continue
            *positional, sections = stage_arguments(row, config, workdir, manifests)
            manifests[row.name] = row.load()(*positional, **sections)
            if row.name == until:
                break
    return recorded, manifests


def nothing_to_do(config: PipelineConfig, planned: list[dict], manifests: dict[str, Manifest]) -> dict[str, Manifest] | None:
    """The finished outputs when every stage of the plan has one (a run would only reuse them), else None.
    The run is recorded (`infra/runs.py`) as a run that used them, so gc keeps them."""
    if any(entry["action"] != "reuse" for entry in planned):
        return None
    record = start_run(storage.normalize(config.workdir))
    for entry in planned:
        used(record, entry["stage"], entry["fingerprint"])
    finish_run(record, ok=True)
    return {name: m.model_copy(update={"cached": True, "seconds": 0.0}) for name, m in manifests.items()}
