from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import ConfigError, PipelineConfig, load_config

RECIPES = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe, repo_cwd):
    cfg = load_config(recipe)
    assert isinstance(cfg, PipelineConfig)


def test_there_are_default_and_tiny_recipes():
    assert {"default.yaml", "tiny.yaml"} <= {p.name for p in RECIPES}


def test_set_overrides_nested_values_with_yaml_types(repo_cwd):
    cfg = load_config(Path("configs/tiny.yaml"), ["pretrain.train.max_steps=7", "clean.fix_text=false"])
    assert cfg.pretrain.train.max_steps == 7
    assert cfg.clean.fix_text is False


@pytest.mark.parametrize(
    "override, expected",
    [
        ("pretrain.train.lrr=0.1", "pretrain.train.lrr: unknown key"),
        ("nonsense=1", "nonsense: unknown key"),
        ("pretrain.train.max_steps=many", "pretrain.train.max_steps: Input should be a valid integer"),
        ("pretrain.train.zero_stage=5", "pretrain.train.zero_stage: Input should be 0, 1, 2 or 3"),
        ("pretrain.size=huge", "pretrain: size 'huge' is not one of"),
        ("ingest.paths=[no/such/dir]", "ingest.paths[0]: no such file or folder: no/such/dir"),
        ("finetune.data=missing.tsv", "finetune.data: no such file: missing.tsv"),
        ("clean.min_chars=10000000", "clean: min_chars (10000000) must be below max_chars"),
    ],
)
def test_mistakes_name_the_field(repo_cwd, override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(Path("configs/tiny.yaml"), [override])
    assert expected in str(err.value)


def test_override_without_equals_is_explained(repo_cwd):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(Path("configs/tiny.yaml"), ["pretrain.train.max_steps"])


def test_cli_exits_2_with_a_one_line_error_and_runs_nothing(repo_cwd, tmp_path):
    result = CliRunner().invoke(app, ["run", "--config", "configs/tiny.yaml", "--workdir", str(tmp_path),
                                      "--set", "pretrain.train.warmup=3"])
    assert result.exit_code == 2
    assert "pretrain.train.warmup: unknown key" in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_cli_names_a_missing_config_file(repo_cwd):
    result = CliRunner().invoke(app, ["run", "--config", "configs/nope.yaml"])
    assert result.exit_code == 2
    assert "configs/nope.yaml" in result.output


def test_invalid_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
