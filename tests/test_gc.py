"""tokenmill gc: outputs no kept run uses and kill leftovers go; pinned, running and recent runs' outputs stay."""

import os
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from infra.gc import collect
from infra.runs import finish_run, read_runs, start_run, used
from infra.stage import recording_use, run_stage


def output(workdir: str, stage: str, fp: str, size: int) -> str:
    def build(folder: Path) -> dict:
        (folder / "data.bin").write_bytes(b"x" * size)
        return {"files": {"data": "data.bin"}}

    return run_stage(workdir, stage, fp, build).path


def a_run(workdir: str, outputs: list[tuple[str, str, int]], finish: bool = True):
    record = start_run(workdir)
    with recording_use(lambda stage, fp: used(record, stage, fp)):
        paths = [output(workdir, stage, fp, size) for stage, fp, size in outputs]
    if finish:
        finish_run(record, ok=True)
    return record, paths


def gc(*args: str):
    return CliRunner().invoke(app, ["gc", *args])


def test_gc_keeps_recent_pinned_and_running_runs_and_removes_leftovers(tmp_path):
    work = str(tmp_path / "work")
    first, (_, b1) = a_run(work, [("a", "a" * 16, 100), ("b", "b" * 16, 1000)])
    a_run(work, [("a", "a" * 16, 100), ("b", "c" * 16, 10)])
    a_run(work, [("a", "d" * 16, 100), ("b", "c" * 16, 10)])
    # b1's file is also a per-unit cache entry (a hard link): removing b1 frees nothing of it
    (Path(work) / "b" / ".units").mkdir()
    os.link(Path(b1) / "data.bin", Path(work) / "b" / ".units" / "data.bin")
    (Path(b1) / "log.txt").write_bytes(b"y" * 7)
    staging = Path(work) / "a" / f".{'e' * 16}.partial-0badc0de"  # what a kill mid-build leaves
    staging.mkdir()
    (staging / "half.bin").write_bytes(b"z" * 5)
    training = Path(work) / "pretrain" / f".{'f' * 16}.partial"  # a killed training run's checkpoints: resumable
    training.mkdir(parents=True)
    (training / "ckpt.pt").write_bytes(b"w" * 3)

    shown = gc(work, "--keep", "2")
    assert shown.exit_code == 0, shown.output
    assert f"would remove {b1}" in shown.output and str(staging) in shown.output
    assert str(training) not in shown.output and "would free 0.0 MiB" in shown.output
    # b1's log and manifest and the staging file; b1's data.bin stays linked from the cache
    assert collect(work, keep=2).bytes_freed == 7 + (Path(b1) / "manifest.json").stat().st_size + 5
    assert Path(b1).exists()  # a dry run

    # a pinned run keeps what it used; a running run is a lease on its outputs
    assert gc(work, "--keep", "2", "--pin", first.run_id).exit_code == 0
    assert b1 not in [loc for loc, _ in collect(work, keep=2).remove]
    for record in read_runs(work):
        record.pinned = False
        record.save()
    live, _ = a_run(work, [("b", "b" * 16, 1000)], finish=False)
    assert b1 not in [loc for loc, _ in collect(work, keep=2).remove]
    finish_run(live, ok=False)  # failed runs are not among the kept finished ones

    deleted = gc(work, "--keep", "2", "--checkpoints", "--delete")
    assert deleted.exit_code == 0, deleted.output
    assert not Path(b1).exists() and not staging.exists() and not training.exists()
    assert (Path(work) / "b" / ".units" / "data.bin").exists()  # caches are never collected
    assert all(Path(work, stage, fp).exists() for stage, fp in [("a", "a" * 16), ("a", "d" * 16), ("b", "c" * 16)])


def test_gc_without_run_records_removes_nothing(tmp_path):
    output(str(tmp_path), "a", "a" * 16, 10)
    shown = gc(str(tmp_path))
    assert shown.exit_code == 2 and "no recorded runs" in shown.output
