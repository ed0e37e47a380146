"""The stage runner: content-addressed outputs, manifests, and writes a killed run cannot half-finish.

A stage's output lives under <workdir>/<stage>/<fingerprint>/. The fingerprint hashes the stage
name, its code (`infra/code_hash.py`), its normalized config and its inputs' fingerprints. The workdir may be a
local folder or an object-store URL (`infra/storage.py`). On a local disk an output is built in a
hidden staging folder and renamed into place with manifest.json inside. An object store cannot
rename a folder atomically; there every attempt writes its files under its own prefix,
<fingerprint>/attempt-<id>/, and commits by writing <fingerprint>/manifest.json last, naming that
attempt. Either way a fingerprint with a manifest is finished, and nothing else is ever read.
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

from pydantic import BaseModel, Field, field_validator

from infra import storage
from infra.files import file_digest  # noqa: F401 - the stages' content key for local files

MANIFEST = "manifest.json"
# stages a run must rebuild even when a finished output with their fingerprint exists (`--force`)
_FORCED: ContextVar[frozenset[str]] = ContextVar("forced_stages", default=frozenset())
# where the attempt being built lands: Ray workers and server-side copies write there directly
_OUTPUT: ContextVar[str | None] = ContextVar("stage_output", default=None)
_BUILDING: ContextVar[str | None] = ContextVar("stage_building", default=None)
# a dry run (`tokenmill plan`): run_stage records what it would do here and builds nothing
_PLAN: ContextVar[list[dict] | None] = ContextVar("stage_plan", default=None)
# told of every output a run uses, built or reused (the pipeline records them for gc, `infra/runs.py`)
_ON_USE: ContextVar[Callable[[str, str], None] | None] = ContextVar("stage_on_use", default=None)


def output_location() -> str:
    """The location (local folder or URL) of the attempt a stage is building; only inside `run_stage`."""
    location = _OUTPUT.get()
    if location is None:
        raise RuntimeError("output_location() is only known while run_stage builds an output")
    return location


def rebuilding() -> bool:
    """Whether the stage being built was forced (`--force`): then its per-unit caches are rebuilt too, not linked."""
    return _BUILDING.get() in _FORCED.get()


@contextmanager
def planning() -> Iterator[list[dict]]:
    """Stage functions called inside compute their fingerprints as usual, but run_stage only records, for each,
    whether it would reuse or build an output and why, and hands on a manifest with the new fingerprint."""
    recorded: list[dict] = []
    token = _PLAN.set(recorded)
    try:
        yield recorded
    finally:
        _PLAN.reset(token)


@contextmanager
def recording_use(on_use: Callable[[str, str], None]) -> Iterator[None]:
    """Call on_use(stage, fingerprint) for every output run_stage hands out inside the block."""
    token = _ON_USE.set(on_use)
    try:
        yield
    finally:
        _ON_USE.reset(token)


def is_planning() -> bool:
    return _PLAN.get() is not None


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
    path: str  # <workdir>/<stage>/<fingerprint>: a local folder or a URL
    attempt: str | None = None  # the sub-folder holding the files (None: written before attempts existed)
    counts: dict[str, int] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)  # role -> path relative to `root`
    cached: bool = False
    seconds: float = 0.0
    # what the fingerprint hashes: code version, module digests, library versions, config, input fingerprints
    lineage: dict[str, Any] = Field(default_factory=dict)
    why: list[str] = Field(default_factory=list)  # why it was built: what differs from the stage's previous output

    @field_validator("path", mode="before")
    @classmethod
    def _path_as_text(cls, path: Any) -> Any:
        return os.fspath(path) if isinstance(path, os.PathLike) else path

    @property
    def root(self) -> str:
        """The folder (or URL prefix) this output's files are in."""
        return storage.join(self.path, self.attempt) if self.attempt else self.path

    def file(self, role: str) -> str:
        return storage.join(self.root, self.files[role])

    def local_file(self, role: str) -> Path:
        """The file as a local path (a node-local copy when the workdir is remote)."""
        return storage.local_file(self.file(role))

    def roles(self, prefix: str) -> list[str]:
        """The roles starting with `prefix`, in order: the shards of a split (`train-00000`, `train-00001`, ...)."""
        return sorted(role for role in self.files if role.startswith(prefix))

    def local_files(self, prefix: str) -> list[Path]:
        """The files of `roles(prefix)` as local paths (node-local copies when the workdir is remote)."""
        return [self.local_file(role) for role in self.roles(prefix)]

    def local_root(self) -> Path:
        """All of the output as a local folder (a node-local copy when the workdir is remote)."""
        return storage.local_folder(self.root)


class Fingerprint(str):
    """A fingerprint that remembers what it hashes; the manifest keeps that as the output's lineage."""

    lineage: dict[str, Any]


