"""Per-shard memo: a unit of work whose input bytes and settings were seen before is linked, not recomputed.

A stage's output folder is addressed by the whole stage's inputs, so one new file gives the
stage a new fingerprint. Inside it, each unit of work is addressed by its own inputs: its
outputs live in <workdir>/<stage>/.units/<unit key>/ (built in a staging folder, renamed
into place with stats.json last), and the stage output links them under the unit's index.
When a corpus grows, only the new units run.
"""

import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra.ray_map import map_shards

STATS = "stats.json"


def unit_dir(cache_dir: Path, key: str) -> Path:
    return cache_dir / key


def is_complete(cache_dir: Path, key: str) -> bool:
    return (unit_dir(cache_dir, key) / STATS).exists()


def build_unit(keyed: tuple[str, Any], unit_fn: Callable, cache_dir: str, indexed: bool = True, **shared: Any) -> dict:
    """Runs on a Ray worker: unit_fn writes one unit's files into a staging folder renamed into the cache.

    An `indexed` unit_fn takes (index, item) and names its files by the index (it is given 0);
    otherwise fn takes the item and names its files itself.
    """
    key, item = keyed
    final = unit_dir(Path(cache_dir), key)
    staging = Path(cache_dir) / f".{key}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        stats = unit_fn((0, item) if indexed else item, out_dir=str(staging), **shared)
        (staging / STATS).write_text(json.dumps(stats))
        try:
            staging.rename(final)
        except OSError:  # another attempt (a Ray retry) finished first: its copy is as good as ours
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return stats


def link_unit(cache_dir: Path, key: str, index: int | None, out_dir: Path) -> dict:
    """Hard-link a unit's files into the stage output, as unit `index` (`shard-00000.parquet` -> `shard-00042.parquet`)
    or, with index None, under their own names."""
    source = unit_dir(cache_dir, key)
    for path in source.iterdir():
        if path.name == STATS:
            continue
        prefix, _, rest = path.name.partition("-")
        target = out_dir / (path.name if index is None else f"{prefix}-{index:05d}{rest[rest.index('.'):]}")
        try:
            os.link(path, target)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(path, target)
    return json.loads((source / STATS).read_text())


def cached_map(fn: Callable, keyed_items: Sequence[tuple[str, Any]], description: str, out_dir: Path,
               cache_dir: Path, indexed: bool = True, in_driver: Callable[[Any], bool] = lambda item: False,
               **shared: Any) -> list[dict]:
    """Like map_shards(fn, ...) but memoised per unit key; each result gains `units_reused` (1 if linked from cache).

    Items for which `in_driver(item)` is true run in this process (their bytes live only here).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [(key, item) for key, item in dict(keyed_items).items() if not is_complete(cache_dir, key)]
    on_ray = [kv for kv in todo if not in_driver(kv[1])]
    if on_ray:
        map_shards(build_unit, on_ray, description, unit_fn=fn, cache_dir=str(cache_dir), indexed=indexed, **shared)
    for keyed in todo:
        if in_driver(keyed[1]):
            build_unit(keyed, fn, str(cache_dir), indexed=indexed, **shared)
    return link_all(keyed_items, {key for key, _ in todo}, out_dir, cache_dir, indexed)


def link_all(keyed_items: Sequence[tuple[str, Any]], computed: set[str], out_dir: Path, cache_dir: Path,
             indexed: bool = True) -> list[dict]:
    results = []
    for index, (key, _) in enumerate(keyed_items):
        stats = link_unit(cache_dir, key, index if indexed else None, out_dir)
        results.append(stats | ({"shard": f"shard-{index:05d}"} if indexed else {}) | {"units_reused": int(key not in computed)})
    return results
