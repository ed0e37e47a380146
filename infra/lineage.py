"""Lineage: from any output back to the input files and settings that made it, read from manifests alone.

Each manifest records what its fingerprint hashed (`Manifest.lineage`): the stage's code version and
library versions, its config, and its inputs — the fingerprints of upstream outputs, or, for ingest,
the input files by name and content digest. Following the inputs through the work directory gives
the whole chain; nothing is recomputed and nothing is imported but the manifests.
"""

import posixpath
import re

from infra import storage
from infra.stage import MANIFEST, Manifest, latest_output, read_manifest


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


# ---- why a stage runs: the difference between two lineages -------------------------------------------------


def _flat(config: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, object] = {}
    for key, value in config.items():
        flat |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def _files(inputs: list[str]) -> dict[str, str]:
    """Input files by name (`corpus/a.txt:sha256`); outputs' fingerprints are not files."""
    return dict(entry.rsplit(":", 1) for entry in inputs if ":" in entry)


def changes(old: dict, new: dict, stage_of: dict[str, str]) -> list[str]:
    """Why an output with lineage `new` is not the one with lineage `old`: each input, config field, module and
    library version that differs. `stage_of` names the stage of an upstream fingerprint, where known."""
    if not old:
        return ["the newest earlier output predates recorded lineage"]
    reasons = []
    old_inputs, new_inputs = set(old.get("inputs", [])), set(new.get("inputs", []))
    old_files, new_files = _files(list(old_inputs)), _files(list(new_inputs))
    for name in sorted(new_files.keys() | old_files.keys()):
        if name not in old_files:
            reasons.append(f"input file {name} is new")
        elif name not in new_files:
            reasons.append(f"input file {name} is gone")
        elif old_files[name] != new_files[name]:
            what = "is not hashed yet (new size or mtime)" if new_files[name].startswith("unhashed") else "changed"
            reasons.append(f"input file {name} {what}")
    for fp in sorted(new_inputs - old_inputs):
        if ":" not in fp:
            upstream = stage_of.get(fp)
            reasons.append(f"input from {upstream} is a new output ({fp})" if upstream else f"input {fp} is new")
    old_config, new_config = _flat(old.get("config")), _flat(new.get("config"))
    for key in sorted(old_config.keys() | new_config.keys()):
        if old_config.get(key, "(unset)") != new_config.get(key, "(unset)"):
            reasons.append(f"config {key}: {old_config.get(key, '(unset)')!r} -> {new_config.get(key, '(unset)')!r}")
    old_modules, new_modules = old.get("modules", {}), new.get("modules", {})
    for module in sorted(old_modules.keys() | new_modules.keys()):
        if old_modules.get(module) != new_modules.get(module):
            state = "is new" if module not in old_modules else "is gone" if module not in new_modules else "changed"
            reasons.append(f"code {module} {state}")
    old_libs, new_libs = old.get("libraries", {}), new.get("libraries", {})
    for name in sorted(old_libs.keys() | new_libs.keys()):
        if old_libs.get(name) != new_libs.get(name):
            reasons.append(f"library {name} {old_libs.get(name, 'absent')} -> {new_libs.get(name, 'absent')}")
    return reasons or ["the fingerprint differs (stage name or an input's order)"]


def explain(workdir: str, stage: str, lineage: dict, forced: bool, planned: dict[str, str] | None = None) -> list[str]:
    """Why `stage` builds an output of this lineage: forced, its first output, or how it differs from the newest
    finished output of the stage (by manifest time). `planned` names the stages of outputs a dry run has not built."""
    if forced:
        return ["forced (--force)"]
    previous = latest_output(workdir, stage)
    if previous is None:
        return ["no earlier output of this stage"]
    fresh = set(lineage.get("inputs", [])) - set(previous.lineage.get("inputs", []))
    folders = stage_folders(workdir) if fresh else []
    stage_of = {fp: m.stage for fp in fresh if (m := find_output(workdir, fp, folders)) is not None} | (planned or {})
    return changes(previous.lineage, lineage, stage_of)
