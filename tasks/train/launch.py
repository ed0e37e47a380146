"""The one path every training stage takes: write the spec, launch DeepSpeed, read the metrics, name the files.

Pretraining, fine-tuning and SFT differ only in the spec they write (objective, data, initial weights);
`train_in` runs that spec under the deepspeed launcher, forwards every rank's output to the logs and
the step count to the progress callback, and returns the manifest fields of a training stage.
"""

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import model
from infra import lease, storage
from infra.files import read_jsonl
from infra.launch import (
    deepspeed_command,
    gpu_count,
    has_gpu,
    launch_env,
    read_hostfile,
    run_streaming,
)
from infra.progress import report_progress
from infra.stage import Manifest, is_planning, run_stage
from model.spec import TrainConfig, TrainSpec

METRICS_PREFIX = "[metrics] "
TRAIN_SCRIPT = Path(model.__file__).parent / "trainer.py"
TRAINING_FILES = {"weights": "model.safetensors", "metrics": "metrics.jsonl", "spec": "train_spec.json"}
# settings that change how a run is checkpointed or reported, not what it computes: kept out of the
# fingerprint, so changing them resumes the same run instead of starting a new one
RESUME_NEUTRAL = {"checkpoint_every", "keep_checkpoints", "peak_tflops"}
log = logging.getLogger(__name__)


class LaunchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_procs: int = Field(2, ge=1, description="ranks per node: GPUs when there are some, else CPU processes over gloo")
    hostfile: Path | None = Field(None, description="DeepSpeed hostfile for several nodes (`<host> slots=<n>` lines); "
                                                    "its slots, not num_procs, then say how many ranks run where")
    checkpoint_dir: Path | None = Field(None, description=(
        "POSIX folder for checkpoints and the run's working files (<dir>/<stage>/<fingerprint>); shared by the nodes "
        "for a multi-node resume. Default: node-local, <workdir>/<stage>/.<fingerprint>.partial for a local workdir, "
        "else under $TOKENMILL_CACHE (~/.cache/tokenmill/train)"))
    lease_wait_s: float = Field(60.0, ge=0, description=(
        "how long a launch waits for the ranks of a killed earlier run of the same stage to exit before it stops, "
        "naming them: two runs never write into one training folder"))

    @field_validator("hostfile")
    @classmethod
    def _hostfile_lists_hosts(cls, hostfile: Path | None) -> Path | None:
        if hostfile is not None:
            read_hostfile(hostfile)
        return hostfile

    def num_ranks(self) -> int:
        """The world size: a hostfile's slots, else num_procs."""
        return sum(read_hostfile(self.hostfile).values()) if self.hostfile else self.num_procs


def with_global_batch(train: TrainConfig, launch: LaunchConfig) -> TrainConfig:
    """`train` with its global batch resolved for this launch (unset: one micro batch per rank), or ValueError when
    the ranks cannot share it: for a stage config's validator, so the mistake stops the run before it starts."""
    resolved = dataclasses.replace(train, global_batch_size=train.resolved_global_batch(launch.num_ranks()))
    resolved.accumulation_steps(launch.num_ranks())
    return resolved


def ranks_share_the_global_batch(cfg: BaseModel) -> BaseModel:
    """A training stage config's validator (`model_validator(mode="after")`): its launch's ranks can share its batch."""
    with_global_batch(cfg.train, cfg.launch)
    return cfg


def lora_fits_the_launch(cfg: BaseModel) -> BaseModel:
    """A validator for stages with a `lora` setting: adapters wrap whole projections, which ZeRO-3 partitions."""
    if cfg.lora is not None:
        cfg.lora.validate()
        if cfg.train.zero_stage > 2:
            raise ValueError(f"lora trains adapters on ZeRO stages 0-2; train.zero_stage is {cfg.train.zero_stage}")
    return cfg


def training_fingerprint_config(cfg: BaseModel, exclude: frozenset[str] = frozenset()) -> dict:
    """The part of a training stage's config that its fingerprint hashes."""
    config = cfg.model_dump(mode="json", exclude={"launch", *exclude})
    config["train"] = {k: v for k, v in config["train"].items() if k not in RESUME_NEUTRAL}
    # what the run will resolve, not what was asked: `precision: auto` is bf16 on GPUs and fp32 on CPU, and a CPU
    # result must not stand in for a GPU one. The global and micro batch set what is computed; the rank count does
    # not (a run resumes on another one), except through an unset global batch, which is one micro batch per rank
    device = "gpu" if has_gpu() else "cpu"
    if config["train"].get("precision") == "auto":
        config["train"]["precision"] = "bf16" if device == "gpu" else "fp32"
    config["train"]["global_batch_size"] = cfg.train.resolved_global_batch(cfg.launch.num_ranks())
    return config | {"device": device}


