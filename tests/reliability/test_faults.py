"""Faults with real processes: kill -9 of the data preparation in each stage, a Ray worker killed mid-shard,
an unwritable work directory, the Prefect server restarted during a run."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.cloudpickle

from infra.ray_map import map_shards
from infra.stage import run_stage
from tasks.data.clean import CleanConfig, measure_shard
from tasks.data.shards import shard_paths
from tests.reliability.pipeline_runs import (
    DATA_STAGES,
    MANIFEST,
    REPO,
    assert_documents_conserved,
    content_hashes,
    finish,
    finished_outputs,
    ids,
    kill_tree,
    run_to_end,
    stage_status,
    start_run,
    the_output,
    wait_for,
)

# Where to watch for a stage being under way: its Ray units being written (ingest, pack), or its folder appearing
# (clean's first step is clean_signals). Clean and dedup take a fraction of a second on the tiny corpus.
KILL_POINTS = {"ingest": ("ingest/.units/*", ["ingest"]),
               "clean": ("clean_signals", ["clean_signals", "clean"]),
               "dedup": ("dedup", ["dedup"]),
               "pack": ("pack/.units/*", ["pack"])}


def assert_every_visible_output_is_finished(workdir: Path) -> None:
    for stage in DATA_STAGES + ["clean_signals"]:
        for folder in finished_outputs(workdir, stage):
            assert (folder / MANIFEST).exists(), f"{folder}: an output without its done marker"


def assert_same_outputs(workdir: Path, reference: Path) -> None:
    for stage in DATA_STAGES:
        ours, theirs = the_output(workdir, stage), the_output(reference, stage)
        assert ours.name == theirs.name, f"{stage}: another fingerprint"
        assert content_hashes(ours) == content_hashes(theirs), f"{stage}: other bytes"
    assert ids(the_output(workdir, "dedup"), "shard") == ids(the_output(reference, "dedup"), "shard")


@pytest.mark.parametrize("stage", list(KILL_POINTS))
def test_a_run_killed_in_a_stage_resumes_to_the_same_bytes(stage, baseline, tmp_path):
    pattern, unfinished = KILL_POINTS[stage]
    work = tmp_path / "work"
    proc = start_run(baseline.recipe, work, baseline.env, tmp_path / "killed.log")
    wait_for(work, pattern, proc, tmp_path / "killed.log")
    kill_tree(proc)

    # killed while the stage ran: it has no finished output, and nothing visible lacks its done marker
    assert all(finished_outputs(work, name) == [] for name in unfinished), f"{stage} finished before the kill"
    assert_every_visible_output_is_finished(work)

    output = run_to_end(baseline.recipe, work, baseline.env, tmp_path / "rerun.log")
    killed_at = DATA_STAGES.index(stage)
    assert stage_status(output) == {name: "cached" if i < killed_at else "ran" for i, name in enumerate(DATA_STAGES)}
    assert_same_outputs(work, baseline.workdir)
    assert_documents_conserved(work)


def test_the_uninterrupted_run_conserves_documents(baseline):
    assert stage_status(baseline.output) == dict.fromkeys(DATA_STAGES, "ran")
    assert_documents_conserved(baseline.workdir)
    input_files = sorted(p.name for p in (REPO / "data" / "tiny").iterdir())
    ingest = the_output(baseline.workdir, "ingest")
    ingested = ids(ingest, "shard") + ids(ingest, "rejected")
    assert sorted(i.split("/")[-1] for i in ingested) == input_files  # one document per input file, each once


# ---- a Ray worker killed mid-shard --------------------------------------------------------------------------


def measure_or_die(item: tuple[int, str], out_dir: str, cfg: CleanConfig, marker: str) -> dict:
    """clean's signals step, but the worker running shard 1 kill -9s itself the first time, halfway through a write."""
    index, _ = item
    if index == 1 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        (Path(out_dir) / ".shard-00001.parquet.dying.partial").write_bytes(b"PAR1 half a shard")
        os.kill(os.getpid(), signal.SIGKILL)
    return measure_shard(item, out_dir, cfg)


