"""Which checkpoint to trust, and the training state DeepSpeed does not keep.

DeepSpeed writes the model, optimizer partitions and LR scheduler of a checkpoint tag,
one file per rank. It keeps no RNG state or data position, and its own `latest` file can
name a tag some ranks never finished. So: after every rank has written its files and a
barrier has passed, rank 0 writes `<tag>/complete.json` (the step, and the world size and
global batch the tag was written with) and then replaces `latest_complete` atomically.
A tag without `complete.json` is never resumed from.
"""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from infra.files import atomic_write_text

COMPLETE = "complete.json"
LATEST = "latest_complete"


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def mark_complete(folder: Path, tag: str, step: int, **written_with) -> None:
    (folder / tag / COMPLETE).write_text(json.dumps({"step": step, **written_with}))
    atomic_write_text(folder / LATEST, tag)  # readers see the old tag or the new, never half


def complete_tags(folder: Path) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / COMPLETE).exists())


def latest_complete(folder: Path) -> str | None:
    latest = folder / LATEST
    if latest.exists():
        tag = latest.read_text().strip()
        if (folder / tag / COMPLETE).exists():
            return tag
    tags = complete_tags(folder)  # `latest_complete` lost or pointing at a deleted tag: fall back to a scan
    return tags[-1] if tags else None


def read_complete(folder: Path, tag: str) -> dict:
    return json.loads((folder / tag / COMPLETE).read_text())


def prune(folder: Path, keep: int) -> None:
    """Keep the newest `keep` complete tags; drop older ones and incomplete leftovers older than the newest."""
    tags = complete_tags(folder)
    newest = tags[-1] if tags else None
    for path in folder.iterdir():
        if not path.is_dir():
            continue
        stale = path.name in tags[:-keep] if keep > 0 else path.name in tags
        unfinished = newest is not None and path.name not in tags and path.name < newest
        if stale or unfinished:
            shutil.rmtree(path, ignore_errors=True)


def rng_state() -> dict:
    """Plain lists and numbers (JSON), so the universal checkpoint carries them too."""
    numpy_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"python": [version, list(internal), gauss],
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "torch": torch.get_rng_state().tolist(),
            "cuda": torch.cuda.get_rng_state().tolist() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def gathered_rng_states() -> list[dict]:
    """Every rank's RNG state, in rank order (DeepSpeed's client_state is saved by rank 0 only)."""
    states: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(states, rng_state())
    return states
