"""The DeepSpeed launcher command with a hostfile: what DeepSpeed's own parser reads from it, the hostfile checks that
stop a run before the launcher quietly ignores a bad path, `tokenmill run --hostfile/--ray-address`, and the real
launcher reading a hostfile."""

import json
from pathlib import Path

import numpy as np
import pytest
from deepspeed.launcher.runner import _parse_hostfile, fetch_hostfile, parse_args
from typer.testing import CliRunner

import model
from flows.cli import app, option_overrides
from flows.config import ConfigError, load_config
from infra.launch import (
    LaunchFailed,
    deepspeed_command,
    launch_env,
    read_hostfile,
    run_streaming,
)
from model.data import TokenRowWriter
from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec
from tests.conftest import REPO

EXAMPLE = Path("infra/deepspeed/hostfile.example")
TRAIN_SCRIPT = Path(model.__file__).parent / "trainer.py"


def write_counting_rows(path: Path, num_rows: int, seed: int) -> None:
    """Token rows that count upwards mod 50 (17 = seq_len + 1 tokens each)."""
    writer = TokenRowWriter(path, 17, 64)
    writer.write((np.random.default_rng(seed).integers(0, 50, size=(num_rows, 1)) + np.arange(17)) % 50)
    writer.close()


def launcher_args(cmd: list[str]):
    """What `python -m deepspeed.launcher.runner` makes of our command line."""
    assert cmd[1:3] == ["-m", "deepspeed.launcher.runner"]
    return parse_args(cmd[3:])


def test_command_with_a_hostfile_hands_deepspeed_the_absolute_path_and_no_rank_count(repo_cwd):
    cmd = deepspeed_command(TRAIN_SCRIPT, ["spec.json"], num_procs=2, hostfile=EXAMPLE)
    args = launcher_args(cmd)
    # the launcher runs in the stage's output folder: a relative path would name nothing there
    assert args.hostfile == str(REPO / EXAMPLE) and Path(args.hostfile).is_absolute()
    assert "--num_gpus" not in cmd and args.num_gpus == -1  # the hostfile's slots place the ranks
    assert (args.user_script, args.user_args) == (str(TRAIN_SCRIPT), ["spec.json"])
    assert 0 < args.master_port < 65536
    assert fetch_hostfile(args.hostfile) == read_hostfile(EXAMPLE) == {"worker-1": 8, "worker-2": 8}


def test_command_without_a_hostfile_runs_num_procs_ranks_here():
    args = launcher_args(deepspeed_command(TRAIN_SCRIPT, ["spec.json"], num_procs=3))
    assert args.num_gpus == 3 and args.hostfile == "/job/hostfile"  # DeepSpeed's default, absent on our machines


@pytest.mark.parametrize("text, problem", [
    ("worker-1 slots=8\nworker-2 8\n", "hostfile:2: expected `<host> slots=<n>`, got 'worker-2 8'"),
    ("worker-1 slots=8\nworker-1 slots=4\n", "hostfile:2: host worker-1 is listed twice"),
    ("# only a comment\n\n", "lists no host"),
])
def test_a_bad_hostfile_is_refused_like_deepspeed_refuses_it(tmp_path, text, problem):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(text)
    with pytest.raises(ValueError, match="Hostfile"):
        _parse_hostfile(text.splitlines())
    with pytest.raises(ValueError) as refused:
        read_hostfile(hostfile)
    assert problem in str(refused.value)


def test_a_missing_hostfile_stops_the_run_where_deepspeed_would_train_on_one_machine(repo_cwd, tmp_path):
    missing = tmp_path / "no-such-hostfile"
    assert fetch_hostfile(str(missing)) is None  # the launcher only warns, then trains locally
    with pytest.raises(ConfigError, match=f"pretrain.launch.hostfile: no such file: {missing}"):
        load_config(Path("configs/tiny.yaml"), option_overrides(None, missing))


