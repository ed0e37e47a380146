"""The stage table is the one list of stages: a row added here (in the test only) shows up everywhere."""

import pytest
from pydantic import BaseModel

from flows import config as recipe
from flows.cli import check_stages
from flows.config import ConfigError
from infra.stage import Manifest
from tasks import stages
from tasks.eval.report import stage_table
from tasks.stages import Stage


class ToyConfig(BaseModel):
    repeats: int = 3


def toy(cfg: ToyConfig, workdir) -> Manifest:
    raise AssertionError("never run here")


@pytest.fixture
def toy_stage(monkeypatch):
    row = Stage("toy", "evaluate", f"{__name__}:toy", f"{__name__}:ToyConfig")
    monkeypatch.setattr(stages, "STAGES", [*stages.STAGES, row])
    return row


def test_until_validation_knows_a_new_stage(toy_stage):
    check_stages(("--until", "toy"), ("--force", "toy"))
    with pytest.raises(ConfigError, match="'toyy': not a stage; one of ingest, .*, evaluate, toy"):
        check_stages(("--until", "toyy"),)


def test_the_report_stage_table_lists_a_new_stage_in_table_order(toy_stage):
    done = {"toy": Manifest(stage="toy", fingerprint="f" * 16, path=".", counts={"repeats": 3})}
    rows = stage_table(done)
    assert [r["stage"] for r in rows] == stages.stage_names()
    assert rows[-1] == {"stage": "toy", "status": "ran", "seconds": 0.0, "fingerprint": "f" * 16, "counts": "repeats=3"}
    assert {r["status"] for r in rows[:-1]} == {"not run"}


def test_the_recipe_gains_a_section_for_a_new_stage(toy_stage, tmp_path):
    cls, default = recipe.stage_sections()["toy"]  # the recipe model is built from these sections
    assert cls.__name__ == "ToyConfig" and default.repeats == 3
    assert stages.stages_from("toy") == ["toy"] and stages.stages_in("evaluate")[-1] is toy_stage


def test_every_row_loads_its_function_and_config():
    for row in stages.STAGES:
        assert callable(row.load()), row.name
        assert row.config is None or issubclass(row.config_class(), BaseModel), row.name
        assert row.phase in stages.PHASES and set(row.inputs) <= {*stages.stage_names(), "*"}
