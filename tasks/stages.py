"""The stage table: the one list that names every stage, in pipeline order.

The CLI (`--until`, `--force`), the pipeline's tasks and phases, the recipe (`PipelineConfig`) and the
report's stage table all derive from it. Adding a stage is one new module and one row here.
This module imports neither Prefect nor Ray nor torch: functions and config classes are named as
`module:attribute` and loaded only when a run needs them, so `tokenmill --help` stays fast.

A stage function is called as `function(*upstream_manifests, config, workdir, **sections)`:
the manifests of the stages in `inputs` (all earlier ones for `inputs=ALL`, as a dict), its own
recipe section when it has a `config`, and the other recipe sections it names in `sections`
(`RECIPE` gives the whole resolved recipe as a dict).
"""

import importlib
from dataclasses import dataclass
from typing import Any

ALL = ("*",)  # inputs: every manifest so far, as {stage: manifest}
RECIPE = "recipe"  # a section name: the whole resolved recipe, as JSON-ready dict

PHASES = ("prepare-data", "pretrain", "finetune", "evaluate")


@dataclass(frozen=True)
class Stage:
    name: str  # also its recipe section and its folder under the workdir
    phase: str  # the Prefect subflow it runs in: one of PHASES
    function: str  # "module:function"
    config: str | None = None  # "module:Class" of its recipe section, None when it has no settings
    inputs: tuple[str, ...] = ()  # stages whose manifests it takes, in this order
    sections: tuple[str, ...] = ()  # other recipe sections it reads, passed by keyword
    retries: int = 0  # Prefect task retries: data stages are retry-safe, training resumes on its own instead
    enabled_by: str | None = None  # a field of its config that must be set for it to run (sft: `data`)
    counts_documents: bool = False  # keeps or rejects documents: in = kept + rejected, shown in the report

    def load(self):
        return load(self.function)

    def config_class(self) -> type | None:
        return load(self.config) if self.config else None

    def enabled(self, config: Any) -> bool:
        return self.enabled_by is None or bool(getattr(config, self.enabled_by))


def load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


STAGES: list[Stage] = [
    Stage("ingest", "prepare-data", "tasks.data.ingest:ingest", "tasks.data.ingest:IngestConfig",
          retries=1, counts_documents=True),
    Stage("clean", "prepare-data", "tasks.data.clean:clean", "tasks.data.clean:CleanConfig", ("ingest",),
          retries=1, counts_documents=True),
    Stage("dedup", "prepare-data", "tasks.data.dedup:dedup", "tasks.data.dedup:DedupConfig", ("clean",),
          sections=("finetune",), retries=1, counts_documents=True),
    Stage("tokenizer", "prepare-data", "tasks.data.tokenizer:train_tokenizer", "tasks.data.tokenizer:TokenizerConfig",
          ("dedup",), retries=1),
    Stage("pack", "prepare-data", "tasks.data.pack:tokenize_and_pack", "tasks.data.pack:PackConfig",
          ("dedup", "tokenizer"), retries=1),
    Stage("pretrain", "pretrain", "tasks.train.pretrain:pretrain", "tasks.train.pretrain:PretrainConfig", ("pack",)),
    Stage("export", "pretrain", "tasks.train.export:export", None, ("pretrain", "tokenizer"), retries=1),
    Stage("finetune", "finetune", "tasks.train.finetune:finetune", "tasks.train.finetune:FinetuneConfig",
          ("pretrain", "tokenizer")),
    Stage("sft", "finetune", "tasks.train.sft:sft", "tasks.train.sft:SFTConfig", ("pretrain", "tokenizer"),
          enabled_by="data"),
    Stage("evaluate", "evaluate", "tasks.eval.evaluate:evaluate", "tasks.eval.evaluate:EvaluateConfig", ALL,
          sections=(RECIPE,)),
]


def stage_names() -> list[str]:
    return [stage.name for stage in STAGES]


def stages_in(phase: str) -> list[Stage]:
    return [row for row in STAGES if row.phase == phase]


def stage(name: str) -> Stage:
    for row in STAGES:
        if row.name == name:
            return row
    raise KeyError(name)


def unknown_stage(option: str, name: str) -> str | None:
    """The message for `--until pak` and the like; None when `name` is a stage."""
    if name in stage_names():
        return None
    return f"{option} {name!r}: not a stage; one of {', '.join(stage_names())}"


def stages_from(name: str | None) -> list[str]:
    """`--force clean`: that stage and every later one."""
    names = stage_names()
    return names[names.index(name):] if name else []


def document_stages() -> list[str]:
    return [row.name for row in STAGES if row.counts_documents]


def stage_arguments(row: Stage, config: Any, workdir: str, manifests: dict[str, Any]) -> tuple:
    """The stage table's calling convention for a recipe (`PipelineConfig`): upstream manifests, own section,
    workdir, then the named sections (a dict, last)."""
    upstream = (dict(manifests),) if row.inputs == ALL else tuple(manifests[name] for name in row.inputs)
    own = (getattr(config, row.name),) if row.config is not None else ()
    sections = {name: config.model_dump(mode="json") if name == RECIPE else getattr(config, name)
                for name in row.sections}
    return (*upstream, *own, workdir, sections)


def forced_from(stage: str | None) -> set[str]:
    """`--force clean` rebuilds clean (its signals step too) and everything after it."""
    forced = set(stages_from(stage))
    return forced | {"clean_signals"} if "clean" in forced else forced
