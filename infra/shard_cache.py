"""Per-unit memo: a unit of work whose input bytes and settings were seen before is reused, not recomputed.

A stage's output folder is addressed by the whole stage's inputs, so one new file gives the
stage a new fingerprint. Inside it, each unit of work is addressed by its own inputs: its
outputs live in <workdir>/<stage>/.units/<unit key>/<attempt>/, committed by stats.json
(written last, naming the attempt), and the stage output links them under the unit's index
(a hard link on a local disk, a server-side copy on an object store). When a corpus grows,
only the new units run. A unit is built on a Ray worker, in a node-local folder uploaded to
the cache: no worker needs the driver's disk.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

from infra import storage
from infra.ray_map import map_shards
from infra.stage import output_location, rebuilding

STATS = "stats.json"


def content_keys(paths: list[str], batch: int = 32) -> list[str]:
    """The content digest of each file (`storage.digest`), computed on Ray workers a batch at a time: a stage keys
    its units by the bytes of its input shards without the driver reading them."""
    batches = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    return [key for found in map_shards(_digests, batches, "content keys") for key in found] if paths else []


def _digests(paths: list[str]) -> list[str]:
    return [storage.digest(path) for path in paths]


def unit_record(cache_dir: str, key: str) -> dict | None:
    """The committed record of a unit ({"attempt", "stats"}), or None when it is not complete."""
    location = storage.join(cache_dir, key, STATS)
    if not storage.exists(location):
        return None
    record = json.loads(storage.read_text(location))
    return record if "stats" in record else {"attempt": None, "stats": record}  # written before attempts existed


def is_complete(cache_dir: str, key: str) -> bool:
    return storage.exists(storage.join(cache_dir, key, STATS))


def build_unit(keyed: tuple[str, Any], unit_fn: Callable, cache_dir: str, indexed: bool = True, **shared: Any) -> dict:
    """Runs on a Ray worker: unit_fn writes one unit's files into a local folder that lands in the cache.

    An `indexed` unit_fn takes (index, item) and names its files by the index (it is given 0);
    otherwise fn takes the item and names its files itself. Two attempts at one unit (a Ray retry)
    each write their own attempt folder; whichever commits last is the one stats.json names.
    """
    key, item = keyed
    attempt = storage.new_attempt()
    with storage.writing(storage.join(cache_dir, key, attempt)) as out_dir:
        stats = unit_fn((0, item) if indexed else item, out_dir=str(out_dir), **shared)
        files = sorted(p.name for p in out_dir.iterdir())
    storage.write_text(storage.join(cache_dir, key, STATS), json.dumps({"attempt": attempt, "files": files, "stats": stats}))
    return stats


def unit_files(cache_dir: str, key: str, record: dict) -> list[str]:
    folder = storage.join(cache_dir, key, record["attempt"]) if record["attempt"] else storage.join(cache_dir, key)
    names = record.get("files") or [storage.name_of(p) for p in storage.glob(folder, "*") if storage.name_of(p) != STATS]
    return [storage.join(folder, name) for name in names]


def link_unit(cache_dir: str, key: str, index: int | None) -> dict:
    """Link a unit's files into the output being built, as unit `index` (`shard-00000.parquet` -> `shard-00042.parquet`)
    or, with index None, under their own names."""
    record = unit_record(cache_dir, key)
    for source in unit_files(cache_dir, key, record):
        name = storage.name_of(source)
        prefix, _, rest = name.partition("-")
        storage.link(source, storage.join(output_location(), name if index is None else f"{prefix}-{index:05d}{rest[rest.index('.'):]}"))
    return record["stats"]


def cached_map(fn: Callable, keyed_items: Sequence[tuple[str, Any]], description: str, cache_dir: str,
               indexed: bool = True, in_driver: Callable[[Any], bool] = lambda item: False, **shared: Any) -> list[dict]:
    """Like map_shards(fn, ...) but memoised per unit key; each result gains `units_reused` (1 if linked from cache).
    A forced stage (`--force`) rebuilds every unit: a suspect cache is what forcing is for.

    Items for which `in_driver(item)` is true run in this process (their bytes live only here).
    """
    todo = [(key, item) for key, item in dict(keyed_items).items() if rebuilding() or not is_complete(cache_dir, key)]
    on_ray = [kv for kv in todo if not in_driver(kv[1])]
    if on_ray:
        map_shards(build_unit, on_ray, description, unit_fn=fn, cache_dir=cache_dir, indexed=indexed, **shared)
    for keyed in todo:
        if in_driver(keyed[1]):
            build_unit(keyed, fn, cache_dir, indexed=indexed, **shared)
    return link_all(keyed_items, {key for key, _ in todo}, cache_dir, indexed)


def link_all(keyed_items: Sequence[tuple[str, Any]], computed: set[str], cache_dir: str, indexed: bool = True) -> list[dict]:
    results = []
    for index, (key, _) in enumerate(keyed_items):
        stats = link_unit(cache_dir, key, index if indexed else None)
        results.append(stats | ({"shard": f"shard-{index:05d}"} if indexed else {}) | {"units_reused": int(key not in computed)})
    return results
