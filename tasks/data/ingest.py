"""Ingest: raw inputs -> Parquet shards of documents (id, text, source, meta, encoding).

Inputs are local paths, globs or fsspec URLs. Ray workers hash the inputs (the stage's fingerprint),
in the same read finding where a large file's units may start; a file whose size, mtime and inode (or
ETag and version, on an object store) are unchanged reuses its cached digest and is not read again.
A unit of work is a batch of whole files (text, mail, HTML), or a part of about `unit_bytes` of one
streamed (JSONL, CSV, TSV; maybe .gz/.bz2/.zst/.xz) or Parquet file; each becomes one shard named by the
digest of what it reads, so an unchanged input always maps to the same shard name, and a record's id
does not depend on the part that reads it. Every input is kept or rejected with a reason; a file that
cannot be read is one `bad_file` rejection (or a ValueError, with on_bad_file=fail). The formats
themselves are read in tasks/data/readers.py.
"""

import hashlib
import json
import logging
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import core_schema

from infra import storage
from infra.code_hash import stage_code
from infra.ray_map import cluster_cpus, map_shards
from infra.shard_cache import cached_map
from infra.shuffle import exchange, partition_of, split_by
from infra.stage import Manifest, fingerprint, is_planning, output_location, run_stage
from tasks.data.readers import (
    KINDS,
    STREAMED,
    BadFile,
    InputFile,
    Layout,
    Part,
    ReadOptions,
    Record,
    file_kind,
    hash_and_layout,
    parquet_layout,
    read_file,
)
from tasks.data.shards import (
    REJECTED_SCHEMA,
    ShardWriter,
    merge_stats,
    read_table,
    shard_paths,
    shard_stats,
)

# what decides this stage's output bytes besides its settings and inputs (replaces a hand-bumped VERSION)
CODE = stage_code(__name__, libraries=("pyarrow", "fsspec", "charset-normalizer", "resiliparse", "zstandard"))
log = logging.getLogger(__name__)
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                        ("meta", pa.string()), ("encoding", pa.string())])
_GLOB_CHARS = re.compile(r"[*?\[]")
# fsspec's memory:// lives in this process: Ray workers would find it empty.
DRIVER_ONLY_PROTOCOLS = {"memory"}
# One hashing task reads up to this many files or bytes: small files share a task, a big one has its own.
HASH_BATCH_FILES, HASH_BATCH_BYTES = 64, 256 << 20


class InputPath(str):
    """An entry of ingest.paths: a local path, a glob (`data/**/*.jsonl.gz`) or an fsspec URL."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        as_text = core_schema.no_info_before_validator_function(
            lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v, core_schema.str_schema())
        return core_schema.no_info_after_validator_function(cls._parse, as_text)

    @classmethod
    def _parse(cls, value: str) -> "InputPath":
        protocol = fsspec.core.split_protocol(value)[0] or "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as err:  # "Install s3fs to access S3", "Protocol not known"
            raise ValueError(f"{value}: {err}") from None
        return cls(value)

    def exists(self) -> bool:
        """Whether there is something to read: a file, a folder, or a glob's match."""
        fs, fs_path = fsspec.core.url_to_fs(self)
        return bool(fs.glob(fs_path)) if _GLOB_CHARS.search(fs_path) else fs.exists(fs_path)


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[InputPath] = Field(min_length=1, description=(
        "files, folders, globs or fsspec URLs (file://, memory://, s3:// ...) of .txt/.md/.rst, .eml and raw mail, "
        ".html/.htm, .jsonl and .csv/.tsv (plain or .gz/.bz2/.zst/.xz), .parquet"))
    text_column: str = Field("text", description="column (Parquet, CSV) or key (JSONL) holding the text")
    id_column: str = Field("id", description="column or key with a document id; file path and row when absent")
    files_per_shard: int = Field(64, ge=1, description="whole files (text, mail, HTML) grouped into one shard")
    detect_mail: bool = Field(True, description="read .txt and suffix-less files that start with mail headers as mail")
    on_bad_file: Literal["skip", "fail"] = Field("skip", description=(
        "a file that cannot be read (corrupt Parquet, truncated .gz/.zst/.bz2/.xz): skip = reject it as bad_file and go on, "
        "fail = stop with an error naming the file"))
    unit_bytes: int = Field(64 << 20, ge=1, description=(
        "about how many bytes one worker reads: a larger JSONL/CSV/TSV file (uncompressed size) is split at record "
        "starts, a Parquet file into groups of row groups (a bigger row group stays whole); ids are the same either "
        "way. A part of a compressed file still decompresses the stream from its start"))
    rehash: bool = Field(False, description=(
        "re-read every input to hash it instead of trusting the digests cached by size, mtime and inode (ETag and "
        "version on an object store); `tokenmill run --rehash`. Not part of the fingerprint: it changes no output"))

    def read_options(self) -> ReadOptions:
        return ReadOptions(text_column=self.text_column, id_column=self.id_column, detect_mail=self.detect_mail)


