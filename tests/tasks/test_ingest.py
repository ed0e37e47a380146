import gzip
import json
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from tasks.data.ingest import (
    IngestConfig,
    ingest,
    ingest_fingerprint,
    ingest_unit,
    list_input_files,
    plan_units,
)
from tasks.data.shards import rejected_rows, shard_paths
from tests.tasks.test_readers import spam_sample


def kept_rows(manifest):
    return sorted((r for p in shard_paths(manifest.path) for r in pq.read_table(p).to_pylist()), key=lambda r: r["id"])


def test_units_follow_row_group_parts_streamed_files_and_file_batches(tmp_path):
    pq.write_table(pa.table({"id": list("abcde"), "text": ["t"] * 5}), tmp_path / "a.parquet", row_group_size=2)
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "hello"}\n')
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(b"text\nhello\n"))
    for i in range(5):
        (tmp_path / f"doc{i}.txt").write_text(f"text {i}")
    row_group_bytes = pq.ParquetFile(tmp_path / "a.parquet").metadata.row_group(0).total_byte_size
    cfg = IngestConfig(paths=[tmp_path], files_per_shard=2, unit_bytes=row_group_bytes)
    units = plan_units(list_input_files(cfg.paths), cfg)
    parts = [u.part for u in units if u.files[0].kind == "parquet"]
    assert [(p.start, p.end, p.rows_before) for p in parts] == [(0, 1, 0), (1, 2, 2), (2, 3, 4)]
    assert sum(u.files[0].kind in ("jsonl", "csv") for u in units) == 2
    batches = [u.files for u in units if u.files[0].kind == "text_or_mail"]
    assert [f.rel for batch in batches for f in batch] == [f"{tmp_path.name}/doc{i}.txt" for i in range(5)]
    assert len({u.digest for u in units}) == len(units)
    whole = IngestConfig(paths=[tmp_path / "a.parquet"])
    assert [u.part for u in plan_units(list_input_files(whole.paths), whole)] == [None]  # 3 small row groups: one unit


def test_adding_files_leaves_the_other_batches_as_they_were(tmp_path):
    (tmp_path / "corpus").mkdir()
    for i in range(0, 60, 2):
        (tmp_path / "corpus" / f"doc{i:03d}.txt").write_text(f"text {i}")
    cfg = IngestConfig(paths=[tmp_path / "corpus"], files_per_shard=4)
    before = {u.digest for u in plan_units(list_input_files(cfg.paths), cfg)}
    for i in (13, 41):  # two files land in the middle of the sorted list
        (tmp_path / "corpus" / f"doc{i:03d}.txt").write_text(f"text {i}")
    after = {u.digest for u in plan_units(list_input_files(cfg.paths), cfg)}
    assert len(after - before) <= 2 and len(before - after) <= 2  # only the batches the new files joined
    assert len(before & after) >= len(before) - 2


def test_unsupported_or_missing_input_is_named(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="photo.png: unsupported input type"):
        list_input_files([image])
    with pytest.raises(ValueError, match="nothing-here/\\*.txt: no file matches"):
        list_input_files([str(tmp_path / "nothing-here" / "*.txt")])


def test_bad_records_are_rejected_with_reason_and_location(tmp_path):
    lines = [json.dumps({"id": "ok", "text": "fine text"}), "{not json", json.dumps({"id": "none"}),
             json.dumps({"id": "blank", "text": "   "}), json.dumps({"id": "num", "text": 42})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = IngestConfig(paths=[path])
    (unit,) = plan_units(list_input_files(cfg.paths), cfg)
    stats = ingest_unit(unit, str(tmp_path), cfg)
    assert stats["docs_in"] == 5 and stats["kept"] == 1
    assert stats["reasons"] == {"invalid_record": 1, "missing_text": 2, "empty_text": 1}
    rejected = {r["id"]: r for r in rejected_rows(tmp_path)}
    assert f"{path}:2: invalid JSON" in rejected[f"{tmp_path.name}/in.jsonl#L2"]["detail"]


def test_bad_files_are_skipped_with_the_file_named_or_fail_the_stage(tmp_path):
    truncated = tmp_path / "rows.jsonl.gz"
    truncated.write_bytes(gzip.compress(b"".join(b'{"text": "line %d of the file"}\n' % i for i in range(5000)))[:3000])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not really parquet")
    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "other.parquet", row_group_size=1)
    skip = IngestConfig(paths=[tmp_path])
    units = plan_units(list_input_files(skip.paths), skip)
    stats = [ingest_unit(u, str(tmp_path), skip) for u in units]
    assert sum(s["reasons"].get("bad_file", 0) for s in stats) == 3
    details = sorted(r["detail"] for r in rejected_rows(tmp_path, "bad_file"))
    assert "broken.parquet: not a readable Parquet file" in details[0]
    assert "other.parquet: no column 'text' in ['body']" in details[1]
    assert f"{truncated}: truncated gzip stream after line" in details[2]
    assert sum(s["kept"] for s in stats) > 0  # the lines before the cut are kept

    fail = IngestConfig(paths=[tmp_path], on_bad_file="fail")
    with pytest.raises(ValueError, match="broken.parquet: not a readable Parquet file"):
        plan_units(list_input_files(fail.paths), fail)
    (gz_unit,) = plan_units(list_input_files([truncated]), fail)
    with pytest.raises(ValueError, match=r"rows.jsonl.gz: truncated gzip stream after line \d+"):
        ingest_unit(gz_unit, str(tmp_path), fail)


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory):
    """40 raw mails in their sets, plus the files a real folder holds by mistake."""
    folder = tmp_path_factory.mktemp("inbox")
    spam_sample(folder)
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    (folder / "empty.txt").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(bytes(64))  # hidden: never read
    (folder / "news.html").write_text("<html><head><title>News</title></head><body><p>" + "Ships came in. " * 30
                                      + "</p></body></html>")
    return folder


