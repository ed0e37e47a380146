"""Storage is a URL: the storage layer against a real S3 API (moto's server on 127.0.0.1), and the tiny recipe end
to end with its workdir in a bucket, byte for byte the same data as on a local disk, its secrets nowhere."""

import functools
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import storage
from infra.launch import free_port
from infra.stage import MANIFEST, latest_output, run_stage
from tests.s3_server import S3Server, with_env

REPO = Path(__file__).resolve().parents[1]
TOKENMILL = REPO / ".venv" / "bin" / "tokenmill"
DATA_STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack"]


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch, tmp_path):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "node-cache"))
    storage.configure({})  # forget file systems built before these variables were set
    return s3


def test_storage_round_trip_on_s3(s3_env, tmp_path):
    s3_env.make_bucket("unit")
    base = "s3://unit/work"
    storage.write_text(storage.join(base, "a", "x.txt"), "hello")
    assert storage.read_text(storage.join(base, "a", "x.txt")) == "hello"
    assert storage.glob(storage.join(base, "a"), "*.txt") == ["s3://unit/work/a/x.txt"]
    local = storage.local_file(storage.join(base, "a", "x.txt"))  # a node-local copy, made once
    assert local.read_text() == "hello" and str(local).startswith(str(tmp_path / "node-cache"))
    with storage.writing(storage.join(base, "b")) as folder:
        (folder / "y.txt").write_text("uploaded at the end")
        assert not storage.exists(storage.join(base, "b", "y.txt"))
    assert storage.read_text(storage.join(base, "b", "y.txt")) == "uploaded at the end"
    assert storage.digest(storage.join(base, "a", "x.txt")) != storage.digest(storage.join(base, "b", "y.txt"))


def test_a_stage_on_s3_commits_by_its_manifest_and_a_failed_attempt_is_never_read(s3_env):
    s3_env.make_bucket("stages")
    work = "s3://stages/run"

    def crash(folder: Path) -> dict:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(work, "demo", "fp1", crash)
    assert not storage.exists(storage.join(work, "demo", "fp1", MANIFEST))
    assert storage.glob(storage.join(work, "demo", "fp1"), "*") == []  # nothing was uploaded
    done = run_stage(work, "demo", "fp1", lambda folder: (folder / "out.txt").write_text("ok") and {"files": {"out": "out.txt"}})
    assert done.attempt and done.file("out").startswith(f"{work}/demo/fp1/{done.attempt}/")
    again = run_stage(work, "demo", "fp1", lambda folder: pytest.fail("a committed output is rebuilt"))
    assert again.cached and storage.read_text(again.file("out")) == "ok"


def output_bytes(workdir: str) -> dict[str, bytes]:
    """Every file the data stages' committed manifests point at (their attempt folder), manifests left out."""
    found = {}
    for stage in DATA_STAGES:
        output = latest_output(workdir, stage)
        fs, root = storage.filesystem(output.root)
        for path in fs.find(root):
            relative = path[len(root):].lstrip("/")
            if relative != MANIFEST:
                found[f"{stage}/{relative}"] = fs.cat_file(path)
    return found


def tokenmill(*args: str, env: dict, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(TOKENMILL), *args], cwd=cwd, env=with_env(env), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def s3_run(s3, tmp_path_factory):
    """The tiny recipe end to end on s3://tiny/run, and its data stages on a local disk for comparison."""
    s3.make_bucket("tiny")
    scratch = tmp_path_factory.mktemp("s3-run")
    env = s3.env() | {storage.CACHE_ENV: str(scratch / "node-cache"), "PREFECT_HOME": str(scratch / "prefect")}
    remote = tokenmill("run", "-c", "configs/tiny.yaml", "--workdir", "s3://tiny/run", env=env)
    local = tokenmill("run", "-c", "configs/tiny.yaml", "--workdir", str(scratch / "local"), "--until", "pack", env=env)
    return env, remote, local, scratch


def test_the_tiny_recipe_runs_end_to_end_with_its_workdir_on_s3(s3_run):
    _, remote, _, _ = s3_run
    assert remote.returncode == 0, remote.stdout[-3000:] + remote.stderr[-3000:]
    assert "report: s3://tiny/run/evaluate/" in remote.stdout.replace("\n", "")
    assert storage.is_remote(remote.stdout.split("metrics:")[-1].split()[0])


def test_data_stages_on_s3_write_the_same_bytes_as_on_a_local_disk(s3_run, s3_env):
    _, remote, local, scratch = s3_run
    assert remote.returncode == 0 and local.returncode == 0, local.stdout[-3000:]
    on_s3, on_disk = output_bytes("s3://tiny/run"), output_bytes(str(scratch / "local"))
    assert on_s3.keys() == on_disk.keys() and len(on_s3) > 10
    assert {k for k in on_s3 if on_s3[k] != on_disk[k]} == set()


def test_report_inspect_and_runs_work_against_an_s3_workdir(s3_run):
    env, remote, _, _ = s3_run
    assert remote.returncode == 0
    report = tokenmill("report", "s3://tiny/run", env=env)
    assert report.returncode == 0 and "s3://tiny/run/evaluate/" in report.stdout, report.stdout + report.stderr
    rejected = tokenmill("inspect", "rejected", "--workdir", "s3://tiny/run", env=env)
    assert rejected.returncode == 0 and "rejected:" in rejected.stdout, rejected.stdout + rejected.stderr
    runs = tokenmill("runs", env=env)
    assert runs.returncode == 0 and "Completed" in runs.stdout, runs.stdout + runs.stderr