def test_run_options_set_the_recipe_values(repo_cwd):
    with pytest.raises(ConfigError, match=r"global_batch_size=16 is not a multiple of train.micro_batch_size=8 x 16 ranks"):
        load_config(Path("configs/tiny.yaml"), option_overrides(None, EXAMPLE))  # the hostfile's 16 slots cannot share 16
    # 16 ranks x 8 = 128 samples a step: the recipe's batch is set for this cluster
    cfg = load_config(Path("configs/tiny.yaml"),
                      [*option_overrides("10.0.0.7:6379", EXAMPLE), "pretrain.train.global_batch_size=128"])
    assert cfg.ray.address == "10.0.0.7:6379"  # a string, though YAML could read some host:port forms as numbers
    assert cfg.pretrain.launch.hostfile == EXAMPLE
    assert cfg.finetune.launch.hostfile is None  # --hostfile is for pretraining only
    assert load_config(Path("configs/tiny.yaml"), option_overrides(None, None)).ray.address is None


def test_run_with_a_missing_hostfile_exits_2_naming_the_field(repo_cwd, tmp_path):
    result = CliRunner().invoke(app, ["run", "-c", "configs/tiny.yaml", "--workdir", str(tmp_path / "w"),
                                      "--hostfile", "infra/deepspeed/hostfile", "--ray-address", "127.0.0.1:6379"])
    assert result.exit_code == 2, result.output
    assert "pretrain.launch.hostfile: no such file: infra/deepspeed/hostfile" in result.output
    assert not (tmp_path / "w").exists()  # nothing ran


def test_the_launcher_reads_the_hostfile_from_the_stage_folder(tmp_path, monkeypatch):
    """A real launch from a stage folder with a relative --hostfile: DeepSpeed finds the file and places 2 ranks by
    its slots (num_procs=1). It checks ssh to every host, even a lone localhost; without passwordless ssh (as on our
    machines) it stops there, and its message shows it read our file, the host in it included."""
    write_counting_rows(tmp_path / "train.arrow", 64, seed=0)
    write_counting_rows(tmp_path / "val.arrow", 16, seed=1)
    spec = TrainSpec(objective="lm", model=GPTConfig(vocab_size=64, seq_len=16, n_layer=1, n_head=2, d_model=32),
                     train=TrainConfig(max_steps=4, micro_batch_size=4, lr=3e-3, warmup_steps=1, log_every=2,
                                       eval_every=4, eval_batches=1),
                     train_data=str(tmp_path / "train.arrow"), val_data=str(tmp_path / "val.arrow"),
                     out_dir=str(tmp_path / "out"))
    (tmp_path / "stage").mkdir()
    spec.save(tmp_path / "stage" / "spec.json")
    (tmp_path / "hostfile").write_text("localhost slots=2\n")
    monkeypatch.chdir(tmp_path)
    cmd = deepspeed_command(TRAIN_SCRIPT, ["spec.json"], num_procs=1, hostfile=Path("hostfile"))
    try:
        run_streaming(cmd, launch_env(2, use_gpu=False), lambda line: None, cwd=tmp_path / "stage")
    except LaunchFailed as err:
        assert f"Using hostfile at {tmp_path / 'hostfile'} but host=localhost was not reachable via ssh" in str(err)
        return
    done = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    assert done["split"] == "done" and done["world_size"] == 2


def test_the_training_fingerprint_hashes_the_batch_not_the_rank_count(tmp_path):
    from tasks.train.launch import resume_note, training_fingerprint_config
    from tasks.train.pretrain import PretrainConfig

    batch = {"micro_batch_size": 8, "global_batch_size": 16}
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=1\nnode-b slots=1\n")
    fingerprints = [training_fingerprint_config(PretrainConfig(train=batch, launch=launch))
                    for launch in ({"num_procs": 1}, {"num_procs": 2}, {"hostfile": hostfile})]
    assert fingerprints[0] == fingerprints[1] == fingerprints[2]  # a run resumes on 1 rank, 2, or two nodes
    assert "num_procs" not in fingerprints[0] and fingerprints[0]["train"]["global_batch_size"] == 16
    other = training_fingerprint_config(PretrainConfig(train={**batch, "global_batch_size": 32}))
    assert other != fingerprints[0]  # the batch is what the run computes with
    # unset, the global batch is one micro batch per rank: then the ranks do set it
    assert training_fingerprint_config(PretrainConfig(train={"micro_batch_size": 8}, launch={"num_procs": 4})
                                       )["train"]["global_batch_size"] == 32
    record = {"step": 10, "world_size": 1, "from_world_size": 2, "global_batch_size": 16}
    assert resume_note(record) == "resumed at step 10 (2 -> 1 ranks, global batch 16 kept)"