# ---- what to read --------------------------------------------------------------------------


def list_input_files(paths: list[str]) -> list[InputFile]:
    """Every file the inputs name, each with the relative name its documents' ids start with."""
    files = {}
    for path in paths:
        for file in _expand(str(path)):
            files.setdefault(file.url, file)  # overlapping inputs (a folder and a file in it) read it once
    return list(files.values())


def _expand(path: str) -> list[InputFile]:
    fs, fs_path = fsspec.core.url_to_fs(path)
    if _GLOB_CHARS.search(fs_path):
        root = fs_path[: _GLOB_CHARS.search(fs_path).start()].rpartition("/")[0] or "/"
        found = {p: info for p, info in fs.glob(fs_path, detail=True).items() if info["type"] == "file"}
        if not found:
            raise ValueError(f"{path}: no file matches this pattern")
        return [_input_file(fs, p, root, found[p]["size"]) for p in sorted(found) if not _hidden(p, root)]
    if fs.isdir(fs_path):
        found = fs.find(fs_path, detail=True)
        return [_input_file(fs, p, fs_path, found[p]["size"]) for p in sorted(found) if not _hidden(p, fs_path)]
    if not fs.isfile(fs_path):
        raise ValueError(f"{path}: no such file or folder")
    file = _input_file(fs, fs_path, posixpath.dirname(fs_path), fs.size(fs_path))
    if file.kind == "unknown":
        raise ValueError(f"{path}: unsupported input type (expected one of {sorted(KINDS)}, "
                         ".gz/.bz2/.zst/.xz of .jsonl/.csv/.tsv, a suffix-less mail, or a folder)")
    return [file]


def _hidden(path: str, root: str) -> bool:
    # .git, .DS_Store, editors' swap files: never corpus content, and .git alone holds thousands of binary objects
    return any(part.startswith(".") for part in posixpath.relpath(path, root).split("/"))


def _input_file(fs: fsspec.AbstractFileSystem, path: str, root: str, size: int | None) -> InputFile:
    url = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    rel = posixpath.join(posixpath.basename(root.rstrip("/")), posixpath.relpath(path, root))
    return InputFile(url=url, rel=rel, kind=file_kind(posixpath.basename(path)), size=size or 0)


def with_digests(files: list[InputFile], cfg: IngestConfig, cache_dir: str | None) -> tuple[list[InputFile], dict]:
    """Files with their content's sha256 and Layout, hashed on Ray workers (memory:// ones here), and how many
    were read; with a `cache_dir`, a file whose identity is unchanged reuses its digest without being read."""
    found = {} if cfg.rehash or not cache_dir else cached_digests(files, cache_dir, cfg.unit_bytes)
    todo = [f for f in files if f.url not in found]
    if is_planning():  # a dry run reads no file: one it cannot vouch for is named by what it knows of it
        found |= {f.url: (f"unhashed-{f.size}", Layout(), True) for f in todo}
        todo = []
    in_driver = [f for f in todo if _in_driver(f)]
    on_ray = [f for f in todo if not _in_driver(f)]
    shared = {"cache_dir": cache_dir, "unit_bytes": cfg.unit_bytes, "rehash": cfg.rehash}
    batches = hash_batches(on_ray)
    results = map_shards(hash_batch, batches, "hashing inputs", **shared) if batches else []
    results.append(hash_batch(in_driver, **shared))
    found |= {f.url: result for batch, batch_results in zip(batches + [in_driver], results)
              for f, result in zip(batch, batch_results)}
    num_hashed = sum(found[f.url][2] for f in files)
    counts = {"files_hashed": num_hashed, "digests_reused": len(files) - num_hashed}
    return [replace(f, digest=found[f.url][0], layout=found[f.url][1]) for f in files], counts


def cached_digests(files: list[InputFile], cache_dir: str, unit_bytes: int) -> dict[str, tuple]:
    """The files whose identity (stat, or ETag and version) matches a cached digest, looked up here in threads
    (a stat and a small read each; the bytes of the files are not read): when nothing changed, Ray never starts."""
    def lookup(file: InputFile) -> tuple | None:
        try:
            identity, _ = file_identity(file)
        except OSError:
            return None  # the worker that hashes it reports why it cannot be read
        cached = _cached_digest(_cache_entry(cache_dir, identity), identity, file, unit_bytes) if identity else None
        return (*cached, False) if cached else None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return {f.url: hit for f, hit in zip(files, pool.map(lookup, files)) if hit}


