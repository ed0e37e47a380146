"""The pipeline config: one pydantic model composed of each stage's own config, loaded from YAML.

User mistakes come back as ConfigError with one line per problem, each naming the field.
"""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.clean import CleanConfig
from tasks.dedup import DedupConfig
from tasks.evaluate import EvaluateConfig
from tasks.finetune import FinetuneConfig
from tasks.ingest import IngestConfig
from tasks.pack import PackConfig
from tasks.sft import SFTConfig
from tasks.tokenizer import TokenizerConfig
from tasks.train import PretrainConfig


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, description="join this Ray cluster instead of starting a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the local Ray (default: all)")


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "tokenmill"
    workdir: Path = Path("runs")
    ray: RayConfig = RayConfig()
    ingest: IngestConfig
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    pack: PackConfig = PackConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig
    sft: SFTConfig = SFTConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

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


def load_config(path: Path | None, overrides: list[str] = (), workdir: Path | None = None) -> PipelineConfig:
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
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        source = f"{path}: " if path else ""
        raise ConfigError("\n".join(source + line for line in describe(err).splitlines())) from None