def test_mail_folder_on_ray_loses_no_document(ray_local, mixed_corpus, tmp_path):
    manifest = ingest(IngestConfig(paths=[mixed_corpus], files_per_shard=7), tmp_path)
    assert manifest.counts["docs_in"] == 43 == manifest.counts["kept"] + manifest.counts["rejected"]
    assert manifest.stats["rejected_by_reason"].keys() <= {"binary_file", "empty_text"}
    rejected = {r["id"]: r for r in rejected_rows(manifest.path)}
    assert rejected[f"{mixed_corpus.name}/scan.pdf"]["reason"] == "binary_file"
    assert rejected[f"{mixed_corpus.name}/empty.txt"]["reason"] == "empty_text"
    rows = kept_rows(manifest)
    mails = [r for r in rows if r["id"].endswith(".txt")]
    assert all(r["source"] in ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2") for r in mails)
    assert all("subject" in json.loads(r["meta"]) for r in mails)
    assert sum(r["encoding"] != "utf-8" for r in mails) >= 12 and all(r["encoding"] for r in rows)
    assert pq.read_schema(shard_paths(manifest.path)[0]).names == ["id", "text", "source", "meta", "encoding"]


def test_ids_do_not_depend_on_sharding_or_url_form(ray_local, mixed_corpus, tmp_path):
    by_path = ingest(IngestConfig(paths=[mixed_corpus], files_per_shard=3), tmp_path / "a")
    by_url = ingest(IngestConfig(paths=[f"file://{mixed_corpus}"], files_per_shard=50), tmp_path / "b")
    assert by_path.stats["num_shards"] != by_url.stats["num_shards"]
    assert kept_rows(by_path) == kept_rows(by_url)


def test_memory_urls_run_in_the_driver_and_shards_are_named_by_their_input(tmp_path):
    memory = fsspec.filesystem("memory")
    for name in ("a", "b"):
        memory.pipe(f"/ingest-test/feed/{name}.jsonl", b'{"text": "from %s"}\n' % name.encode())
    try:
        first = ingest(IngestConfig(paths=["memory://ingest-test/feed"]), tmp_path)
        memory.pipe("/ingest-test/feed/c.jsonl", b'{"text": "from c"}\n')
        second = ingest(IngestConfig(paths=["memory://ingest-test/feed/*.jsonl"]), tmp_path)
    finally:
        memory.rm("/ingest-test", recursive=True)
    assert [r["id"] for r in kept_rows(second)] == ["feed/a.jsonl#L1", "feed/b.jsonl#L1", "feed/c.jsonl#L1"]
    old_names = {Path(p).name for p in shard_paths(first.root)}
    assert first.fingerprint != second.fingerprint and old_names < {Path(p).name for p in shard_paths(second.root)}


def test_fingerprint_follows_content_not_path_form(ray_local, tmp_path):
    (tmp_path / "a.txt").write_text("one")
    fp, _, _ = ingest_fingerprint(IngestConfig(paths=[tmp_path]))
    assert ingest_fingerprint(IngestConfig(paths=[f"file://{tmp_path}"]))[0] == fp
    (tmp_path / "a.txt").write_text("two")
    assert ingest_fingerprint(IngestConfig(paths=[tmp_path]))[0] != fp


def test_paths_accept_paths_globs_and_urls(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    cfg = IngestConfig(paths=[tmp_path, f"{tmp_path}/*.txt", f"file://{tmp_path}/a.txt"])
    assert all(p.exists() for p in cfg.paths) and not IngestConfig(paths=[f"{tmp_path}/*.md"]).paths[0].exists()
    assert cfg.model_dump(mode="json")["paths"][0] == str(tmp_path)
    with pytest.raises(ValidationError, match="nosuchproto://x: Protocol not known"):
        IngestConfig(paths=["nosuchproto://x"])