def test_the_storage_secret_is_in_no_output_log_or_object(s3_run, s3_env):
    env, remote, local, scratch = s3_run
    secret = env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in remote.stdout + remote.stderr + local.stdout + local.stderr
    fs, _ = storage.filesystem("s3://tiny/run")
    assert [p for p in fs.find("tiny") if secret.encode() in fs.cat_file(p)] == []
    assert [p for p in (scratch / "local").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []


def test_recipe_storage_options_are_secret_in_dumps():
    from flows.config import StorageConfig

    options = StorageConfig(options={"secret": "s3cr3t-value", "endpoint_url": "http://127.0.0.1:9"})
    assert "s3cr3t-value" not in str(options.model_dump(mode="json")) + repr(options)
    assert options.resolved()["secret"] == "s3cr3t-value"


# ---- two nodes that share no disk ------------------------------------------------------------------------------

NEEDS = [shutil.which(tool) for tool in ("ip", "unshare", "mount")]


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory):
    """A Ray head (0 CPUs: it runs no task) and a worker node in a network namespace of its own, joined by a veth
    pair, in a mount namespace whose view of this test's folder is an empty tmpfs: every task runs on a node that
    cannot see the driver's files. The S3 server listens on the head's side of the pair. Ray token auth is on."""
    if os.geteuid() != 0 or not all(NEEDS):
        pytest.skip("needs root and ip/unshare/mount to build a node that cannot see the driver's disk")
    net = random.randrange(1, 250)
    name, host, peer = f"tm{os.getpid() % 100000}", f"10.213.{net}.1", f"10.213.{net}.2"
    hidden = tmp_path_factory.mktemp("driver-only")
    sh = functools.partial(subprocess.run, check=True, capture_output=True, timeout=30)
    sh(["ip", "netns", "add", name])
    processes = []
    try:
        sh(["ip", "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}w"])
        sh(["ip", "link", "set", f"{name}w", "netns", name])
        sh(["ip", "addr", "add", f"{host}/24", "dev", f"{name}h"])
        sh(["ip", "link", "set", f"{name}h", "up"])
        for command in (["ip", "addr", "add", f"{peer}/24", "dev", f"{name}w"], ["ip", "link", "set", f"{name}w", "up"],
                        ["ip", "link", "set", "lo", "up"]):
            sh(["ip", "netns", "exec", name, *command])
        s3 = S3Server(host=host).start()
        processes.append(s3)
        env = s3.env() | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                          "PREFECT_HOME": str(hidden / "prefect"), storage.CACHE_ENV: str(hidden / "cache")}
        ray = str(Path(sys.executable).with_name("ray"))
        port = free_port()
        head = subprocess.Popen([ray, "start", "--head", "--block", "--num-cpus=0", f"--node-ip-address={host}",
                                 f"--port={port}", "--include-dashboard=false"], env=with_env(env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        processes.append(head)
        time.sleep(6)
        join = (f"mount -t tmpfs tmpfs {hidden} && exec {ray} start --address={host}:{port} --num-cpus=2 "
                f"--node-ip-address={peer} --block")
        worker = subprocess.Popen(["ip", "netns", "exec", name, "unshare", "--mount", "--propagation", "private",
                                   "sh", "-c", join], env=with_env(env), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        processes.append(worker)
        s3.make_bucket("cluster")
        yield f"{host}:{port}", env, hidden
    finally:
        for process in reversed(processes):
            stop(process)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{name}h"], capture_output=True)


def stop(process: "subprocess.Popen | S3Server") -> None:
    if isinstance(process, S3Server):
        process.stop()
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):  # `ray start --block` stops its node on SIGTERM; else force it
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def test_data_stages_on_a_node_that_cannot_see_the_driver_match_a_single_node_run(isolated_cluster, s3_run,
                                                                                   monkeypatch):
    address, env, hidden = isolated_cluster
    _, _, local, scratch = s3_run
    assert local.returncode == 0
    run = tokenmill("run", "-c", "configs/tiny.yaml", "--until", "pack", "--workdir", "s3://cluster/run",
                    "--ray-address", address, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    logs = (run.stdout + run.stderr).replace("\n", " ")
    assert "ingest: 5 units on 1 Ray node(s)" in logs  # the head runs nothing: the isolated node did it all
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage.configure({})
    assert output_bytes("s3://cluster/run") == output_bytes(str(scratch / "local"))


def test_a_local_workdir_on_a_cluster_that_cannot_see_it_stops_before_any_stage(isolated_cluster):
    address, env, hidden = isolated_cluster
    work = hidden / "work"
    run = tokenmill("run", "-c", "configs/tiny.yaml", "--until", "pack", "--workdir", str(work),
                    "--ray-address", address, env=env)
    assert run.returncode == 1
    said = (run.stdout + run.stderr).replace("\n", "")
    assert f"workdir {work}: 1 of 2 Ray nodes cannot read what the driver writes there" in said
    assert "use an object-store workdir" in said
    assert not (work / "ingest").exists()  # stopped before the first stage