def test_a_ray_worker_killed_mid_shard_is_retried_to_the_same_bytes(ray_local, tmp_path):
    chapters = sorted((REPO / "data" / "tiny").iterdir())[:6]
    shards = []
    for i in range(3):
        rows = [{"id": p.name, "text": p.read_text(), "source": "tiny"} for p in chapters[2 * i: 2 * i + 2]]
        shards.append(tmp_path / f"in-{i}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), shards[-1])
    items = [(i, str(p)) for i, p in enumerate(shards)]
    cfg = CleanConfig()
    expected_dir, ray_dir, marker = tmp_path / "expected", tmp_path / "on-ray", tmp_path / "killed-pid"
    expected_dir.mkdir()
    ray_dir.mkdir()
    expected = [measure_shard(item, str(expected_dir), cfg) for item in items]  # in this process, no fault

    this_module = sys.modules[__name__]  # pytest imports it under a name Ray's workers cannot import: ship it whole
    ray.cloudpickle.register_pickle_by_value(this_module)
    try:
        stats = map_shards(measure_or_die, items, "measure", out_dir=str(ray_dir), cfg=cfg, marker=str(marker))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(this_module)

    killed_pid = int(marker.read_text())
    assert not _alive(killed_pid), "the worker was not killed"
    assert stats == expected
    visible = {name: digest for name, digest in content_hashes(ray_dir).items() if not name.startswith(".")}
    assert visible == content_hashes(expected_dir)
    assert [Path(p).name for p in shard_paths(ray_dir)] == ["shard-00000.parquet", "shard-00001.parquet",
                                                      "shard-00002.parquet"]  # what the next stage reads


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- an unwritable work directory ---------------------------------------------------------------------------


def unwritable_workdir(kind: str, tmp_path: Path) -> Path:
    if kind == "file_in_the_way":
        (tmp_path / "not-a-folder").write_text("a file where the workdir's parent should be")
        return tmp_path / "not-a-folder" / "work"
    if kind == "read_only_folder":
        if os.geteuid() == 0:
            pytest.skip("root writes through chmod 0500: the file_in_the_way and kernel_refuses cases stand in")
        (tmp_path / "locked").mkdir(mode=0o500)
        return tmp_path / "locked" / "work"
    # /sys looks writable to root (access() says yes) but the kernel refuses mkdir: only the write itself finds out
    path = Path(f"/sys/tokenmill-reliability-{uuid.uuid4().hex[:8]}")
    try:
        path.mkdir()
    except OSError:
        return path
    path.rmdir()
    pytest.skip("this machine lets us create folders in /sys")


@pytest.mark.parametrize("kind", ["file_in_the_way", "read_only_folder", "kernel_refuses"])
def test_an_unwritable_workdir_fails_with_the_path_named(kind, baseline, tmp_path):
    work = unwritable_workdir(kind, tmp_path)
    code, output = finish(start_run(baseline.recipe, work, baseline.env, tmp_path / "run.log"), tmp_path / "run.log")
    assert code != 0
    assert str(work) in output
    last_line = [line for line in output.splitlines() if line.strip()][-1]
    assert "Traceback" not in output or str(work) in last_line  # a traceback never stands alone
    if kind != "kernel_refuses":  # caught while checking the config, before anything ran
        assert code == 2 and "Traceback" not in output and "workdir:" in output
    assert not any(work.parent.glob(f"{work.name}/*/*/{MANIFEST}"))  # no output marked done


@pytest.fixture
def full_disk(tmp_path):
    """A 384 KiB tmpfs: room for the tiny run's first files, not for its data stages."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_fails_the_run_naming_the_path_and_leaves_nothing_trusted(full_disk, baseline, tmp_path):
    work = full_disk / "work"
    code, output = finish(start_run(baseline.recipe, work, baseline.env, tmp_path / "run.log"), tmp_path / "run.log")
    assert code != 0
    assert "No space left on device" in output and str(work) in output
    last_line = [line for line in output.splitlines() if line.strip()][-1]
    assert "No space left on device" in last_line and str(work) in last_line, last_line  # not a bare traceback
    for stage in DATA_STAGES + ["clean_signals"]:  # whatever was marked done is complete and valid
        for folder in finished_outputs(work, stage):
            manifest = json.loads((folder / MANIFEST).read_text())
            assert all((folder / name).exists() for name in manifest.get("files", {}).values()), folder


# ---- the Prefect server restarted during a run ------------------------------------------------------------------


def test_a_prefect_server_restart_mid_run_leaves_valid_reusable_outputs(baseline, prefect_server, tmp_path):
    work = tmp_path / "work"
    proc = start_run(baseline.recipe, work, baseline.env, tmp_path / "run.log")
    wait_for(work, f"ingest/*/{MANIFEST}", proc, tmp_path / "run.log")  # a stage is done and marked
    prefect_server.stop()
    time.sleep(2)
    prefect_server.start()
    code, output = finish(proc, tmp_path / "run.log")
    if code != 0:  # a failure must say what went wrong, on its last line
        last_line = [line for line in output.splitlines() if line.strip()][-1]
        assert any(word in last_line.lower() for word in ("connect", "prefect", "server", "api")), last_line
    assert_every_visible_output_is_finished(work)
    done_before = [name for name in DATA_STAGES if finished_outputs(work, name)]
    assert "ingest" in done_before and (code != 0 or done_before == DATA_STAGES)
    rerun = run_to_end(baseline.recipe, work, baseline.env, tmp_path / "rerun.log")
    assert stage_status(rerun) == {name: "cached" if name in done_before else "ran" for name in DATA_STAGES}
    assert_same_outputs(work, baseline.workdir)


# ---- two runs building the same stage at once ---------------------------------------------------------------------


def test_a_run_that_finishes_a_stage_second_keeps_the_first_runs_output(tmp_path):
    """The first output may already be read by the next stage of the run that built it: it is never replaced."""
    def build(text: str):
        def write(folder: Path) -> dict:
            (folder / "out.txt").write_text(text)
            return {"files": {"out": "out.txt"}}
        return write

    def slow_build(folder: Path) -> dict:
        first = run_stage(tmp_path, "demo", "fp1", build("identical bytes"))  # the other run, finishing meanwhile
        reader = Path(first.file("out")).open()  # its next stage starts reading
        (folder / "out.txt").write_text("identical bytes")
        slow_build.reader = reader
        return {"files": {"out": "out.txt"}}

    second = run_stage(tmp_path, "demo", "fp1", slow_build)
    assert slow_build.reader.read() == "identical bytes"
    assert os.fstat(slow_build.reader.fileno()).st_nlink == 1  # the file being read is still the live output
    assert Path(second.file("out")).read_text() == "identical bytes"
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["fp1"]  # no staging folder left behind
    slow_build.reader.close()
