"""Garbage collection of a work directory: outputs no recent run uses, and what killed runs left behind.

What stays: every output a kept run record names (the last `keep` finished runs, pinned runs, and runs
still going, whose records are leases), resumable training folders (unless `checkpoints`), and the
per-unit caches (`.units`, `.signatures`, `.digests`: content-addressed, they make re-runs cheap). What
goes: finished outputs nothing kept names, and staging folders left by a kill (`.<fp>.partial-<id>`,
tokenizer samples) older than every live run. A dry run by default. Freed bytes count a hard-linked file
once, and only when every one of its links goes.
"""

import os
import posixpath
import re
from dataclasses import dataclass, field

from infra import storage
from infra.lineage import stage_folders
from infra.runs import read_runs
from infra.stage import MANIFEST

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_STAGING = re.compile(r"\.[0-9a-f]{16}\.partial-[0-9a-f]+|\.sample-.+")
_TRAINING = re.compile(r"\.([0-9a-f]{16})\.partial")
CACHES = {".units", ".signatures", ".digests"}


@dataclass
class Collection:
    remove: list[tuple[str, str]] = field(default_factory=list)  # (location, why)
    keep_runs: list[str] = field(default_factory=list)
    bytes_freed: int = 0


def collect(workdir: str, keep: int = 3, checkpoints: bool = False) -> Collection:
    """What gc would remove (nothing is removed here)."""
    runs = read_runs(workdir)
    if not runs:
        raise ValueError(f"{workdir}: no recorded runs (.tokenmill/runs): nothing says which outputs are in use, "
                         "so gc removes nothing; a `tokenmill run` of this version records one")
    live = [r for r in runs if r.holds()]
    finished = [r for r in runs if r.status == "completed"]
    recent = finished[-keep:] if keep else []
    kept = {r.run_id: r for r in [*recent, *(r for r in runs if r.pinned), *live]}
    wanted = {fp for r in kept.values() for fp in r.fingerprints.values()}
    oldest_live = min((r.started for r in live), default=float("inf"))
    found = Collection(keep_runs=sorted(kept))
    for stage in stage_folders(workdir):
        for name in _entries(storage.join(workdir, stage)):
            location = storage.join(workdir, stage, name)
            if why := _why_remove(location, name, wanted, oldest_live, checkpoints):
                found.remove.append((location, why))
    found.bytes_freed = freed_bytes([loc for loc, _ in found.remove])
    return found


def _entries(folder: str) -> list[str]:
    fs, path = storage.filesystem(folder)
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def _why_remove(location: str, name: str, wanted: set[str], oldest_live: float, checkpoints: bool) -> str | None:
    if name in CACHES:
        return None
    if _FINGERPRINT.fullmatch(name):
        if name in wanted:
            return None
        if storage.exists(storage.join(location, MANIFEST)):
            return "no kept run uses it"
        # an attempt a live run is writing (on an object store outputs are built in place) is young
        return "unfinished output (a killed run's attempt)" if _newest(location) < oldest_live else None
    if _STAGING.fullmatch(name):
        return "staging left by a killed run" if _newest(location) < oldest_live else None
    if match := _TRAINING.fullmatch(name):
        if not checkpoints or match.group(1) in wanted or _newest(location) >= oldest_live:
            return None
        return "resumable training folder (--checkpoints)"
    return None


def _newest(location: str) -> float:
    """When anything under `location` was last written: a staging folder a live run still fills is young."""
    fs, path = storage.filesystem(location)
    stamps = [fs.modified(path)] if fs.isfile(path) else [fs.modified(p) for p in fs.find(path)] or [fs.modified(path)]
    return max(stamp.timestamp() for stamp in stamps)


def freed_bytes(locations: list[str]) -> int:
    """Bytes removing `locations` frees: a hard-linked file counts once, and not at all while a link outside stays."""
    total, links_seen, sizes = 0, {}, {}
    for location in locations:
        if storage.is_remote(location):
            fs, path = storage.filesystem(location)
            total += sum(info["size"] for info in fs.find(path, detail=True).values())
            continue
        for root, _, files in os.walk(storage.normalize(location)):
            for name in files:
                stat = os.lstat(os.path.join(root, name))
                key = (stat.st_dev, stat.st_ino)
                links_seen[key] = links_seen.get(key, 0) + 1
                sizes[key] = (stat.st_size, stat.st_nlink)
    return total + sum(size for key, (size, nlink) in sizes.items() if links_seen[key] >= nlink)


def remove(found: Collection) -> None:
    for location, _ in found.remove:
        storage.remove(location)