def _in_driver(file: InputFile) -> bool:
    return fsspec.core.split_protocol(file.url)[0] in DRIVER_ONLY_PROTOCOLS


def hash_batches(files: list[InputFile]) -> list[list[InputFile]]:
    """Consecutive files, up to HASH_BATCH_FILES or HASH_BATCH_BYTES a batch (a bigger file alone)."""
    batches, current, num_bytes = [], [], 0
    for f in files:
        if current and (len(current) >= HASH_BATCH_FILES or num_bytes + f.size > HASH_BATCH_BYTES):
            batches.append(current)
            current, num_bytes = [], 0
        current.append(f)
        num_bytes += f.size
    return batches + ([current] if current else [])


def hash_batch(files: list[InputFile], cache_dir: str | None, unit_bytes: int, rehash: bool) -> list[tuple]:
    """On a worker: (sha256, Layout, whether the file was read) for each file."""
    return [hash_file(f, cache_dir, unit_bytes, rehash) for f in files]


def hash_file(file: InputFile, cache_dir: str | None, unit_bytes: int, rehash: bool) -> tuple[str, Layout, bool]:
    try:
        identity, size = file_identity(file)
        entry = _cache_entry(cache_dir, identity) if cache_dir and identity else None
        if entry and not rehash and (cached := _cached_digest(entry, identity, file, unit_bytes)):
            return (*cached, False)
        digest, layout = hash_and_layout(file, size, unit_bytes)
    except OSError as err:  # the unit that reads it reports the file as bad_file, with this cause
        return f"unreadable: {err}", Layout(problem=f"cannot be read ({type(err).__name__}: {err})"), True
    if entry:
        record = {"identity": identity, "digest": digest, "unit_bytes": unit_bytes, "layout": asdict(layout)}
        storage.write_text(entry, json.dumps(record))
    return digest, layout, True


def file_identity(file: InputFile) -> tuple[list | None, int]:
    """What changes when a file's bytes do, read without reading them: (path, size, mtime_ns, inode) on a local disk,
    ETag and version on an object store (None when the store gives neither: then it is always read); and its size."""
    fs, path = fsspec.core.url_to_fs(file.url)
    if isinstance(fs, LocalFileSystem):
        stat = os.stat(path)  # before reading: a file changed while read has a newer mtime next time
        return ["local", path, stat.st_size, stat.st_mtime_ns, stat.st_ino], stat.st_size
    fs.invalidate_cache(path)  # s3fs answers info() from the listing it cached, which may predate a new upload
    info = fs.info(path)
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    version = info.get("VersionId") or info.get("generation") or ""
    return (["object", file.url, str(tag).strip('"'), str(version)] if tag else None), info.get("size") or 0


def _cache_entry(cache_dir: str, identity: list) -> str:
    return storage.join(cache_dir, hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32] + ".json")


def _cached_digest(entry: str, identity: list, file: InputFile, unit_bytes: int) -> tuple[str, Layout] | None:
    if not storage.exists(entry):
        return None
    record = json.loads(storage.read_text(entry))
    # a file's parts depend on unit_bytes; a text or mail file's digest does not
    if record["identity"] != identity or (file.kind in STREAMED | {"parquet"} and record["unit_bytes"] != unit_bytes):
        return None
    layout = record["layout"]
    parts = tuple(Part(**part) for part in layout["parts"])
    return record["digest"], Layout(parts, tuple(layout["columns"]), layout["problem"])


# ---- units of work -------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """What one Ray task reads and one shard holds: whole files, or one part of a streamed or Parquet file."""

    files: tuple[InputFile, ...]
    part: Part | None = None  # None: the whole of each file
    problem: str | None = None  # why the file could not even be planned (an unreadable Parquet footer)

    @property
    def digest(self) -> str:
        """Names the unit's shard: the same input (content, place, part) gives the same name."""
        key = [(f.rel, f.digest) for f in self.files] + [asdict(self.part) if self.part else None]
        return hashlib.sha256(repr(key).encode()).hexdigest()[:16]

    @property
    def in_driver(self) -> bool:
        return any(_in_driver(f) for f in self.files)


