import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest import IngestConfig, ingest_unit, list_input_files, plan_units


def test_units_follow_row_groups_files_and_text_batches(tmp_path):
    pq.write_table(pa.table({"id": list("abcde"), "text": ["t"] * 5}), tmp_path / "a.parquet", row_group_size=2)
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "hello"}\n')
    for i in range(5):
        (tmp_path / f"doc{i}.txt").write_text(f"text {i}")
    files = list_input_files([tmp_path])
    units = plan_units(files, files_per_shard=2)
    kinds = [u["kind"] for u in units]
    assert kinds.count("parquet") == 3 and kinds.count("jsonl") == 1 and kinds.count("text") == 3


def test_unsupported_input_is_named(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="photo.png: unsupported input type"):
        list_input_files([image])


def test_bad_records_are_rejected_with_reason_and_location(tmp_path):
    lines = [json.dumps({"id": "ok", "text": "fine text"}), "{not json", json.dumps({"id": "none"}),
             json.dumps({"id": "blank", "text": "   "}), json.dumps({"id": "num", "text": 42})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    stats = ingest_unit((0, {"kind": "jsonl", "files": [str(path)]}), str(out), IngestConfig(paths=[path]))
    assert stats["docs_in"] == 5 and stats["kept"] == 1
    assert stats["reasons"] == {"invalid_record": 1, "missing_text": 2, "empty_text": 1}
    rejected = {r["id"]: r for r in pq.read_table(out / "rejected-00000.parquet").to_pylist()}
    assert f"{path}:2: invalid JSON" in rejected["in/line2"]["detail"]
