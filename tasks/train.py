"""Pretraining and fine-tuning stages: write a TrainSpec, run `deepspeed model/train.py`, collect metrics."""

import json
import logging
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import model
from infra.launch import deepspeed_command, gpu_count, launch_env, read_hostfile, run_streaming
from model.gpt import MODEL_SIZES, GPTConfig
from model.spec import TrainConfig, TrainSpec
from tasks.stage import Manifest, fingerprint, run_stage

VERSION = "1"
METRICS_PREFIX = "[metrics] "


class LaunchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_procs: int = Field(2, ge=1, description="ranks per node: GPUs when there are some, else CPU processes over gloo")
    hostfile: Path | None = Field(None, description="DeepSpeed hostfile for several nodes (`<host> slots=<n>` lines); "
                                                    "its slots, not num_procs, then say how many ranks run where")

    @field_validator("hostfile")
    @classmethod
    def _hostfile_lists_hosts(cls, hostfile: Path | None) -> Path | None:
        if hostfile is not None:
            read_hostfile(hostfile)
        return hostfile


class PretrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str | None = Field("tiny", description=f"named model size, one of {sorted(MODEL_SIZES)}; overrides model.n_*")
    model: GPTConfig = GPTConfig()
    train: TrainConfig = TrainConfig()
    launch: LaunchConfig = LaunchConfig()

    @model_validator(mode="after")
    def _known_size(self):
        if self.size is not None and self.size not in MODEL_SIZES:
            raise ValueError(f"size {self.size!r} is not one of {sorted(MODEL_SIZES)}")
        return self

    def model_config_for(self, vocab_size: int, seq_len: int) -> GPTConfig:
        fields = self.model.to_dict() | (MODEL_SIZES[self.size] if self.size else {})
        return GPTConfig(**(fields | {"vocab_size": vocab_size, "seq_len": seq_len}))


# settings that change how a run is checkpointed or reported, not what it computes: kept out of the
# fingerprint, so changing them resumes the same run instead of starting a new one
RESUME_NEUTRAL = {"checkpoint_every", "keep_checkpoints", "peak_tflops"}


def training_fingerprint_config(cfg: BaseModel, exclude: frozenset[str] = frozenset()) -> dict:
    """The part of a training stage's config that its fingerprint hashes."""
    config = cfg.model_dump(mode="json", exclude={"launch", *exclude})
    config["train"] = {k: v for k, v in config["train"].items() if k not in RESUME_NEUTRAL}
    return config | {"num_procs": cfg.launch.num_procs}


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def launch_training(spec: TrainSpec, launch: LaunchConfig, folder: Path, description: str) -> None:
    """Run the spec under the deepspeed launcher, showing progress and forwarding rank output to the logs."""
    spec_path = folder / "train_spec.json"
    spec.save(spec_path)
    use_gpu = gpu_count() > 0
    cmd = deepspeed_command(Path(model.__file__).parent / "train.py", [str(spec_path)], launch.num_procs, launch.hostfile)
    logger = get_run_logger()
    logger.info("launching: %s", " ".join(cmd))
    progress_id = create_progress_artifact(0.0, description=f"{description}: steps done, of {spec.train.max_steps}")
    log_file = (folder / "train.log").open("a")  # appended: a resumed run keeps the killed one's log
    with Progress(TextColumn(description), BarColumn(), TextColumn("{task.completed}/{task.total} steps {task.fields[loss]}"),
                  TimeElapsedColumn(), transient=True) as progress:
        bar = progress.add_task(description, total=spec.train.max_steps, loss="")

        def on_line(line: str) -> None:
            log_file.write(line + "\n")
            is_problem = "Error" in line or "error" in line or "Traceback" in line
            logger.log(logging.WARNING if is_problem else logging.INFO, "%s", line)  # every rank's output
            if line.startswith(METRICS_PREFIX):
                record = json.loads(line[len(METRICS_PREFIX):])
                if record.get("split") == "train":
                    progress.update(bar, completed=record["step"], loss=f"loss {record['loss']:.3f}")
                    update_progress_artifact(progress_id, 100.0 * record["step"] / spec.train.max_steps)

        try:
            run_streaming(cmd, launch_env(launch.num_procs, use_gpu), on_line, cwd=folder)
        finally:
            log_file.close()


def loss_summary(metrics: list[dict]) -> dict:
    train = [m for m in metrics if m["split"] == "train"]
    val = [m for m in metrics if m["split"] == "val"]
    done = next((m for m in metrics if m["split"] == "done"), {})
    return {"first_train_loss": train[0]["loss"], "final_train_loss": train[-1]["loss"],
            "final_val_loss": val[-1]["loss"] if val else None, "train_seconds": done.get("elapsed_s"),
            "tokens_per_s": sum(m["tokens_per_s"] for m in train[1:]) / max(1, len(train) - 1)}


def pretrain(packed: Manifest, cfg: PretrainConfig, workdir: Path) -> Manifest:
    fp = fingerprint("pretrain", VERSION, training_fingerprint_config(cfg),
                     [packed.fingerprint])

    def build(folder: Path) -> dict:
        spec = TrainSpec(objective="lm", model=cfg.model_config_for(packed.stats["vocab_size"], packed.stats["seq_len"]),
                         train=cfg.train, train_data=str(packed.file("train")), val_data=str(packed.file("val")),
                         out_dir=str(folder))
        launch_training(spec, cfg.launch, folder, "pretrain")
        summary = loss_summary(read_metrics(folder / "metrics.jsonl"))
        return {"counts": {"steps": cfg.train.max_steps}, "stats": summary,
                "files": {"weights": "model.safetensors", "metrics": "metrics.jsonl", "spec": "train_spec.json"}}

    return run_stage(workdir, "pretrain", fp, build, resumable=True)


@task(name="pretrain", retries=0)
def pretrain_task(packed: Manifest, cfg: PretrainConfig, workdir: Path) -> Manifest:
    return pretrain(packed, cfg, workdir)
