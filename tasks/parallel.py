"""Map a function over shards on Ray, one shard per unit of work, with a progress bar."""

from collections.abc import Callable, Sequence
from typing import Any

import ray
from rich.progress import Progress

from infra.ray_runtime import ensure_ray

# Ray may re-run a task whose worker died: every shard function writes its output
# under a fresh name and renames it into place, so a retry is always safe.
SHARD_RETRIES = 3


def map_shards(fn: Callable, items: Sequence[Any], description: str, **shared: Any) -> list[Any]:
    """Run fn(item, **shared) for each item on Ray; results come back in the order of `items`."""
    ensure_ray()
    remote_fn = ray.remote(max_retries=SHARD_RETRIES, retry_exceptions=False)(fn)
    shared_refs = {k: ray.put(v) for k, v in shared.items()}
    pending = {remote_fn.remote(item, **shared_refs): i for i, item in enumerate(items)}
    results: list[Any] = [None] * len(items)
    with Progress(transient=True) as progress:
        bar = progress.add_task(description, total=len(items))
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            results[pending[done[0]]] = ray.get(done[0])
            progress.advance(bar)
    return results


def map_with_actors(actor_cls: type, init_args: tuple, method: str, items: Sequence[Any], num_actors: int,
                    description: str) -> list[Any]:
    """Like map_shards, but each actor pays its set-up cost (loading a tokenizer, say) once."""
    ensure_ray()
    remote_cls = ray.remote(max_restarts=SHARD_RETRIES, max_task_retries=SHARD_RETRIES)(actor_cls)
    actors = [remote_cls.remote(*init_args) for _ in range(max(1, min(num_actors, len(items))))]
    pool = ray.util.ActorPool(actors)
    results: list[Any] = []
    with Progress(transient=True) as progress:
        bar = progress.add_task(description, total=len(items))
        for result in pool.map(lambda actor, item: getattr(actor, method).remote(item), list(items)):
            results.append(result)
            progress.advance(bar)
    for actor in actors:
        ray.kill(actor)
    return results
