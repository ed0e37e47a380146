"""Lineage: from any output back to the input files and settings that made it, read from manifests alone.

Each manifest records what its fingerprint hashed (`Manifest.lineage`): the stage's code version and
library versions, its config, and its inputs — the fingerprints of upstream outputs, or, for ingest,
the input files by name and content digest. Following the inputs through the work directory gives
the whole chain; nothing is recomputed and nothing is imported but the manifests.
"""

import posixpath
import re

from infra import storage
from infra.stage import MANIFEST, Manifest, read_manifest


def output_of(location: str) -> tuple[str, Manifest]:
    """(workdir, manifest) of the output that holds `location`: an output folder, an attempt in it, or a file."""
    folder = storage.normalize(location).rstrip("/")
    for _ in range(4):  # <workdir>/<stage>/<fp>/[attempt/]file
        if storage.exists(storage.join(folder, MANIFEST)):
            manifest = read_manifest(folder)
            return posixpath.dirname(posixpath.dirname(folder)), manifest
        folder = posixpath.dirname(folder)
    raise ValueError(f"{location}: not inside a finished stage output (no {MANIFEST} in it or up to 3 folders above)")


_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def find_output(workdir: str, fp: str, stages: list[str]) -> Manifest | None:
    if not _FINGERPRINT.fullmatch(fp):  # a file's name and digest, not an output
        return None
    for stage in stages:
        if (manifest := read_manifest(storage.join(workdir, stage, fp))) is not None:
            return manifest
    return None


def stage_folders(workdir: str) -> list[str]:
    fs, path = storage.filesystem(workdir)
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)
                  if fs.isdir(p) and not posixpath.basename(p.rstrip("/")).startswith("."))


def chain(workdir: str, manifest: Manifest) -> list[dict]:
    """The output and every output it was made from (each once, nearest first), each with its code, library
    versions, config, and the inputs that are not outputs (input files: `name:sha256`)."""
    stages, found, pending, seen = stage_folders(workdir), [], [manifest], set()
    while pending:
        current = pending.pop(0)
        if current.fingerprint in seen:
            continue
        seen.add(current.fingerprint)
        upstream, leaves = [], []
        for entry in current.lineage.get("inputs", []):
            (upstream if (up := find_output(workdir, entry, stages)) is not None else leaves).append(up or entry)
        pending += upstream
        found.append({"stage": current.stage, "fingerprint": current.fingerprint, "path": current.path,
                      "code": current.lineage.get("code"), "libraries": current.lineage.get("libraries", {}),
                      "config": current.lineage.get("config"), "from": [m.fingerprint for m in upstream],
                      "inputs": leaves, "recorded": bool(current.lineage)})
    return found
