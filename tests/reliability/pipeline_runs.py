"""The real `tokenmill` CLI in a subprocess of its own process group: start it, stop it at a stage, read what it left.

Runs use the tiny recipe with absolute data paths, from a scratch folder as working directory, so that a Prefect
server another session left running under ./runs is never picked up; they talk to the server the tests started.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[2]
TOKENMILL = Path(sys.executable).with_name("tokenmill")
DATA_STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack"]
DOC_STAGES = ["ingest", "clean", "dedup"]  # stages that keep or reject documents
MANIFEST = "manifest.json"


def write_recipe(folder: Path) -> Path:
    """configs/tiny.yaml with its data paths made absolute, so that it runs from any working directory."""
    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    raw["ingest"]["paths"] = [str(REPO / p) for p in raw["ingest"]["paths"]]
    for section in ("finetune", "sft"):
        raw[section]["data"] = str(REPO / raw[section]["data"])
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def start_run(recipe: Path, workdir: Path, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """`tokenmill run --until pack` as the leader of a new process group (so that one signal reaches all of it)."""
    cmd = [str(TOKENMILL), "run", "-c", str(recipe), "--until", "pack", "--workdir", str(workdir), *extra]
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=recipe.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> tuple[int, str]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(f"the run did not finish in {timeout:.0f} s:\n{log.read_text()[-3000:]}") from None
    return proc.returncode, log.read_text()


def run_to_end(recipe: Path, workdir: Path, env: dict[str, str], log: Path, *extra: str) -> str:
    code, output = finish(start_run(recipe, workdir, env, log, *extra), log)
    assert code == 0, output[-3000:]
    return output


def wait_for(workdir: Path, pattern: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Poll every 2 ms until something under `workdir` matches `pattern`: stages are short, a kill must land in one."""
    deadline = time.monotonic() + timeout
    while next(workdir.glob(pattern), None) is None:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {pattern} appeared:\n"
                                 f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            raise AssertionError(f"{workdir / pattern} did not appear within {timeout:.0f} s")
        time.sleep(0.002)


def kill_tree(proc: subprocess.Popen) -> None:
    """kill -9 the run's process group and every process it started.

    The group is frozen first (SIGSTOP), so the state on disk is the state at that instant and no new process
    appears while the tree is listed; Ray's workers run in sessions of their own, so they are killed by pid.
    """
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except (ProcessLookupError, psutil.NoSuchProcess):
        descendants = []
    for pid in [proc.pid] + [p.pid for p in descendants]:
        try:
            os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(descendants, timeout=30)


def stage_status(output: str) -> dict[str, str]:
    """stage -> 'ran' | 'cached', from the summary table the CLI prints."""
    status = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 2 and cells[0] in DATA_STAGES and cells[1] in ("ran", "cached"):
            status[cells[0]] = cells[1]
    return status


def finished_outputs(workdir: Path, stage: str) -> list[Path]:
    """The stage's visible output folders (staging folders are hidden: `.<fingerprint>.partial-...`)."""
    folder = workdir / stage
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


def the_output(workdir: Path, stage: str) -> Path:
    (output,) = finished_outputs(workdir, stage)
    return output


def content_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file of a stage output but its manifest (which records timings)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != MANIFEST}


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text())


def ids(folder: Path, prefix: str) -> list[str]:
    paths = sorted(folder.glob(f"{prefix}-*.parquet"))
    return [i for p in paths for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]


def assert_documents_conserved(workdir: Path) -> None:
    """Each document stage: in = kept + rejected, no id lost or doubled, and it reads exactly what the last one kept."""
    previous_kept = None
    for stage in DOC_STAGES:
        folder = the_output(workdir, stage)
        counts = manifest(folder)["counts"]
        kept, rejected = ids(folder, "shard"), ids(folder, "rejected")
        assert counts["docs_in"] == counts["kept"] + counts["rejected"], stage
        assert (len(kept), len(rejected)) == (counts["kept"], counts["rejected"]), stage
        assert len(set(kept) | set(rejected)) == len(kept) + len(rejected), f"{stage}: an id twice"
        if previous_kept is not None:
            assert set(kept) | set(rejected) == set(previous_kept), f"{stage}: lost or invented documents"
        previous_kept = kept
