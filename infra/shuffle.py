"""All-to-all exchange on Ray: the global steps of a data stage (dedup's buckets, the id check) without a driver.

One exchange runs `fn(index, parts, **shared)` as one Ray task per partition; the task returns a small
summary and `num_out` output parts, one for each partition of the next exchange. The parts stay in
Ray's object store and go straight from the task that made them to the task that reads them: the
driver holds object references and summaries (a few numbers a task), never the records. Chaining
exchanges gives map -> shuffle -> reduce pipelines whose memory per task follows its partition.

A part is any picklable value; Arrow tables are the usual choice (zero-copy in the object store).
Tasks are pure functions of their inputs, so Ray may re-run one after a worker dies.
"""

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rich.progress import Progress

from infra.ray_runtime import ensure_ray

RETRIES = 3


def _run(fn: Callable, index: int, num_out: int, *parts: Any, **shared: Any) -> tuple:
    # parts and shared values arrive as top-level arguments: Ray resolves object references only there
    summary, outputs = fn(index, list(parts), **shared)
    if len(outputs) != num_out:  # our own invariant: every next partition gets exactly one part
        raise AssertionError(f"{fn.__name__} made {len(outputs)} parts for {num_out} partitions")
    return (summary, *outputs) if num_out else summary


def exchange(fn: Callable, inputs: Sequence[Sequence[Any]], num_out: int, description: str,
             **shared: Any) -> tuple[list[Any], list[list[Any]]]:
    """Run fn(i, inputs[i], **shared) for every partition i; returns (summaries, routed) where routed[j] holds
    the j-th output part of every task (object references), ready to be the inputs of the next exchange."""
    import ray

    ensure_ray()
    remote = ray.remote(max_retries=RETRIES, retry_exceptions=False)(_run).options(num_returns=num_out + 1 if num_out else 1)
    shared_refs = {k: ray.put(v) for k, v in shared.items()}
    refs = [remote.remote(fn, i, num_out, *parts, **shared_refs) for i, parts in enumerate(inputs)]
    heads = [r[0] if num_out else r for r in refs]
    summaries = _gather(heads, description)
    routed = [[r[1 + j] for r in refs] for j in range(num_out)]
    return summaries, routed


def _gather(refs: list, description: str) -> list[Any]:
    """Summaries in task order, with a progress bar as tasks finish."""
    import ray

    position = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    with Progress(transient=True) as progress:
        bar = progress.add_task(description, total=len(refs))
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            results[position[done[0]]] = ray.get(done[0])
            progress.advance(bar)
    return results


def partition_of(keys: Sequence[str], num_parts: int) -> np.ndarray:
    """A stable partition for each string key (Python's own hash() differs between processes)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "little") % num_parts
                        for k in keys), dtype=np.int64, count=len(keys))


def split_by(table: Any, parts: np.ndarray, num_parts: int) -> list[Any]:
    """Rows of an Arrow table cut into `num_parts` tables by their partition number (order kept within a part)."""
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(num_parts + 1))
    ordered = table.take(order)
    return [ordered.slice(bounds[j], bounds[j + 1] - bounds[j]) for j in range(num_parts)]
