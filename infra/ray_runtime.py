"""Start or join Ray for the data stages, lazily: a run whose data stages are all cached never starts it."""

import os

import ray

_settings: dict = {"num_cpus": None, "address": None}


def configure_ray(num_cpus: int | None = None, address: str | None = None) -> None:
    """Remember how to start Ray; the first stage that needs it calls ensure_ray()."""
    _settings.update(num_cpus=num_cpus, address=address)


def ensure_ray(num_cpus: int | None = None, address: str | None = None, object_store_mb: int = 512) -> None:
    """Join `address` if given, else start a local Ray sized for this machine; a no-op if already up."""
    if ray.is_initialized():
        return
    num_cpus, address = num_cpus or _settings["num_cpus"], address or _settings["address"]
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, object_store_memory=object_store_mb * 2**20,
             log_to_driver=True, configure_logging=False)
