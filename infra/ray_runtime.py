"""Start or join Ray for the data stages, lazily: a run whose data stages are all cached never starts it."""

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from infra import storage

_settings: dict = {"num_cpus": None, "address": None, "workdir": None}


class WorkdirNotShared(RuntimeError):
    """A Ray node cannot read what the driver writes under the workdir."""


def configure_ray(num_cpus: int | None = None, address: str | None = None, workdir: str | None = None) -> None:
    """Remember how to start Ray; the first stage that needs it calls ensure_ray(). With a `workdir`, joining a
    cluster first proves that every node can read what the driver writes there (`check_workdir_shared`)."""
    _settings.update(num_cpus=num_cpus, address=address, workdir=workdir)


def cluster_address(address: str | None = None) -> str | None:
    """The Ray cluster this process would join, or None for a Ray of its own."""
    address = address or _settings["address"] or os.environ.get("RAY_ADDRESS")
    return None if address in (None, "", "local") else address


def ensure_ray(num_cpus: int | None = None, address: str | None = None, object_store_mb: int = 512) -> None:
    """Join `address` (else the configured one, else $RAY_ADDRESS) if there is one, else start a local Ray sized
    for this machine that listens on 127.0.0.1 only; a no-op if Ray is already up."""
    import ray  # here, not at the top: a run whose stages are all cached never pays for importing Ray

    if ray.is_initialized():
        return
    num_cpus = num_cpus or _settings["num_cpus"]
    if address := cluster_address(address):  # RAY_ADDRESS=local is Ray's own spelling of "start one here"
        ray.init(address=address, log_to_driver=True, configure_logging=False)
        if _settings["workdir"]:
            check_workdir_shared(_settings["workdir"])
        return
    # "local": without it ray.init joins whatever `ray start` left running on this machine
    with loopback_node():
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 object_store_memory=object_store_mb * 2**20, log_to_driver=True, configure_logging=False)


@contextmanager
def loopback_node() -> Iterator[None]:
    """Make the Ray started inside give its node the address 127.0.0.1.

    Ray's servers (GCS, raylet, workers) listen on the node's address, and on Linux ray.init takes the machine's
    outward address and swaps a loopback `_node_ip_address` for it. Ray's switch for single-machine use (the default
    on macOS and Windows, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) keeps 127.0.0.1 instead; it is read once at import,
    so it is flipped here for the start only and a later join in this process still finds its node the usual way.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _read_probe(location: str) -> tuple[str, str | None]:
    """On one node: (its host name, None) when the probe file reads back, else (host name, why not)."""
    try:
        return socket.gethostname(), None if storage.read_text(location) else "the file is empty"
    except Exception as err:  # noqa: BLE001 - whatever stops the read is the answer
        return socket.gethostname(), f"{type(err).__name__}: {err}"


def check_workdir_shared(workdir: str) -> None:
    """Write a file under the workdir, then read it on every alive Ray node; raise WorkdirNotShared naming the
    nodes that cannot. A local-path workdir on a cluster whose nodes do not share that disk stops here, before
    any stage runs, instead of failing shard by shard."""
    probe = storage.join(workdir, ".preflight", f"{uuid.uuid4().hex}.txt")
    storage.write_text(probe, f"written by {socket.gethostname()}")
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n["Alive"]]
        read = ray.remote(num_cpus=0)(_read_probe)
        answers = ray.get([read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                           .remote(probe) for n in nodes])
    finally:
        storage.remove(probe)
    failed = [f"{n['NodeManagerAddress']} ({host}: {why})" for n, (host, why) in zip(nodes, answers) if why]
    if failed:
        hint = ("use an object-store workdir (s3://bucket/run) or a folder every node mounts"
                if not storage.is_remote(workdir) else "give every node credentials and a route to the store")
        raise WorkdirNotShared(f"workdir {workdir}: {len(failed)} of {len(nodes)} Ray nodes cannot read what the "
                               f"driver writes there: {'; '.join(failed)}; {hint}")
