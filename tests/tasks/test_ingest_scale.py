"""Ingest at scale: digests cached per file, large files read in parts, ids checked by an exchange."""

import csv
import gzip
import io
import json
import os
import random
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import option_overrides
from flows.config import load_config
from infra import storage
from tasks.data.ingest import IngestConfig, hash_file, ingest, ingest_fingerprint, list_input_files
from tasks.data.shards import shard_paths
from tests.test_storage import s3, s3_env  # noqa: F401 - moto's S3 server and the variables that reach it


def rows_of(manifest, prefix="shard-"):
    return sorted((r for p in shard_paths(manifest.path, prefix) for r in pq.read_table(p).to_pylist()),
                  key=lambda r: (r["id"], r.get("detail") or ""))


def test_unchanged_files_are_not_read_again_and_rehash_reads_them_all(ray_local, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt", "c.jsonl"):
        (corpus / name).write_text('{"text": "one line"}\n' if name.endswith("jsonl") else f"text of {name}")
    cfg, workdir = IngestConfig(paths=[corpus]), tmp_path / "work"
    first = ingest(cfg, workdir)
    assert (first.counts["files_hashed"], first.counts["digests_reused"]) == (3, 0)
    (corpus / "b.txt").chmod(0)  # a cache hit must not even open a file (root may open it anyway: see the counts)
    fp, _, counts = ingest_fingerprint(cfg, workdir)
    assert fp == first.fingerprint and counts == {"files_hashed": 0, "digests_reused": 3}
    (corpus / "b.txt").chmod(0o644)
    stat = os.stat(corpus / "a.txt")
    os.utime(corpus / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched, same bytes
    fp, _, counts = ingest_fingerprint(cfg, workdir)
    assert fp == first.fingerprint and counts == {"files_hashed": 1, "digests_reused": 2}
    fp, _, counts = ingest_fingerprint(cfg.model_copy(update={"rehash": True}), workdir)
    assert fp == first.fingerprint and counts == {"files_hashed": 3, "digests_reused": 0}
    (corpus / "c.jsonl").write_text('{"text": "another line"}\n')
    assert ingest_fingerprint(cfg, workdir)[0] != first.fingerprint


def test_run_rehash_option_reaches_ingest(repo_cwd):
    assert load_config(Path("configs/tiny.yaml"), option_overrides(None, None, rehash=True)).ingest.rehash
    assert not load_config(Path("configs/tiny.yaml"), option_overrides(None, None)).ingest.rehash


def jsonl_bytes(num_lines: int) -> bytes:
    rng = random.Random(0)
    lines = []
    for i in range(num_lines):
        if i % 97 == 0:
            lines.append("")  # blank lines are no records, yet count in the ids of the lines after them
        elif i % 101 == 0:
            lines.append("{not json")
        else:
            lines.append(json.dumps({"text": "word " * rng.randint(20, 400), "n": i}))
    return ("\n".join(lines) + "\n").encode()


def csv_text(num_rows: int) -> str:
    rng = random.Random(1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["label", "text"])
    for i in range(num_rows):
        if i % 50 == 0:
            out.write("\n")  # a blank line: DictReader skips it, the row numbers do not count it
        writer.writerow([f'say "{i}"', 'a line, then\nanother "quoted" one\r\n' * rng.randint(5, 60)])
    return out.getvalue()


def write_jsonl(folder: Path) -> None:
    (folder / "big.jsonl").write_bytes(jsonl_bytes(3000))


def write_jsonl_gz(folder: Path) -> None:
    (folder / "big.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(3000)))


def write_csv(folder: Path) -> None:
    (folder / "big.csv").write_text(csv_text(2000), newline="")


def write_parquet(folder: Path) -> None:
    texts = [f"document {i} " + "words " * (i % 300) for i in range(4000)]
    pq.write_table(pa.table({"text": texts, "n": list(range(4000))}), folder / "big.parquet", row_group_size=250)


@pytest.mark.parametrize("write", [write_jsonl, write_jsonl_gz, write_csv, write_parquet])
def test_a_large_file_is_read_in_parts_with_the_same_ids_and_bytes(ray_local, tmp_path, write):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write(corpus)
    whole = ingest(IngestConfig(paths=[corpus], unit_bytes=1 << 40), tmp_path / "whole")
    parts = ingest(IngestConfig(paths=[corpus], unit_bytes=100_000), tmp_path / "parts")
    assert whole.stats["num_shards"] == 1 and parts.stats["num_shards"] > 4  # one shard per unit
    assert rows_of(parts) == rows_of(whole) and len(rows_of(whole)) > 1000
    assert rows_of(parts, "rejected-") == rows_of(whole, "rejected-")
    assert parts.counts == whole.counts | {"units_reused": 0}


def test_repeated_ids_are_found_across_files_by_the_exchange(ray_local, tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"id": "same", "text": f"from {name}"}) + "\n"
                                                + json.dumps({"id": f"own-{name}", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"not unique across the inputs \(1 repeat\), e.g. \['same'\]: "
                                         r"set ingest.id_column"):
        ingest(IngestConfig(paths=[tmp_path]), tmp_path / "work")


def test_repeated_ids_in_memory_inputs_are_found_in_the_driver(tmp_path):
    memory = fsspec.filesystem("memory")
    for name in ("a", "b"):
        memory.pipe(f"/ids-test/{name}.jsonl", b'{"id": "same", "text": "twice"}\n')
    try:
        with pytest.raises(ValueError, match="not unique.*'same'.*ingest.id_column"):
            ingest(IngestConfig(paths=["memory://ids-test"]), tmp_path)
    finally:
        memory.rm("/ids-test", recursive=True)


def test_object_store_digests_are_reused_while_the_etag_stays(s3_env):
    s3_env.make_bucket("inputs")
    storage.write_text("s3://inputs/corpus/a.jsonl", '{"text": "first"}\n')
    storage.write_text("s3://inputs/corpus/b.txt", "plain text")
    cache_dir = "s3://inputs/work/ingest/.digests"

    def hashed() -> dict[str, tuple[str, bool]]:
        return {f.rel: (digest, read) for f in list_input_files(["s3://inputs/corpus"])
                for digest, _, read in [hash_file(f, cache_dir, 1 << 20, rehash=False)]}

    first = hashed()
    assert all(read for _, read in first.values())
    assert hashed() == {rel: (digest, False) for rel, (digest, _) in first.items()}
    storage.write_text("s3://inputs/corpus/a.jsonl", '{"text": "second"}\n')  # a new ETag
    third = hashed()
    assert third["corpus/a.jsonl"][1] and third["corpus/a.jsonl"][0] != first["corpus/a.jsonl"][0]
    assert third["corpus/b.txt"] == (first["corpus/b.txt"][0], False)
