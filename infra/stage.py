"""The stage runner: content-addressed outputs, manifests, and writes a killed run cannot half-finish.

A stage's output lives in <workdir>/<stage>/<fingerprint>/. The fingerprint hashes the
stage name, its code version, its normalized config and its inputs' fingerprints. The
output is built in a hidden staging folder and renamed into place only once complete,
with manifest.json inside: a folder with a manifest is finished, anything else is not.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

MANIFEST = "manifest.json"
# stages a run must rebuild even when a finished output with their fingerprint exists (`--force`)
_FORCED: ContextVar[frozenset[str]] = ContextVar("forced_stages", default=frozenset())


@contextmanager
def forcing(stages: set[str]) -> Iterator[None]:
    token = _FORCED.set(frozenset(stages))
    try:
        yield
    finally:
        _FORCED.reset(token)


class Manifest(BaseModel):
    """What a stage hands the next one: where its files are and what they hold, never the data."""

    stage: str
    fingerprint: str
    path: Path
    counts: dict[str, int] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # role -> path relative to `path`
    cached: bool = False
    seconds: float = 0.0

    def file(self, role: str) -> Path:
        return self.path / self.files[role]


def fingerprint(stage: str, version: str, config: Any, inputs: list[str]) -> str:
    payload = json.dumps({"stage": stage, "version": version, "config": config, "inputs": sorted(inputs)},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_digest(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def run_stage(workdir: Path, stage: str, fp: str, build: Callable[[Path], dict], resumable: bool = False) -> Manifest:
    """Return the finished output for `fp`, building it first if no complete one exists.

    `build(folder)` writes the stage's files into `folder` and returns the manifest
    fields it knows (counts, stats, files). A `resumable` stage (training) builds in a
    staging folder named by the fingerprint alone and keeps it when it fails, so the next
    run with the same fingerprint finds its checkpoints there and continues.
    """
    final = workdir / stage / fp
    if (final / MANIFEST).exists() and stage not in _FORCED.get():
        manifest = Manifest.model_validate_json((final / MANIFEST).read_text())
        return manifest.model_copy(update={"cached": True, "path": final, "seconds": 0.0})
    staging = workdir / stage / (f".{fp}.partial" if resumable else f".{fp}.partial-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True, exist_ok=resumable)
    started = time.perf_counter()
    try:
        fields = build(staging)
        manifest = Manifest(stage=stage, fingerprint=fp, path=final, seconds=time.perf_counter() - started, **fields)
        (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        if (final / MANIFEST).exists() and stage not in _FORCED.get():
            # another run finished this fingerprint meanwhile: its output is as good as ours, and may be in use
            shutil.rmtree(staging, ignore_errors=True)
        else:
            if final.exists():  # a leftover without a manifest (or an output --force rebuilds): replaced
                shutil.rmtree(final)
            staging.rename(final)
    except OSError as err:
        if (reason := write_failure(err)) and not isinstance(err, OutputNotWritable):
            # pyarrow's and Ray's messages say "no space" but not where: name the folder the user must free
            raise OutputNotWritable(f"{stage}: cannot write its output under {workdir / stage}: {reason}") from err
        raise
    finally:
        if not resumable:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


class OutputNotWritable(OSError):
    """The work directory filled up or turned read-only while a stage wrote to it."""


# errors that only a write raises: a full disk or quota, a read-only file system, a file over the size limit
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def write_failure(err: OSError) -> str | None:
    """The reason (`No space left on device`) when `err` is a failed write, else None. pyarrow and Ray workers
    carry the errno only in the message text (`[errno 28] ...`), so it is read from there too."""
    codes = {err.errno} | {int(code) for code in _ERRNO_IN_TEXT.findall(str(err))}
    found = sorted(codes & _WRITE_ERRNOS)
    return os.strerror(found[0]) if found else None
