"""Start or join Ray for the data stages."""

import os

import ray


def ensure_ray(num_cpus: int | None = None, address: str | None = None, object_store_mb: int = 512) -> None:
    """Join `address` if given, else start a local Ray sized for this machine; a no-op if already up."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, object_store_memory=object_store_mb * 2**20,
             log_to_driver=True, configure_logging=False)