def plan_units(files: list[InputFile], cfg: IngestConfig) -> list[Unit]:
    """Units from the files' Layouts (found when they were hashed); a file without one is read whole, but for
    a Parquet file's footer, read here."""
    whole = [f for f in files if f.kind not in STREAMED | {"parquet"}]
    units = [Unit(batch) for batch in content_defined_batches(whole, cfg.files_per_shard)]
    for f in files:
        if f.kind == "parquet":
            units += _parquet_units(f, cfg)
        elif f.kind in STREAMED:
            units += [Unit((f,), part) for part in f.layout.parts] if f.layout and f.layout.parts else [Unit((f,))]
    return units


def content_defined_batches(files: list[InputFile], average: int) -> list[tuple[InputFile, ...]]:
    """Batches of about `average` files whose boundaries depend on the files' names, not their positions.

    A batch ends after a file whose name hashes to 0 mod `average`, so adding or removing files
    changes only the batches they fall into: the others keep their digests and their cached shards.
    Batches are capped at 4 x average files.
    """
    batches, current = [], []
    for f in files:
        current.append(f)
        boundary = int(hashlib.sha1(f.rel.encode()).hexdigest()[:8], 16) % average == 0
        if boundary or len(current) >= 4 * average:
            batches.append(tuple(current))
            current = []
    return batches + ([tuple(current)] if current else [])


def _parquet_units(file: InputFile, cfg: IngestConfig) -> list[Unit]:
    layout = file.layout
    if layout is None:
        with fsspec.open(file.url, "rb") as raw:
            layout = parquet_layout(raw, cfg.unit_bytes)
    if layout.problem:
        return _bad_parquet(file, layout.problem, cfg)
    if cfg.text_column not in layout.columns:
        return _bad_parquet(file, f"no column {cfg.text_column!r} in {list(layout.columns[:8])} "
                            "(set ingest.text_column)", cfg)
    return [Unit((file,), part) for part in layout.parts] or [Unit((file,))]


def _bad_parquet(file: InputFile, problem: str, cfg: IngestConfig) -> list[Unit]:
    if cfg.on_bad_file == "fail":
        raise ValueError(f"{file.url}: {problem} (ingest.on_bad_file=fail)")
    return [Unit((file,), problem=f"{file.url}: {problem}")]


# ---- one unit -> one shard -----------------------------------------------------------------


def unit_records(unit: Unit, cfg: IngestConfig) -> Iterator[Record]:
    for file in unit.files:
        yield from _file_records(file, unit, cfg)


def _file_records(file: InputFile, unit: Unit, cfg: IngestConfig) -> Iterator[Record]:
    """A file's records; one that breaks off ends with a bad_file rejection, or a ValueError under on_bad_file=fail."""
    num_records = 0
    try:
        if unit.problem:
            raise BadFile(unit.problem)
        for record in read_file(file, cfg.read_options(), unit.part):
            if record.reason == "bad_file" and cfg.on_bad_file == "fail":  # a corrupt row group
                raise BadFile(record.detail)
            num_records += 1
            yield record
    # Any exception: third-party parsers raise many kinds, and one file must not stop a corpus.
    # The detail keeps the exception's type, so a bug of ours still shows in the stats.
    except Exception as err:
        detail = str(err) if isinstance(err, BadFile) else f"{file.url}: {type(err).__name__}: {err}"
        if cfg.on_bad_file == "fail":
            raise ValueError(f"{detail} (ingest.on_bad_file=fail)") from err
        log.warning("skipped %s (ingest.on_bad_file=skip)", detail)  # replayed into the Prefect log
        yield Record(file.rel, None, file.source, reason="bad_file", detail=detail)
        return
    if num_records == 0 and unit.part is None:  # a part holds a record: the file is not empty
        yield Record(file.rel, None, file.source, reason="empty_text", detail=f"{file.url}: no records")


def rejection(record: Record, cfg: IngestConfig) -> tuple[str, str] | None:
    """(reason, detail) when the record is not kept."""
    if record.reason:
        return record.reason, record.detail
    where = f"{record.where}: " if record.where else ""  # a row's own id may not say which file it came from
    if not isinstance(record.text, str):
        return "missing_text", f"{where}{cfg.text_column!r} is {record.text!r:.40}"
    if not record.text.strip():
        return "empty_text", f"{where}{cfg.text_column!r} is {record.text!r:.40}"
    return None


