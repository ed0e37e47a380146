"""The lease on a training folder: a re-run never writes beside a killed run's ranks. It waits for them, a bounded
time, and otherwise stops with a message naming them."""

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.lease import (
    LEASE,
    Holder,
    LeaseHeld,
    process_start,
    read_holders,
    wait_until_free,
    write_lease,
)
from tasks.train.launch import LaunchConfig, run_training, training_folder
from tests.model.conftest import REPO, ZERO_STEPS, metrics, records, zero_spec


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_holder_keeps_the_folder_and_is_named(tmp_path, sleeper):
    holder = Holder("rank 1", Holder.this_process("driver").host, sleeper.pid, process_start(sleeper.pid))
    write_lease(tmp_path, [holder])
    started = time.monotonic()
    with pytest.raises(LeaseHeld, match=rf"still in use by rank 1 \(pid {sleeper.pid} on .*\) after waiting 1 s"):
        wait_until_free(tmp_path, timeout_s=1)
    assert 1 <= time.monotonic() - started < 5
    sleeper.kill()
    sleeper.wait()
    wait_until_free(tmp_path, timeout_s=0)  # gone: free at once


def test_a_reused_pid_or_a_silent_remote_host_holds_nothing(tmp_path, sleeper):
    here = Holder.this_process("driver").host
    write_lease(tmp_path, [Holder("rank 0", here, sleeper.pid, process_start(sleeper.pid) - 1)])  # another process
    wait_until_free(tmp_path, timeout_s=0)
    write_lease(tmp_path, [Holder("rank 3", "node-b", 4242, 1)])
    with pytest.raises(LeaseHeld, match=r"rank 3 \(pid 4242 on node-b\)"):  # renewed just now: alive
        wait_until_free(tmp_path, timeout_s=0)
    os.utime(tmp_path / LEASE, (time.time() - 120, time.time() - 120))  # rank 0 stopped renewing it
    wait_until_free(tmp_path, timeout_s=0)


DRIVER = """
import dataclasses, sys
from model.spec import TrainSpec
from tasks.train.launch import LaunchConfig, run_training
spec = TrainSpec.load(sys.argv[1])
run_training(sys.argv[2], "pretrain", "lease", LaunchConfig(num_procs=2),
             lambda work: (dataclasses.replace(spec, out_dir=str(work)), {}))
"""


def test_a_rerun_after_killing_the_driver_waits_for_its_ranks_then_resumes(text_blocks, zero_run, tmp_path, caplog):
    """kill -9 the driver (`tokenmill run`) while its ranks are mid-step (held there with SIGSTOP), re-run at once."""
    spec = zero_spec(text_blocks, 2, tmp_path / "unused", checkpoint_every=2)
    spec.save(tmp_path / "spec.json")
    workdir, launch = tmp_path / "work", LaunchConfig(num_procs=2)
    work = training_folder(str(workdir), "pretrain", "lease", launch)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path / "spec.json"), str(workdir)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ranks = wait_for_ranks(work, driver)
    for rank in ranks:
        os.kill(rank.pid, signal.SIGSTOP)  # the ranks notice a lost driver only between steps: hold them mid-step
    driver.kill()
    driver.wait()
    assert max(r["step"] for r in records(work / "metrics.jsonl") if r["split"] == "train") < ZERO_STEPS

    def rerun(wait_s: float):
        prepare = lambda folder: (dataclasses.replace(spec, out_dir=str(folder)), {})
        return run_training(str(workdir), "pretrain", "lease", launch.model_copy(update={"lease_wait_s": wait_s}), prepare)

    pids = "|".join(str(r.pid) for r in ranks)
    with pytest.raises(LeaseHeld, match=rf"still in use by .*rank [01] \(pid ({pids}) on"):
        rerun(wait_s=1)
    caplog.set_level(logging.WARNING, logger="infra.lease")
    threading.Timer(3.0, lambda: [os.kill(r.pid, signal.SIGCONT) for r in ranks]).start()
    manifest = rerun(wait_s=60)
    assert "waiting up to 60 s for" in caplog.text and "have exited; continuing" in caplog.text
    resumed = metrics(Path(manifest.path))
    assert [r["split"] for r in resumed].count("resume") == 1
    expected = {r["step"]: r["loss"] for r in metrics(zero_run(2)) if r["split"] == "train"}
    losses = {r["step"]: r["loss"] for r in resumed if r["split"] == "train"}
    assert sorted(losses) == list(range(1, ZERO_STEPS + 1))
    assert losses == pytest.approx(expected, abs=1e-6)
    assert not (work / LEASE).exists() and not work.exists()  # given up, and the finished run's folder removed


def wait_for_ranks(work: Path, driver: subprocess.Popen) -> list[Holder]:
    """The ranks, as the lease names them, once a checkpoint is written."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        ranks = [h for h in read_holders(work)[0] if h.role.startswith("rank")]
        if len(ranks) == 2 and any(r["split"] == "checkpoint" for r in records(work / "metrics.jsonl")):
            return ranks
        time.sleep(0.01)
    raise AssertionError(f"the driver did not get its ranks to a checkpoint (exit code {driver.poll()})")