def loss_summary(metrics: list[dict]) -> dict:
    train = [m for m in metrics if m["split"] == "train"]
    val = [m for m in metrics if m["split"] == "val"]
    done = next((m for m in metrics if m["split"] == "done"), {})
    resumed = [{k: m[k] for k in ("step", "from_world_size", "world_size")} for m in metrics if m["split"] == "resume"]
    return {"resumed": resumed[-1] if resumed else None,"first_train_loss": train[0]["loss"], "final_train_loss": train[-1]["loss"],
            "final_val_loss": val[-1]["loss"] if val else None, "train_seconds": done.get("elapsed_s"),
            "tokens_per_s": sum(m["tokens_per_s"] for m in train[1:]) / max(1, len(train) - 1)}


def training_folder(workdir: str, stage: str, fp: str, launch: LaunchConfig) -> Path:
    """Where a training run keeps its checkpoints and working files: on a POSIX disk, never the object store."""
    if launch.checkpoint_dir is not None:
        return launch.checkpoint_dir.absolute() / stage / fp
    if not storage.is_remote(workdir):
        return Path(storage.normalize(workdir)) / stage / f".{fp}.partial"
    return storage.cache_root() / "train" / stage / fp


EXPORT_FOLDER = "hf"  # a training stage's Hugging Face export, published beside its weights


def run_training(workdir: str, stage: str, fp: str, launch: LaunchConfig,
                 prepare: Callable[[Path], tuple[TrainSpec, dict]],
                 finish: Callable[[Path], dict] | None = None) -> Manifest:
    """The training stage `stage`: `prepare(work)` writes what the run reads into the POSIX folder `work` and
    returns (spec, manifest fields); the run checkpoints there, so a re-run after a kill resumes; its top-level
    files (weights, metrics, log, spec, prepared data) are published to the workdir; the checkpoints are not.
    `finish(work)`, after training, may write more (an `hf/` export) and returns its manifest `files`."""
    work = training_folder(workdir, stage, fp, launch)

    def build(folder: Path) -> dict:
        with lease.holding(work, launch.lease_wait_s):  # before prepare writes: a killed run's ranks may still read
            spec, fields = prepare(work)
            launch_training(spec, launch, work, stage)
        extra_files = finish(work) if finish else {}
        summary = loss_summary(read_jsonl(work / TRAINING_FILES["metrics"], missing_ok=True))
        published = [p for p in work.iterdir() if p.is_file()] + sorted((work / EXPORT_FOLDER).glob("*"))
        for path in sorted(published):
            storage.link(str(path), str(folder / path.relative_to(work)))
        return {"counts": fields.get("counts", {}), "stats": summary | fields.get("stats", {}),
                "files": TRAINING_FILES | fields.get("files", {}) | extra_files}

    manifest = run_stage(workdir, stage, fp, build)
    if not manifest.cached and not is_planning():  # a dry run built nothing: a killed run's checkpoints stay
        shutil.rmtree(work, ignore_errors=True)  # published: the checkpoints have served their purpose
    return manifest


def launch_training(spec: TrainSpec, launch: LaunchConfig, folder: Path, description: str) -> None:
    """Run the spec under the deepspeed launcher, showing progress and forwarding rank output to the logs."""
    spec_path = folder / TRAINING_FILES["spec"]
    spec = dataclasses.replace(spec, train=with_global_batch(spec.train, launch))  # saved with the run
    spec.save(spec_path)
    cmd = deepspeed_command(TRAIN_SCRIPT, [str(spec_path)], launch.num_procs, launch.hostfile)
    log.info("launching: %s", " ".join(cmd))
    total = spec.train.max_steps
    report_progress(description, 0.0, f"{description}: steps done, of {total}")
    log_file = (folder / "train.log").open("a")  # appended: a resumed run keeps the killed one's log
    steps_done = f"steps done, of {total}"
    with Progress(TextColumn(description), BarColumn(), TextColumn("{task.completed}/{task.total} steps {task.fields[loss]}"),
                  TimeElapsedColumn(), transient=True) as progress:
        bar = progress.add_task(description, total=total, loss="")

        def on_line(line: str) -> None:
            nonlocal steps_done
            log_file.write(line + "\n")
            is_problem = "Error" in line or "error" in line or "Traceback" in line
            log.log(logging.WARNING if is_problem else logging.INFO, "%s", line)  # every rank's output
            if line.startswith(METRICS_PREFIX):
                record = json.loads(line[len(METRICS_PREFIX):])
                if record.get("split") == "resume":
                    steps_done = f"{resume_note(record)}; steps done, of {total}"
                if record.get("split") in ("train", "resume"):
                    if "loss" in record:
                        progress.update(bar, completed=record["step"], loss=f"loss {record['loss']:.3f}")
                    report_progress(description, record["step"] / total, f"{description}: {steps_done}")

        try:
            run_streaming(cmd, launch_env(launch.num_procs, gpu_count() > 0, lease_folder=folder), on_line, cwd=folder)
        finally:
            log_file.close()


def resume_note(record: dict) -> str:
    """What the progress artifact says of a resumed run, a change of world size included."""
    before, now = record["from_world_size"], record["world_size"]
    ranks = f"{before} -> {now} ranks" if before != now else f"{now} ranks"
    return f"resumed at step {record['step']} ({ranks}, global batch {record['global_batch_size']} kept)"
