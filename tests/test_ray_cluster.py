"""Ray beyond one process: the data stages on a 2-node cluster joined with `tokenmill run --ray-address`, and the
local Ray we start ourselves listening on 127.0.0.1 only.

The cluster's two nodes (a head and a worker, 1 CPU each) run on this machine as separate raylets, the way
Ray's own tests build clusters. Which node ran each task comes from the task events Ray records in its GCS: the
public state API (`ray.util.state`) reads them through the dashboard, which `ray[data]` does not install.
"""

import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.core.generated.common_pb2 import TaskStatus
from typer.testing import CliRunner

from flows.cli import app
from infra.ray_runtime import configure_ray, ensure_ray

DATA_STAGES = ["ingest", "clean", "dedup", "tokenizer", "pack"]
FINISHED = TaskStatus.Value("FINISHED")


def run_data_stages(workdir: Path, *options: str) -> None:
    result = CliRunner().invoke(app, ["run", "--config", "configs/tiny.yaml", "--workdir", str(workdir),
                                      "--until", "pack", *options])
    assert result.exit_code == 0, result.output


def stage_outputs(workdir: Path) -> dict[str, bytes]:
    """Every file of every data stage's output folder, by path; manifests left out (they hold timings)."""
    return {str(p.relative_to(workdir)): p.read_bytes() for stage in DATA_STAGES
            for p in sorted((workdir / stage).glob("*/**/*")) if p.is_file() and p.name != "manifest.json"
            and not p.relative_to(workdir / stage).parts[0].startswith(".")}


def finished_tasks_by_node(expected: int, timeout_s: float = 20.0) -> Counter:
    """(task name, node id) -> count of finished tasks of this job; workers report their events about once a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = ray._private.state.state._get_all_task_events()
        counts = Counter((e.task_info.name, e.state_updates.node_id.hex()) for e in events
                         if e.state_updates.node_id and FINISHED in e.state_updates.state_ts_ns)
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


@pytest.fixture
def two_node_cluster():
    ray.shutdown()  # a session's local Ray (ray_local) gives way; the next stage that needs Ray starts it again
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                           "object_store_memory": 128 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=128 * 2**20)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    configure_ray(None, None)


def test_a_local_ray_listens_on_loopback_only():
    ensure_ray(num_cpus=1)
    assert ray._private.worker._global_node.node_ip_address == "127.0.0.1"
    ours = [psutil.Process()] + psutil.Process().children(recursive=True)  # the GCS, raylet and workers we started
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
                 and c.pid in {p.pid for p in ours}]
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    assert len(listening) >= 3  # at least the GCS and the raylet's two servers


def test_data_stages_run_on_both_nodes_of_a_cluster_and_match_a_local_run(repo_cwd, tmp_path, two_node_cluster):
    ray.shutdown()
    run_data_stages(tmp_path / "local")
    assert ray.is_initialized() and len(ray.nodes()) == 1
    ray.shutdown()

    run_data_stages(tmp_path / "cluster", "--ray-address", two_node_cluster.address)
    assert ray.get_runtime_context().gcs_address == two_node_cluster.address  # joined it, started nothing
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(node_ids) == 2
    by_node = finished_tasks_by_node(expected=10)
    assert {node for _, node in by_node} == node_ids, by_node  # both nodes did shard work
    assert stage_outputs(tmp_path / "cluster") == stage_outputs(tmp_path / "local")
