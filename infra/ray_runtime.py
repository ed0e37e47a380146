"""Start or join Ray for the data stages, lazily: a run whose data stages are all cached never starts it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray
from ray._private import ray_constants

_settings: dict = {"num_cpus": None, "address": None}


def configure_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Remember how to start Ray; the first stage that needs it calls ensure_ray()."""
    _settings.update(num_cpus=num_cpus, address=address)


def ensure_ray(num_cpus: int | None = None, address: str | None = None, object_store_mb: int = 512) -> None:
    """Join `address` (else the configured one, else $RAY_ADDRESS) if there is one, else start a local Ray sized
    for this machine that listens on 127.0.0.1 only; a no-op if Ray is already up."""
    if ray.is_initialized():
        return
    num_cpus = num_cpus or _settings["num_cpus"]
    address = address or _settings["address"] or os.environ.get("RAY_ADDRESS")
    if address and address != "local":  # RAY_ADDRESS=local is Ray's own spelling of "start one here"
        ray.init(address=address, log_to_driver=True, configure_logging=False)
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
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
