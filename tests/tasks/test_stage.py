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
    assert second.file("out").read_text() == "hello"
    assert second.path == tmp_path / "demo" / "fp1"


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


def test_a_resumable_stage_keeps_its_staging_folder_after_a_failure_and_reuses_it(tmp_path):
    seen = []

    def crash(folder: Path) -> dict:
        (folder / "checkpoint").write_text("step 10")
        raise RuntimeError("killed")

    def finish(folder: Path) -> dict:
        seen.append((folder / "checkpoint").read_text())  # the failed attempt's work is still there
        return {"counts": {"steps": 20}}

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "pretrain", "fp1", crash, resumable=True)
    assert not (tmp_path / "pretrain" / "fp1").exists()  # nothing trusted
    manifest = run_stage(tmp_path, "pretrain", "fp1", finish, resumable=True)
    assert seen == ["step 10"] and manifest.counts == {"steps": 20}
    assert [p.name for p in (tmp_path / "pretrain").iterdir()] == ["fp1"]
