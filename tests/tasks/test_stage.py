from pathlib import Path

import pytest

from infra.stage import fingerprint, run_stage


def test_fingerprint_depends_on_config_inputs_and_version():
    base = fingerprint("clean", "1", {"min_chars": 200}, ["abc"])
    assert base == fingerprint("clean", "1", {"min_chars": 200}, ["abc"])
    assert base != fingerprint("clean", "1", {"min_chars": 201}, ["abc"])
    assert base != fingerprint("clean", "1", {"min_chars": 200}, ["abd"])
    assert base != fingerprint("clean", "2", {"min_chars": 200}, ["abc"])


def test_finished_stage_is_reused_and_reported_cached(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("hello")
        return {"counts": {"docs_in": 1}, "files": {"out": "out.txt"}}

    first = run_stage(tmp_path, "demo", "fp1", build)
    second = run_stage(tmp_path, "demo", "fp1", build)
    assert len(calls) == 1
    assert not first.cached and second.cached
    assert Path(second.file("out")).read_text() == "hello"
    assert second.path == str(tmp_path / "demo" / "fp1")


def test_failed_build_leaves_nothing_that_a_rerun_trusts(tmp_path):
    def crashing(folder):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "demo", "fp1", crashing)
    assert not (tmp_path / "demo" / "fp1").exists()
    assert list((tmp_path / "demo").iterdir()) == []  # the staging folder is gone too

    result = run_stage(tmp_path, "demo", "fp1", lambda folder: {"counts": {"ok": 1}})
    assert not result.cached and result.counts == {"ok": 1}


def test_output_without_manifest_is_rebuilt(tmp_path):
    leftover = tmp_path / "demo" / "fp1"
    leftover.mkdir(parents=True)
    (leftover / "stale.txt").write_text("from a killed run")
    result = run_stage(tmp_path, "demo", "fp1", lambda folder: {"counts": {"ok": 1}})
    assert not result.cached
    assert not (leftover / "stale.txt").exists()


def test_training_works_in_a_posix_folder_that_outlives_a_failed_attempt(tmp_path):
    from tasks.train.launch import LaunchConfig, training_folder

    local = training_folder(str(tmp_path), "pretrain", "fp1", LaunchConfig())
    assert local == tmp_path / "pretrain" / ".fp1.partial"  # beside its output, hidden: a kill leaves it for resume
    named = training_folder("s3://bucket/run", "pretrain", "fp1", LaunchConfig(checkpoint_dir=tmp_path / "shared"))
    assert named == tmp_path / "shared" / "pretrain" / "fp1"  # a shared disk the recipe names: multi-node resume
    remote = training_folder("s3://bucket/run", "pretrain", "fp1", LaunchConfig())
    assert "://" not in str(remote) and remote.parts[-3:] == ("train", "pretrain", "fp1")  # node-local, never the store

def test_bench_data_empties_only_a_folder_it_made(tmp_path):
    from tasks.bench.data_prep import SCRATCH_MARK, fresh_scratch

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="refusing to delete it"):
        fresh_scratch(precious)
    assert (precious / "thesis.tex").exists()
    fresh_scratch(tmp_path / "scratch")  # a new folder: made and marked
    (tmp_path / "scratch" / "old-result.json").write_text("{}")
    fresh_scratch(tmp_path / "scratch")  # marked as ours: emptied
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == [SCRATCH_MARK]
