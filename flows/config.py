"""The pipeline config: one pydantic model composed of each stage's own config, loaded from YAML.

User mistakes come back as ConfigError with one line per problem, each naming the field.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

import fsspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from infra import storage
from tasks import stages


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, min_length=1, description="join this running Ray cluster (`<head>:6379`, `auto`) "
                                "instead of starting a local one; `tokenmill run --ray-address`")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the local Ray (default: all); unused with an address")


class StorageConfig(BaseModel):
    """How to reach the workdir's object store when the environment does not say (AWS_ENDPOINT_URL, AWS_* keys)."""

    model_config = ConfigDict(extra="forbid")
    options: dict[str, SecretStr] = Field(default_factory=dict, description=(
        "fsspec storage options, e.g. endpoint_url, key, secret for s3://; kept secret: never logged, shown as ****"))

    def resolved(self) -> dict[str, str]:
        return {name: value.get_secret_value() for name, value in self.options.items()}


class ScheduleConfig(BaseModel):
    """When `tokenmill serve` starts one of its deployments on its own."""

    model_config = ConfigDict(extra="forbid")
    deployment: Literal["full", "data", "train"] = Field(
        description="full: the whole pipeline; data: ingest to pack; train: pretrain to evaluate on the cached data")
    cron: str = Field(description="when, as minute hour day-of-month month day-of-week: '0 3 * * *' = 03:00 daily")
    timezone: str | None = Field(None, description="IANA zone the cron reads in, e.g. Europe/Berlin (default UTC)")
    overrides: list[str] = Field(default_factory=list, description="recipe values for these runs only, as --set key.path=value")

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, cron: str) -> str:
        from prefect.client.schemas.schedules import (
            CronSchedule,  # Prefect loads slowly: only when a recipe has schedules
        )

        try:
            CronSchedule(cron=cron)
        except ValidationError:
            raise ValueError(f"{cron!r} is not a cron expression (minute hour day-of-month month day-of-week, "
                             f"e.g. '0 3 * * *')") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone_known(cls, timezone: str | None) -> str | None:
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron="* * * * *", timezone=timezone)
        except ValidationError:
            raise ValueError(f"{timezone!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
        return timezone

    @field_validator("overrides")
    @classmethod
    def _overrides_are_assignments(cls, overrides: list[str]) -> list[str]:
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"{item!r}: expected key=value, e.g. pretrain.train.max_steps=50")
        return overrides


class RecipeBase(BaseModel):
    """What a recipe holds beside the stage sections; `PipelineConfig` adds one section per stage of the table."""

    model_config = ConfigDict(extra="forbid")
    name: str = "tokenmill"
    workdir: str = Field("runs", min_length=1, description="where stage outputs go: a local folder or a storage URL "
                         "(s3://bucket/run, gs://bucket/run); relative paths are relative to where you run from")
    storage: StorageConfig = StorageConfig()
    ray: RayConfig = RayConfig()
    schedules: list[ScheduleConfig] = Field(default_factory=list, description="cron schedules for `tokenmill serve`")

    @model_validator(mode="after")
    def _inputs_exist(self):
        for i, path in enumerate(self.ingest.paths):
            if not path.exists():
                raise ValueError(f"ingest.paths[{i}]: no such file or folder: {path}")
        if self.tokenizer.path is not None and not self.tokenizer.path.is_file():
            raise ValueError(f"tokenizer.path: no such file: {self.tokenizer.path}")
        if not self.finetune.data.exists():
            raise ValueError(f"finetune.data: no such file: {self.finetune.data}")
        if self.sft.data is not None and not self.sft.data.exists():
            raise ValueError(f"sft.data: no such file: {self.sft.data}")
        for i, path in enumerate(self.evaluate.extra_texts):
            if not path.exists():
                raise ValueError(f"evaluate.extra_texts[{i}]: no such file or folder: {path}")
        return self

    @model_validator(mode="after")
    def _workdir_writable(self):
        if storage.is_remote(self.workdir):
            protocol = self.workdir.split("://", 1)[0]
            try:
                fsspec.get_filesystem_class(protocol)
            except (ImportError, ValueError) as err:  # "Install s3fs to access S3", "Protocol not known"
                raise ValueError(f"workdir: {self.workdir}: {err}") from None
        elif problem := unwritable(Path(self.workdir)):
            raise ValueError(f"workdir: {problem}")
        return self


def stage_sections() -> dict[str, tuple]:
    """A recipe section per stage with settings, named as the stage; required when its config has required fields."""
    sections = {}
    for row in stages.STAGES:
        if (cls := row.config_class()) is not None:
            required = any(field.is_required() for field in cls.model_fields.values())
            sections[row.name] = (cls, ...) if required else (cls, cls())
    return sections


@cache
def pipeline_config_class() -> type[RecipeBase]:
    """The recipe model: built on first use, since loading the stages' config classes imports Ray and torch
    (`tokenmill --help` must not wait for them)."""
    return create_model("PipelineConfig", __base__=RecipeBase, **stage_sections())


def __getattr__(name: str):
    if name == "PipelineConfig":  # `from flows.config import PipelineConfig` builds it
        return pipeline_config_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unwritable(folder: Path) -> str | None:
    """Why stage outputs cannot go under `folder`, judged without writing anything; None when they can.

    Every output path is <workdir>/<stage>/<fingerprint>/, made of names the code chooses: the workdir is
    the one place a config decides where outputs go. A file in the way or a folder without write permission
    (or on a read-only file system) is caught here, before any stage runs.
    """
    existing = Path(folder).absolute()
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as err:  # a parent we may not even look into
        return f"cannot reach {folder}: {err.strerror}"
    if not existing.is_dir():
        return f"cannot create {folder}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write to {existing}: permission denied or a read-only file system"
    return None


class ConfigError(ValueError):
    """A config the user must fix; str() is the message to show, one line per problem."""


def describe(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        where = ".".join(str(part) for part in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" or e["type"] == "unexpected_keyword_argument":
            message = "unknown key"
        lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. pretrain.train.max_steps=50")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw else ""


def apply_override(raw: dict, keys: list[str], value: Any) -> None:
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def load_config(path: Path | None, overrides: list[str] = (), workdir: str | Path | None = None) -> RecipeBase:
    """Read a YAML recipe, apply --set overrides, validate. Raises ConfigError on any mistake."""
    raw: dict = {}
    if path is not None:
        if not path.exists():
            raise ConfigError(f"--config: no such file: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
    for item in overrides:
        apply_override(raw, *parse_override(item))
    if workdir is not None:
        raw["workdir"] = str(workdir)
    try:
        return pipeline_config_class().model_validate(raw)
    except ValidationError as err:
        source = f"{path}: " if path else ""
        raise ConfigError("\n".join(source + line for line in describe(err).splitlines())) from None
