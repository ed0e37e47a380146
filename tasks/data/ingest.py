"""Ingest: raw inputs -> Parquet shards of documents (id, text, source, meta, encoding).

Inputs are local paths, globs or fsspec URLs. A unit of work is one Parquet row group, one
streamed file (JSONL, CSV, TSV; maybe .gz/.zst), or a batch of whole files (text, mail, HTML);
each becomes one shard named by the digest of what it reads, so an unchanged input always maps
to the same shard name. Every input is kept or rejected with a reason; a file that cannot be
read is one `bad_file` rejection (or a ValueError, with on_bad_file=fail). The formats
themselves are read in tasks/data/readers.py.
"""

import hashlib
import itertools
import logging
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import core_schema

from infra import storage
from infra.files import partial_path
from infra.shard_cache import cached_map
from infra.stage import Manifest, fingerprint, output_location, run_stage
from tasks.data.readers import (
    KINDS,
    STREAMED,
    BadFile,
    InputFile,
    ReadOptions,
    Record,
    file_kind,
    read_file,
)
from tasks.data.shards import (
    REJECTED_SCHEMA,
    merge_stats,
    read_table,
    shard_paths,
    shard_stats,
)

VERSION = "2"
log = logging.getLogger(__name__)
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                        ("meta", pa.string()), ("encoding", pa.string())])
_GLOB_CHARS = re.compile(r"[*?\[]")
# fsspec's memory:// lives in this process: Ray workers would find it empty.
DRIVER_ONLY_PROTOCOLS = {"memory"}


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
        ".html/.htm, .jsonl (.gz/.zst), .csv/.tsv (.gz/.zst), .parquet"))
    text_column: str = Field("text", description="column (Parquet, CSV) or key (JSONL) holding the text")
    id_column: str = Field("id", description="column or key with a document id; file path and row when absent")
    files_per_shard: int = Field(64, ge=1, description="whole files (text, mail, HTML) grouped into one shard")
    detect_mail: bool = Field(True, description="read .txt and suffix-less files that start with mail headers as mail")
    on_bad_file: Literal["skip", "fail"] = Field("skip", description=(
        "a file that cannot be read (corrupt Parquet, truncated .gz/.zst): skip = reject it as bad_file and go on, "
        "fail = stop with an error naming the file"))

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
        found = sorted(p for p in fs.glob(fs_path) if fs.isfile(p))
        if not found:
            raise ValueError(f"{path}: no file matches this pattern")
        return [_input_file(fs, p, root) for p in found if not _hidden(p, root)]
    if fs.isdir(fs_path):
        return [_input_file(fs, p, fs_path) for p in sorted(fs.find(fs_path)) if not _hidden(p, fs_path)]
    if not fs.isfile(fs_path):
        raise ValueError(f"{path}: no such file or folder")
    file = _input_file(fs, fs_path, posixpath.dirname(fs_path))
    if file.kind == "unknown":
        raise ValueError(f"{path}: unsupported input type (expected one of {sorted(KINDS)}, "
                         ".gz/.zst of .jsonl/.csv/.tsv, a suffix-less mail, or a folder)")
    return [file]


def _hidden(path: str, root: str) -> bool:
    # .git, .DS_Store, editors' swap files: never corpus content, and .git alone holds thousands of binary objects
    return any(part.startswith(".") for part in posixpath.relpath(path, root).split("/"))


def _input_file(fs: fsspec.AbstractFileSystem, path: str, root: str) -> InputFile:
    url = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    rel = posixpath.join(posixpath.basename(root.rstrip("/")), posixpath.relpath(path, root))
    return InputFile(url=url, rel=rel, kind=file_kind(posixpath.basename(path)))


def with_digests(files: list[InputFile]) -> list[InputFile]:
    """Files with their content's sha256, read in threads: hashing waits on I/O and releases the GIL."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(_sha256, (f.url for f in files)))
    return [replace(f, digest=d) for f, d in zip(files, digests)]


def _sha256(url: str) -> str:
    try:
        with fsspec.open(url, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as err:  # the unit that reads it reports the file as bad_file, with this cause
        return f"unreadable: {err}"


# ---- units of work -------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """What one Ray task reads and one shard holds: whole files, one streamed file, or one Parquet row group."""

    files: tuple[InputFile, ...]
    row_group: int | None = None
    first_row: int = 0  # rows before this row group: Parquet ids count rows in the whole file
    problem: str | None = None  # why the file could not even be planned (an unreadable Parquet footer)

    @property
    def digest(self) -> str:
        """Names the unit's shard: the same input (content, place, row group) gives the same name."""
        key = [(f.rel, f.digest) for f in self.files] + [self.row_group]
        return hashlib.sha256(repr(key).encode()).hexdigest()[:16]

    @property
    def in_driver(self) -> bool:
        return any(fsspec.core.split_protocol(f.url)[0] in DRIVER_ONLY_PROTOCOLS for f in self.files)


