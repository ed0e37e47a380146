"""What `tokenmill run` starts before its flow, side by side: Prefect's temporary API and Ray.

With no Prefect server configured, Prefect starts its temporary API only when the flow makes its first call: this
process first imports the server's code (≈ 3 s), then waits while a new process imports it again and answers
(≈ 4 s); Ray starts later still, at the first data stage (≈ 3 s). Those waits come one after another and are most
of the fixed cost of a short run. Here the API's process starts first, Ray starts while it boots, and the flow
begins once both are up. The API is the same one Prefect would start (its uvicorn command, without the UI, on
this machine's loopback and Prefect's own database), handed to Prefect as PREFECT_API_URL for this run only.
"""

import atexit
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.server import health_ok
from infra.launch import free_port

MIN_STARTUP_TIMEOUT_S = 60.0  # a fresh database's migrations on a loaded 2-core machine take most of Prefect's 20 s
_started: "TemporaryAPI | None" = None


class TemporaryAPI:
    """Prefect's temporary API server in its own process, stopped when this process exits (after Prefect's own
    exit handlers have sent their last logs and events to it, as Prefect orders it)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.process = subprocess.Popen(self.command(), env=self.environment(), stdin=subprocess.DEVNULL)
        atexit.register(self.stop)

    def command(self) -> list[str]:
        package = Path(importlib.util.find_spec("prefect").origin).parent  # found, not imported
        return [sys.executable, "-m", "uvicorn", "--app-dir", str(package.parent), "--factory",
                "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "error", "--lifespan", "on"]

    @staticmethod
    def environment() -> dict[str, str]:
        # as Prefect's own temporary server: no UI, the ephemeral set of services, this process's settings
        return {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}

    def wait(self, timeout: float | None = None) -> None:
        """Return once the API answers /health; RuntimeError if its process exits or stays silent for `timeout`
        seconds (default: Prefect's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, at least 60)."""
        if timeout is None:
            from prefect.settings import get_current_settings

            timeout = max(MIN_STARTUP_TIMEOUT_S, get_current_settings().server.ephemeral.startup_timeout_seconds)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prefect's temporary API on port {self.port} exited with code "
                                   f"{self.process.returncode} before answering (its messages are above)")
            if health_ok(self.url, timeout=1.0):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Prefect's temporary API on port {self.port} did not answer {self.url}/health within "
                           f"{timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def temporary_api() -> TemporaryAPI:
    """This process's temporary API, started on first use and kept until exit: a second run in the same process
    (a notebook, the tests' in-process CLI calls) reuses it, as Prefect reuses its own."""
    global _started
    if _started is None or _started.process.poll() is not None:
        _started = TemporaryAPI()
    return _started


@contextmanager
def serving(api: TemporaryAPI | None) -> Iterator[None]:
    """Prefect talks to `api` inside the block (None: whatever Prefect is configured with): waited for, named by
    PREFECT_API_URL in this process and what it starts. After it, the run's logs and events are sent (as Prefect's
    own test harness drains them before its server goes) and the environment is as before."""
    if api is None:
        yield
        return
    from prefect.context import refresh_global_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    api.wait()
    # no UI is served: an empty UI URL keeps Prefect from logging "View at" links to it, as with its own
    settings = {"PREFECT_API_URL": api.url, "PREFECT_UI_URL": os.environ.get("PREFECT_UI_URL", "")}
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    refresh_global_settings_context()  # Prefect read its settings when first imported
    try:
        yield
    finally:
        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        refresh_global_settings_context()


def builds_data(planned: Iterable[dict]) -> bool:
    """Whether a data stage (the stages that run on Ray) will build rather than reuse its output."""
    from tasks.stages import stage, stage_names

    return any(entry["action"] != "reuse" and (entry["stage"] not in stage_names()
                                               or stage(entry["stage"]).phase == "prepare-data")
               for entry in planned)


def start_ray_now(cfg) -> None:
    """Start (or join) Ray as the flow would at its first data stage, configured the same way."""
    from infra import storage
    from infra.ray_runtime import configure_ray, ensure_ray

    storage.configure(cfg.storage.resolved())  # before Ray starts: its local workers inherit the options
    configure_ray(cfg.ray.num_cpus, cfg.ray.address, storage.normalize(cfg.workdir))
    ensure_ray()