def ingest_unit(unit: Unit, out_dir: str, cfg: IngestConfig) -> dict:
    name, reasons = unit.digest, Counter()
    num_kept = num_bytes = 0
    with (ShardWriter(Path(out_dir) / f"shard-{name}.parquet", DOC_SCHEMA) as kept,
          ShardWriter(Path(out_dir) / f"rejected-{name}.parquet", REJECTED_SCHEMA) as rejected):
        for record in unit_records(unit, cfg):
            failure = rejection(record, cfg)
            if failure:
                reasons[failure[0]] += 1
                text = record.text if isinstance(record.text, str) else None
                rejected.add({"id": record.id, "text": text, "source": record.source,
                              "reason": failure[0], "detail": failure[1]})
            else:
                num_kept += 1
                num_bytes += len(record.text.encode())
                kept.add({"id": record.id, "text": record.text, "source": record.source,
                          "meta": record.meta, "encoding": record.encoding})
    return shard_stats(f"shard-{name}", num_kept + sum(reasons.values()), num_kept, reasons, bytes=num_bytes)


# ---- the stage -----------------------------------------------------------------------------


def ingest_fingerprint(cfg: IngestConfig, workdir: str | None = None) -> tuple[str, list[InputFile], dict]:
    """Hashes the inputs' content (and their names below the input roots: ids are made of them); returns the
    fingerprint, the files with their digests, and how many files were read or had their digest reused."""
    cache_dir = storage.join(workdir, "ingest", ".digests") if workdir else None
    files, counts = with_digests(list_input_files(cfg.paths), cfg, cache_dir)
    log.info("ingest: %d input files hashed, %d digests reused", counts["files_hashed"], counts["digests_reused"])
    digests = [f"{f.rel}:{f.digest}" for f in files]
    settings = cfg.model_dump(mode="json", exclude={"paths", "rehash"})
    return fingerprint("ingest", CODE, settings, digests), files, counts


def run_units(units: list[Unit], cfg: IngestConfig, cache_dir: str) -> list[dict]:
    """Units on Ray (except those whose bytes live in this process: memory://), each memoised by its input digest:
    when files are added, only theirs are read."""
    settings = cfg.model_dump(mode="json", exclude={"paths", "rehash", "unit_bytes"})  # a unit's digest has its part
    keyed = [(fingerprint("ingest-unit", CODE, settings, [u.digest]), u) for u in units]
    return cached_map(ingest_unit, keyed, "ingest", cache_dir, indexed=False,
                      in_driver=lambda u: u.in_driver, cfg=cfg)


def ingest(cfg: IngestConfig, workdir: str) -> Manifest:
    fp, files, hashing = ingest_fingerprint(cfg, workdir)

    def build(folder: Path) -> dict:
        units = plan_units(files, cfg)
        per_shard = run_units(units, cfg, storage.join(workdir, "ingest", ".units"))
        counts, stats = merge_stats(per_shard)
        check_unique_ids(output_location(), in_driver=all(u.in_driver for u in units))
        return {"counts": counts | hashing, "stats": stats | {"num_files": len(files)}}

    return run_stage(workdir, "ingest", fp, build)


# ---- ids must be unique: an exchange by id, so no process holds every id -------------------


def check_unique_ids(folder: str, in_driver: bool = False) -> None:
    """ValueError naming a few repeated ids. Each shard's ids go to partitions by hash; each partition finds its
    repeats. In this process (one partition) when every unit ran here: their bytes were here anyway."""
    paths = shard_paths(folder)
    if not paths:
        return
    if in_driver:
        routed = [route_ids(0, [path], num_parts=1)[1][0] for path in paths]
        found = [repeated_ids(0, routed)[0]]
    else:
        num_parts = cluster_cpus()
        _, routed = exchange(route_ids, [[path] for path in paths], num_parts, "routing ids", num_parts=num_parts)
        found, _ = exchange(repeated_ids, routed, 0, "finding repeated ids")
    examples = [doc_id for summary in found for doc_id in summary["examples"]]
    if examples:
        num_repeated = sum(summary["num_repeated"] for summary in found)
        raise ValueError(f"document ids are not unique across the inputs ({num_repeated} repeat), "
                         f"e.g. {examples[:3]}: set ingest.id_column")


def route_ids(index: int, parts: list[str], num_parts: int) -> tuple[int, list[pa.Table]]:
    """One shard's ids, cut into one table per partition."""
    (path,) = parts
    ids = read_table(path, columns=["id"])
    return ids.num_rows, split_by(ids, partition_of(ids.column("id").to_pylist(), num_parts), num_parts)


def repeated_ids(index: int, parts: list[pa.Table]) -> tuple[dict, list]:
    """How many ids of this partition occur more than once, and a few of them."""
    counts = pc.value_counts(pa.concat_tables(parts).column("id"))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    return {"num_repeated": len(repeated), "examples": repeated.slice(0, 3).to_pylist()}, []