def plan_units(files: list[InputFile], cfg: IngestConfig) -> list[Unit]:
    whole = [f for f in files if f.kind not in STREAMED | {"parquet"}]
    units = [Unit(batch) for batch in content_defined_batches(whole, cfg.files_per_shard)]
    for f in files:
        if f.kind == "parquet":
            units += _parquet_units(f, cfg)
        elif f.kind in STREAMED:
            units.append(Unit((f,)))
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
    try:
        with fsspec.open(file.url, "rb") as f:
            parquet = pq.ParquetFile(f)
            metadata, columns = parquet.metadata, parquet.schema_arrow.names
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError ... for a file that is no Parquet
        return _bad_parquet(file, f"not a readable Parquet file ({type(err).__name__}: {err})", cfg)
    if cfg.text_column not in columns:
        return _bad_parquet(file, f"no column {cfg.text_column!r} in {columns[:8]} (set ingest.text_column)", cfg)
    num_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    first_rows = itertools.accumulate([0] + num_rows[:-1])
    units = [Unit((file,), row_group=g, first_row=first) for g, first in enumerate(first_rows) if num_rows[g]]
    return units or [Unit((file,))]  # no rows: one unit that reports the file as empty


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
        for record in read_file(file, cfg.read_options(), unit.row_group, unit.first_row):
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
    if num_records == 0 and unit.row_group is None:
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


class ShardWriter:
    """Appends rows to a Parquet file batch by batch and renames it into place at the end.

    A unit's memory is one batch however big its file (a multi-GB .jsonl.zst is one unit), and
    like write_parquet_atomic, a reader never sees a half-written shard.
    """

    def __init__(self, path: Path, schema: pa.Schema, max_rows: int = 1024, max_chars: int = 64 << 20):
        self.path, self.schema, self.max_rows, self.max_chars = path, schema, max_rows, max_chars
        self.partial = partial_path(path)
        self.rows, self.num_chars = [], 0

    def __enter__(self) -> "ShardWriter":
        # min/max statistics of the text column help no reader, and cost pyarrow five copies of the longest
        # document in memory (a 100 MB document: 1.2 GB to write its shard with them, 0.6 GB without)
        statistics = [name for name in self.schema.names if name != "text"]
        self.writer = pq.ParquetWriter(self.partial, self.schema, compression="zstd", write_statistics=statistics)
        return self

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.num_chars += len(row["text"] or "")
        if len(self.rows) >= self.max_rows or self.num_chars >= self.max_chars:
            self._flush()

    def _flush(self) -> None:
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows, self.num_chars = [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.rows:
            self._flush()
        self.writer.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


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


def ingest_fingerprint(cfg: IngestConfig) -> tuple[str, list[InputFile]]:
    """Hashes the inputs' content (and their names below the input roots: ids are made of them)."""
    files = with_digests(list_input_files(cfg.paths))
    digests = [f"{f.rel}:{f.digest}" for f in files]
    return fingerprint("ingest", VERSION, cfg.model_dump(mode="json", exclude={"paths"}), digests), files


def run_units(units: list[Unit], cfg: IngestConfig, cache_dir: str) -> list[dict]:
    """Units on Ray (except those whose bytes live in this process: memory://), each memoised by its input digest:
    when files are added, only theirs are read."""
    settings = cfg.model_dump(mode="json", exclude={"paths"})
    keyed = [(fingerprint("ingest-unit", VERSION, settings, [u.digest]), u) for u in units]
    return cached_map(ingest_unit, keyed, "ingest", cache_dir, indexed=False,
                      in_driver=lambda u: u.in_driver, cfg=cfg)


def ingest(cfg: IngestConfig, workdir: str) -> Manifest:
    fp, files = ingest_fingerprint(cfg)

    def build(folder: Path) -> dict:
        per_shard = run_units(plan_units(files, cfg), cfg, storage.join(workdir, "ingest", ".units"))
        counts, stats = merge_stats(per_shard)
        check_unique_ids(output_location())
        return {"counts": counts, "stats": stats | {"num_files": len(files)}}

    return run_stage(workdir, "ingest", fp, build)


def check_unique_ids(folder: str) -> None:
    seen = Counter(doc_id for path in shard_paths(folder) for doc_id in read_table(path, columns=["id"]).column("id").to_pylist())
    duplicated = [doc_id for doc_id, n in seen.items() if n > 1]
    if duplicated:
        raise ValueError(f"document ids are not unique across the inputs, e.g. {duplicated[:3]}: set ingest.id_column")
