"""Map a function over shards on Ray, one shard per unit of work, with a progress bar.

What a shard function logs on its worker (through `logging`, under the `tasks` loggers) comes
back with its result and is replayed into this module's logger on the driver, with the node and
process that did the work; the flow forwards that logger to the Prefect run's log, so worker-side
messages show in the UI beside the stage's own.
"""

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.progress import Progress

from infra.ray_runtime import ensure_ray

# Ray may re-run a task whose worker died: every shard function writes its output
# under a fresh name and renames it into place, so a retry is always safe.
SHARD_RETRIES = 3
log = logging.getLogger(__name__)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, f"{record.name}: {record.getMessage()}"))


def run_logged(fn: Callable, item: Any, **shared: Any) -> tuple[Any, dict]:
    """On a worker: fn(item, **shared), plus where it ran, how long it took and what it logged."""
    import ray

    handler, logger = _Collect(), logging.getLogger("tasks")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    try:
        result = fn(item, **shared)
    finally:
        logger.removeHandler(handler)
    where = {"node": ray.get_runtime_context().get_node_id()[:8], "pid": os.getpid(),
             "seconds": time.perf_counter() - started, "logs": handler.lines}
    return result, where


def replay(description: str, item_name: str, where: dict) -> None:
    for level, line in where["logs"]:
        log.log(level, f"[{description} {item_name} on node {where['node']} pid {where['pid']}] {line}")
    log.debug(f"{description} {item_name}: {where['seconds']:.2f} s on node {where['node']} pid {where['pid']}")


def map_shards(fn: Callable, items: Sequence[Any], description: str, **shared: Any) -> list[Any]:
    """Run fn(item, **shared) for each item on Ray; results come back in the order of `items`."""
    import ray

    ensure_ray()
    remote_fn = ray.remote(max_retries=SHARD_RETRIES, retry_exceptions=False)(run_logged)
    shared_refs = {k: ray.put(v) for k, v in shared.items()}
    pending = {remote_fn.remote(fn, item, **shared_refs): i for i, item in enumerate(items)}
    results: list[Any] = [None] * len(items)
    nodes: set[str] = set()
    with Progress(transient=True) as progress:
        bar = progress.add_task(description, total=len(items))
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            index = pending[done[0]]
            results[index], where = ray.get(done[0])
            nodes.add(where["node"])
            replay(description, f"#{index}", where)
            progress.advance(bar)
    if items:
        log.info(f"{description}: {len(items)} units on {len(nodes)} Ray node(s)")
    return results


def cluster_cpus() -> int:
    """The CPUs of the Ray cluster (started or joined if need be): how many tasks or actors can run at once."""
    import ray

    ensure_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