def fingerprint(stage: str, code: str, config: Any, inputs: list[str]) -> Fingerprint:
    """`code` is the stage's code version (`infra.code_hash.stage_code`): its modules and the library versions."""
    payload = json.dumps({"stage": stage, "version": code, "config": config, "inputs": sorted(inputs)},
                         sort_keys=True, default=str)
    fp = Fingerprint(hashlib.sha256(payload.encode()).hexdigest()[:16])
    fp.lineage = {"stage": stage, "code": str(code), "modules": getattr(code, "modules", {}),
                  "libraries": getattr(code, "libraries", {}), "config": json.loads(json.dumps(config, default=str)),
                  "inputs": sorted(inputs)}
    return fp


def read_manifest(folder: str) -> Manifest | None:
    """The committed manifest in <workdir>/<stage>/<fingerprint>, or None when that output is unfinished."""
    location = storage.join(folder, MANIFEST)
    if not storage.exists(location):
        return None
    return Manifest.model_validate_json(storage.read_text(location)).model_copy(update={"path": folder})


def latest_output(workdir: str, stage: str) -> Manifest | None:
    """The most recently committed output of `stage` under `workdir` (local or remote), or None."""
    committed = storage.glob_manifests(storage.join(workdir, stage), MANIFEST)
    if not committed:
        return None
    newest = max(committed, key=storage.modified)
    return read_manifest(newest.rsplit("/", 1)[0])


def run_stage(workdir: str, stage: str, fp: str, build: Callable[[Path], dict]) -> Manifest:
    """Return the finished output for `fp`, building it first if no complete one exists.

    `build(folder)` writes the stage's files into a local `folder` and returns the manifest fields it knows
    (counts, stats, files). On a local disk the output is built in a hidden staging folder and renamed into
    place with its manifest inside; on an object store the files land under a new attempt prefix and the
    manifest naming that attempt is written last. Either way a failed build leaves nothing a reader trusts.
    """
    from infra.lineage import (
        explain,  # it reads manifests: imported here, where both modules are complete
    )

    folder = storage.join(workdir, stage, fp)
    forced = stage in _FORCED.get()
    done = None if forced else read_manifest(folder)
    lineage = getattr(fp, "lineage", {})
    if (plan := _PLAN.get()) is not None:
        planned = {entry["fingerprint"]: entry["stage"] for entry in plan}
        why = [f"output {fp} exists"] if done else explain(workdir, stage, lineage, forced, planned)
        plan.append({"stage": stage, "fingerprint": str(fp), "action": "reuse" if done else "run", "why": why})
        return done or Manifest(stage=stage, fingerprint=str(fp), path=folder, lineage=lineage, why=why)
    if (on_use := _ON_USE.get()) is not None:
        on_use(stage, str(fp))  # before building: the run's lease covers the output it is making
    if done is not None:
        return done.model_copy(update={"cached": True, "seconds": 0.0})
    why = explain(workdir, stage, lineage, forced)
    remote = storage.is_remote(folder)
    attempt = storage.new_attempt() if remote else None
    target = storage.join(folder, attempt) if remote else storage.join(workdir, stage, f".{fp}.partial-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    token, building = _OUTPUT.set(target), _BUILDING.set(stage)
    try:
        with storage.writing(target) as local:
            fields = build(local)
            manifest = Manifest(stage=stage, fingerprint=str(fp), path=folder, attempt=attempt,
                                seconds=time.perf_counter() - started, lineage=lineage, why=why, **fields)
            if not remote:
                (local / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        if remote:
            storage.write_text(storage.join(folder, MANIFEST), manifest.model_dump_json(indent=2))
        else:
            commit_local(Path(target), Path(folder), stage)
    except OSError as err:
        if (reason := write_failure(err)) and not isinstance(err, OutputNotWritable):
            # pyarrow's and Ray's messages say "no space" but not where: name the folder the user must free
            raise OutputNotWritable(f"{stage}: cannot write its output under {storage.join(workdir, stage)}: "
                                    f"{reason}") from err
        raise
    finally:
        _OUTPUT.reset(token)
        _BUILDING.reset(building)
        if not remote:
            shutil.rmtree(target, ignore_errors=True)
    return manifest


def commit_local(staging: Path, final: Path, stage: str) -> None:
    """Rename a finished staging folder into place (one atomic step on a local disk)."""
    if (final / MANIFEST).exists() and stage not in _FORCED.get():
        return  # another run finished this fingerprint meanwhile: its output is as good as ours, and may be in use
    if final.exists():  # a leftover without a manifest (or an output --force rebuilds): replaced
        shutil.rmtree(final)
    staging.rename(final)


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
