"""`tokenmill bench data`: throughput of the data stages, with two baselines measured in the same run.

(a) bare `tokenizers` `encode_batch` over the same deduplicated texts: the tokenization limit
    our tokenize+pack stage is held against;
(b) HF `datasets.map(num_proc=cores)` running the same cleaning functions and the same
    tokenizer over the same ingested documents: the everyday alternative our clean → dedup →
    tokenize+pack path is held against (it does not deduplicate, so it does less work).
"""

import os
import shutil
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from infra.ray_runtime import ensure_ray
from tasks.data.clean import CleanConfig, clean
from tasks.data.dedup import DedupConfig, dedup
from tasks.data.ingest import IngestConfig, ingest
from tasks.data.pack import PackConfig, tokenize_and_pack
from tasks.data.shards import shard_paths
from tasks.data.tokenizer import TokenizerConfig, train_tokenizer


def input_bytes(paths: list[Path]) -> int:
    """Bytes of input text: a file's size, but a Parquet file's text column uncompressed (its bytes on
    disk are zstd), so that MB/s compares with tools that count the same text."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return sum(pc.sum(pc.binary_length(pq.read_table(f, columns=["text"]).column("text"))).as_py()
               if f.suffix == ".parquet" else f.stat().st_size for f in files)


def shard_texts(folder: Path) -> list[str]:
    return [t for p in shard_paths(folder) for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()]


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def run_stages(paths: list[Path], workdir: Path) -> tuple[dict, dict]:
    """Our stages on Ray, each timed around its call (Ray start-up timed apart); returns (manifests, seconds)."""
    manifests, seconds = {}, {}
    manifests["ingest"], seconds["ingest"] = timed(ingest, IngestConfig(paths=paths), workdir)
    manifests["clean"], seconds["clean"] = timed(clean, manifests["ingest"], CleanConfig(), workdir)
    manifests["dedup"], seconds["dedup"] = timed(dedup, manifests["clean"], DedupConfig(), workdir)
    manifests["tokenizer"], seconds["tokenizer"] = timed(train_tokenizer, manifests["dedup"], TokenizerConfig(), workdir)
    manifests["pack"], seconds["pack"] = timed(tokenize_and_pack, manifests["dedup"], manifests["tokenizer"], PackConfig(), workdir)
    return manifests, seconds


def baseline_encode_batch(texts: list[str], tokenizer_path: Path, fast: bool = False) -> float:
    """One process, the Rust thread pool on every core: `encode_batch` (or `encode_batch_fast`, no offsets)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    started = time.perf_counter()
    (tokenizer.encode_batch_fast if fast else tokenizer.encode_batch)(texts)
    return time.perf_counter() - started


def _clean_batch(batch: dict, cfg: CleanConfig) -> dict:
    from tasks.data.clean import clean_document, first_failure

    results = [clean_document(t or "", cfg) for t in batch["text"]]
    return {"text": [text for text, _ in results], "keep": [first_failure(signals, cfg) is None for _, signals in results]}


def _tokenize_batch(batch: dict, tokenizer_path: str) -> dict:
    tokenizer = Tokenizer.from_file(tokenizer_path)  # per batch: datasets' workers cannot share one
    return {"ids": [e.ids for e in tokenizer.encode_batch(batch["text"])]}


def baseline_datasets(texts: list[str], tokenizer_path: Path, cores: int, cache: Path) -> float:
    """The same cleaning and tokenization as datasets.map(num_proc=cores) over an Arrow dataset."""
    import datasets

    datasets.disable_progress_bars()
    started = time.perf_counter()
    ds = datasets.Dataset.from_dict({"text": texts})
    ds = ds.map(_clean_batch, batched=True, batch_size=64, num_proc=cores, fn_kwargs={"cfg": CleanConfig()},
                cache_file_name=str(cache / "clean.arrow"))
    ds = ds.filter(lambda batch: batch["keep"], batched=True, num_proc=cores, cache_file_name=str(cache / "keep.arrow"))
    ds.map(_tokenize_batch, batched=True, batch_size=256, num_proc=cores, fn_kwargs={"tokenizer_path": str(tokenizer_path)},
           remove_columns=ds.column_names, cache_file_name=str(cache / "ids.arrow"))
    return time.perf_counter() - started


SCRATCH_MARK = ".tokenmill-bench-scratch"


def fresh_scratch(workdir: Path) -> None:
    """Empty `workdir` for a measurement, only if the bench made it (its mark file is there) or it is empty:
    `--workdir ~/important` must not delete a folder that holds anything else."""
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / SCRATCH_MARK).exists():
        raise ValueError(f"--workdir {workdir}: not a folder `tokenmill bench data` made (no {SCRATCH_MARK} in it) and "
                         f"not empty; refusing to delete it. Name a new or empty folder.")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / SCRATCH_MARK).write_text("made by tokenmill bench data; emptied by every bench run\n")


def bench_data(paths: list[Path], workdir: Path, cores: int | None = None) -> dict:
    cores = cores or os.cpu_count() or 1
    fresh_scratch(workdir)
    _, ray_seconds = timed(ensure_ray, cores)
    manifests, seconds = run_stages(paths, workdir)
    megabytes, docs = input_bytes(paths) / 1e6, manifests["ingest"].counts["docs_in"]
    stages = {name: {"seconds": s, "mb_per_s": megabytes / s, "docs_per_s": docs / s} for name, s in seconds.items()}
    total = sum(seconds.values())

    ingested, deduped = shard_texts(manifests["ingest"].root), shard_texts(manifests["dedup"].root)
    tokenizer_path = manifests["tokenizer"].local_file("tokenizer")
    limit = baseline_encode_batch(deduped, tokenizer_path)
    limit_fast = baseline_encode_batch(deduped, tokenizer_path, fast=True)
    (workdir / "datasets-cache").mkdir()
    hf = baseline_datasets(ingested, tokenizer_path, cores, workdir / "datasets-cache")
    ours_same_scope = seconds["clean"] + seconds["dedup"] + seconds["pack"]
    return {
        "inputs": [str(p) for p in paths], "input_mb": megabytes, "documents": docs, "cores": cores,
        "ray_start_seconds": ray_seconds, "stages": stages,
        "end_to_end": {"seconds": total, "mb_per_s": megabytes / total, "docs_per_s": docs / total},
        "baseline_encode_batch_seconds": limit, "tokenize_vs_encode_batch": limit / seconds["pack"],
        "baseline_encode_batch_fast_seconds": limit_fast, "tokenize_vs_encode_batch_fast": limit_fast / seconds["pack"],
        "baseline_datasets_seconds": hf, "ours_clean_dedup_pack_seconds": ours_same_scope,
        "speedup_vs_datasets": hf / ours_same_scope,
    }
