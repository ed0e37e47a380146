"""Ingest: raw inputs -> Parquet shards of documents (id, text, source).

A unit of work is one Parquet row group, one JSONL file, or a batch of text files;
each becomes one shard. Documents with no usable text are rejected with a reason.
"""

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from tasks.parallel import map_shards
from tasks.shards import merge_stats, rejected_table, shard_paths, shard_stats, write_parquet_atomic
from tasks.stage import Manifest, file_digest, fingerprint, run_stage

VERSION = "1"
TEXT_SUFFIXES = {".txt", ".md", ".rst"}
SUPPORTED = TEXT_SUFFIXES | {".parquet", ".jsonl"}
DOC_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])


class IngestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[Path] = Field(min_length=1, description="files or folders of .parquet, .jsonl, .txt/.md/.rst")
    text_column: str = Field("text", description="column (Parquet) or key (JSONL) holding the text")
    id_column: str = Field("id", description="column or key with a document id; row number when absent")
    files_per_shard: int = Field(64, ge=1, description="text files grouped into one shard")


def list_input_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUPPORTED)
        elif path.suffix in SUPPORTED:
            files.append(path)
        else:
            raise ValueError(f"{path}: unsupported input type (expected one of {sorted(SUPPORTED)} or a folder)")
    return files


def plan_units(files: list[Path], files_per_shard: int) -> list[dict]:
    """Split the inputs into units of work; each unit knows the content digest of what it reads."""
    units, text_files = [], [f for f in files if f.suffix in TEXT_SUFFIXES]
    for f in files:
        if f.suffix == ".parquet":
            for rg in range(pq.ParquetFile(f).num_row_groups):
                units.append({"kind": "parquet", "files": [str(f)], "row_group": rg})
        elif f.suffix == ".jsonl":
            units.append({"kind": "jsonl", "files": [str(f)]})
    for start in range(0, len(text_files), files_per_shard):
        units.append({"kind": "text", "files": [str(f) for f in text_files[start : start + files_per_shard]]})
    return units


def read_unit(unit: dict, cfg: IngestConfig) -> list[dict]:
    """Raw records of one unit: dicts with id, text (maybe missing or not a string), source."""
    if unit["kind"] == "parquet":
        path = Path(unit["files"][0])
        table = pq.ParquetFile(path).read_row_group(unit["row_group"])
        rows = table.to_pylist()
        return [_record(r, path, f"rg{unit['row_group']}-{i}", cfg) for i, r in enumerate(rows)]
    if unit["kind"] == "jsonl":
        path = Path(unit["files"][0])
        with path.open(encoding="utf-8", errors="replace") as f:
            return [_jsonl_record(line, path, n, cfg) for n, line in enumerate(f, start=1) if line.strip()]
    return [{"id": f"{Path(f).parent.name}/{Path(f).name}", "text": Path(f).read_text(encoding="utf-8", errors="replace"),
             "source": Path(f).parent.name} for f in unit["files"]]


def _record(row: dict, path: Path, position: str, cfg: IngestConfig) -> dict:
    doc_id = row.get(cfg.id_column)
    return {"id": str(doc_id) if doc_id is not None else f"{path.stem}/{position}",
            "text": row.get(cfg.text_column), "source": str(row.get("source") or path.stem)}


def _jsonl_record(line: str, path: Path, line_number: int, cfg: IngestConfig) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        return {"id": f"{path.stem}/line{line_number}", "text": None, "source": path.stem,
                "error": f"{path}:{line_number}: invalid JSON ({err.msg})"}
    if not isinstance(row, dict):
        return {"id": f"{path.stem}/line{line_number}", "text": None, "source": path.stem,
                "error": f"{path}:{line_number}: expected a JSON object"}
    return _record(row, path, f"line{line_number}", cfg)


def ingest_unit(item: tuple[int, dict], out_dir: str, cfg: IngestConfig) -> dict:
    index, unit = item
    kept, rejected, reasons = [], [], Counter()
    for rec in read_unit(unit, cfg):
        text = rec["text"]
        reason = "invalid_record" if rec.get("error") else "missing_text" if not isinstance(text, str) else "empty_text" if not text.strip() else None
        if reason:
            reasons[reason] += 1
            rejected.append({"id": rec["id"], "text": text if isinstance(text, str) else None, "source": rec["source"],
                             "reason": reason, "detail": rec.get("error") or f"{cfg.text_column!r} is {text!r:.40}"})
        else:
            kept.append({"id": rec["id"], "text": text, "source": rec["source"]})
    name = f"shard-{index:05d}"
    write_parquet_atomic(pa.Table.from_pylist(kept, schema=DOC_SCHEMA), Path(out_dir) / f"{name}.parquet")
    write_parquet_atomic(rejected_table(rejected), Path(out_dir) / f"rejected-{index:05d}.parquet")
    return shard_stats(name, len(kept) + len(rejected), len(kept), reasons,
                       bytes=sum(len(d["text"].encode()) for d in kept))


def ingest_fingerprint(cfg: IngestConfig) -> tuple[str, list[Path]]:
    files = list_input_files(cfg.paths)
    digests = [f"{f.name}:{file_digest(f)}" for f in files]
    return fingerprint("ingest", VERSION, cfg.model_dump(mode="json", exclude={"paths"}), digests), files


def ingest(cfg: IngestConfig, workdir: Path) -> Manifest:
    fp, files = ingest_fingerprint(cfg)

    def build(folder: Path) -> dict:
        units = plan_units(files, cfg.files_per_shard)
        per_shard = map_shards(ingest_unit, list(enumerate(units)), "ingest", out_dir=str(folder), cfg=cfg)
        counts, stats = merge_stats(per_shard)
        check_unique_ids(folder)
        return {"counts": counts, "stats": stats | {"num_files": len(files)}}

    return run_stage(workdir, "ingest", fp, build)


def check_unique_ids(folder: Path) -> None:
    seen = Counter(doc_id for path in shard_paths(folder) for doc_id in pq.read_table(path, columns=["id"]).column("id").to_pylist())
    duplicated = [doc_id for doc_id, n in seen.items() if n > 1]
    if duplicated:
        raise ValueError(f"document ids are not unique across the inputs, e.g. {duplicated[:3]}: set ingest.id_column")


@task(name="ingest", retries=1)
def ingest_task(cfg: IngestConfig, workdir: Path) -> Manifest:
    return ingest(cfg, workdir)
