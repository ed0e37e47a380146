"""`tokenmill plan`: what a run would reuse and what it would build, and why, without running anything.

The stage functions run as usual inside `infra.stage.planning()`: each computes its fingerprint from its
config, its code and its inputs' fingerprints, and run_stage records whether that output exists and, if
not, what differs from the stage's newest finished output, instead of building it. No Ray, no training,
no Prefect: ingest uses the digests it has cached, and a file it has not hashed yet is named as such.
"""

from flows.config import PipelineConfig
from infra import storage
from infra.stage import forcing, planning
from tasks.stages import STAGES, forced_from, stage_arguments


def plan(config: PipelineConfig, until: str | None = None, force: str | None = None) -> list[dict]:
    """One entry per stage (and clean's signals step): stage, fingerprint, action (reuse | run), why."""
    workdir = storage.normalize(config.workdir)
    storage.configure(config.storage.resolved())
    manifests: dict = {}
    with planning() as recorded, forcing(forced_from(force)):
        for row in STAGES:
            if row.config is not None and not row.enabled(getattr(config, row.name)):
                continue
            *positional, sections = stage_arguments(row, config, workdir, manifests)
            manifests[row.name] = row.load()(*positional, **sections)
            if row.name == until:
                break
    return recorded
