"""The readers on real bytes: SpamAssassin mails, compressed JSONL, CSV/TSV, HTML, binary files, fsspec URLs."""

import bz2
import gzip
import json
import lzma
import shutil

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tasks.data.ingest import list_input_files
from tasks.data.readers import (
    BadFile,
    InputFile,
    Part,
    ReadOptions,
    binary_kind,
    decode_bytes,
    file_kind,
    looks_like_mail,
    read_file,
    read_whole_file,
)
from tests.conftest import SPAM_ASSASSIN

OPTIONS = ReadOptions()


def spam_sample(folder, quotas=(("non_utf8", 12), ("html_only", 8), ("plain", 20))):
    """Copy a fixed sample of raw mails into folder/<set>/: some not UTF-8, some with only an HTML body."""
    if not SPAM_ASSASSIN.is_dir():
        pytest.skip(f"no SpamAssassin corpus at {SPAM_ASSASSIN}")
    wanted = dict(quotas)
    for path in sorted(SPAM_ASSASSIN.glob("*/*.txt"), key=lambda p: (p.name, p.parent.name)):  # sets interleaved
        data = path.read_bytes()
        html_only = b"text/html" in data.lower() and b"text/plain" not in data.lower()
        kind = "non_utf8" if not _is_utf8(data) else "html_only" if html_only else "plain"
        if wanted[kind]:
            wanted[kind] -= 1
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / path.parent.name / path.name)
        if not any(wanted.values()):
            return
    raise AssertionError(f"the corpus lacks mails for {wanted}")


def _is_utf8(data):
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.fixture(scope="module")
def mails(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mails")
    spam_sample(folder)
    return list_input_files([folder])


def read_one(file):
    (record,) = read_file(file, OPTIONS)
    return record


def test_sample_has_what_the_tests_need(mails):
    raw = [fsspec.open(f.url, "rb").open().read() for f in mails]
    assert len(mails) == 40 and sum(not _is_utf8(d) for d in raw) >= 12
    assert all(f.kind == "text_or_mail" for f in mails)


def test_mail_bodies_are_extracted_and_headers_land_in_meta(mails):
    records = [read_one(f) for f in mails]
    kept = [r for r in records if not r.reason]
    assert len(kept) >= 38  # a spam whose only body is an image has no text: empty_text
    assert all(r.reason == "empty_text" for r in records if r.reason)
    for record in kept:
        meta = json.loads(record.meta)
        assert {"from", "subject", "date"} <= meta.keys(), record.id
        assert not record.text.startswith(("From ", "Return-Path:", "Received:")), record.id
        assert "Content-Transfer-Encoding:" not in record.text, record.id
    assert sum("message-id" in json.loads(r.meta) for r in kept) >= 35


def test_html_only_mails_become_text_without_tags(mails):
    html_only = [f for f in mails if b"text/plain" not in fsspec.open(f.url, "rb").open().read().lower()]
    texts = [read_one(f).text for f in html_only]
    assert len(texts) >= 8
    for text in texts:
        assert "<td" not in text.lower() and "<font" not in text.lower() and "&nbsp;" not in text


def test_non_utf8_mails_decode_with_a_recorded_encoding(mails):
    non_utf8 = [f for f in mails if not _is_utf8(fsspec.open(f.url, "rb").open().read())]
    records = [read_one(f) for f in non_utf8]
    for record in records:
        assert record.text is not None and record.text.encode("utf-8")
        assert record.reason or record.encoding and record.encoding != "utf-8", record.id
    assert any("(declared)" in (r.encoding or "") or "(detected)" in (r.encoding or "") for r in records)


def test_mail_is_sniffed_by_its_headers_not_its_name(mails):
    mail = fsspec.open(mails[0].url, "rb").open().read()
    assert looks_like_mail(mail[:8192])
    assert not looks_like_mail(b"Title: Notes\nAuthor: me\n\nSome text.\n")  # front matter, not a mail
    assert not looks_like_mail(b"From the start, Ishmael knew.\nCall me Ishmael.\n")
    assert file_kind("00001.7c53336b37003a9286aba55d2945844c") == "sniff"
    hashed = InputFile("mem/00001.7c53336b", "corpus/00001.7c53336b", "sniff")
    assert json.loads(read_whole_file(mail, hashed, OPTIONS).meta)["subject"]
    as_text = read_whole_file(mail, hashed, ReadOptions(detect_mail=False))
    assert as_text.meta is None and as_text.text.startswith("From ") and as_text.encoding.endswith("(sniffed)")


def test_decoding_records_its_decision():
    assert decode_bytes("naïve café".encode()) == ("naïve café", "utf-8")
    assert decode_bytes("naïve".encode("latin-1"), declared="ISO-8859-1") == ("naïve", "iso8859-1 (declared)")
    french = ("Il était une fois, dans un petit village de Provence, un garçon qui rêvait de voir la mer. "
              "Chaque été, il écoutait les récits des marins qui passaient par l'auberge de sa grand-mère.")
    assert decode_bytes(french.encode("cp1252")) == (french, "cp1252 (detected)")
    text, encoding = decode_bytes(bytes(range(128, 256)))
    assert encoding == "utf-8 (replaced)" and "\ufffd" in text


def test_binary_and_empty_files_are_rejected_with_reasons():
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)
    nul_heavy = b"some words " + bytes(500) + b" more words"
    file = InputFile("in/scan.txt", "in/scan.txt", "text_or_mail")
    for data, what in ((pdf, "PDF document"), (png, "PNG image"), (nul_heavy, "NUL bytes")):
        record = read_whole_file(data, file, OPTIONS)
        assert record.reason == "binary_file" and what in record.detail and record.text is None
    assert binary_kind("UTF-16 text".encode("utf-16")) is None
    assert read_whole_file(b"  \n\n", file, OPTIONS).reason == "empty_text"
    unknown = read_whole_file(b"name,value\n", InputFile("in/x.json", "in/x.json", "unknown"), OPTIONS)
    assert unknown.reason == "unsupported_file"


def test_html_boilerplate_is_dropped():
    article = " ".join(["The harbour master counted the ships that came in from the storm each morning."] * 6)
    page = f"""<html><head><title>Harbour news</title><script>var x = 1;</script></head><body>
      <nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
        <li><a href="/shop">Shop</a></li></ul></nav>
      <article><h1>Storm over the harbour</h1><p>{article}</p><p>{article}</p></article>
      <footer><p>Copyright 2024 Harbour Gazette. All rights reserved.</p><a href="/privacy">Privacy policy</a></footer>
    </body></html>""".encode("cp1252")
    record = read_whole_file(page, InputFile("site/a.html", "site/a.html", "html"), OPTIONS)
    assert "harbour master counted" in record.text and "Storm over the harbour" in record.text
    assert "About us" not in record.text and "Privacy policy" not in record.text and "var x" not in record.text
    assert json.loads(record.meta) == {"title": "Harbour news"}


def jsonl_bytes(num_lines):
    return b"".join(json.dumps({"text": f"document number {i} " * 20, "year": 1800 + i}).encode() + b"\n"
                    for i in range(num_lines))


@pytest.mark.parametrize("suffix, compress", [(".jsonl.gz", gzip.compress),
                                              (".jsonl.zst", zstandard.ZstdCompressor().compress),
                                              (".jsonl.bz2", bz2.compress), (".jsonl.xz", lzma.compress)])
def test_compressed_jsonl_and_a_truncated_one(tmp_path, suffix, compress):
    whole, truncated = tmp_path / f"corpus{suffix}", tmp_path / f"cut{suffix}"
    data = compress(jsonl_bytes(2000))
    whole.write_bytes(data)
    truncated.write_bytes(data[: len(data) // 2])
    full, cut = list_input_files([whole, truncated])
    records = list(read_file(full, OPTIONS))
    assert len(records) == 2000 and records[0].id == f"{tmp_path.name}/corpus{suffix}#L1"
    assert json.loads(records[0].meta) == {"year": 1800} and records[0].source == "corpus"
    # bzip2 decompresses whole 900 kB blocks: half of this one-block file yields no line at all
    with pytest.raises(BadFile, match=rf"cut{suffix}: truncated (gzip|zstd|bzip2|xz) stream (after line \d+|at the start)"):
        list(read_file(cut, OPTIONS))


def test_jsonl_lines_in_another_encoding_decode_on_their_own(tmp_path):
    path = tmp_path / "mixed.jsonl"
    latin1_line = '{"text": "latin-1 café au lait et crème brûlée"}\n'.encode("latin-1")
    path.write_bytes('{"text": "utf-8 café"}\n'.encode() + latin1_line)
    first, second = read_file(list_input_files([path])[0], OPTIONS)
    assert first.encoding == "utf-8" and second.encoding.endswith("(detected)") and "caf" in second.text


def test_csv_and_tsv_by_text_column(tmp_path):
    (tmp_path / "sms.csv").write_text('label,message\nham,"Going home, see you"\nspam,"WIN a ""prize""\nnow"\n')
    (tmp_path / "sms.tsv").write_text('label\tmessage\nham\tA "quoted" word\n')
    options = ReadOptions(text_column="message")
    csv_file, tsv_file = list_input_files([tmp_path / "sms.csv", tmp_path / "sms.tsv"])
    rows = list(read_file(csv_file, options))
    assert [r.text for r in rows] == ["Going home, see you", 'WIN a "prize"\nnow']
    assert rows[1].id == f"{tmp_path.name}/sms.csv#row2" and json.loads(rows[1].meta) == {"label": "spam"}
    (row,) = read_file(tsv_file, options)
    assert row.text == 'A "quoted" word' and row.encoding == "utf-8"
    with pytest.raises(BadFile, match=r"sms.tsv:1: no column 'text' in the header \['label', 'message'\]"):
        list(read_file(tsv_file, OPTIONS))  # one clear error, not a missing_text per row


def test_parquet_ids_count_rows_across_row_groups(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(5)], "lang": ["en"] * 5}), path, row_group_size=2)
    (file,) = list_input_files([path])
    records = list(read_file(file, OPTIONS, Part(start=1, end=2, rows_before=2)))
    assert [r.id for r in records] == [f"{tmp_path.name}/docs.parquet#row3", f"{tmp_path.name}/docs.parquet#row4"]


def test_file_and_memory_urls(tmp_path):
    (tmp_path / "a.txt").write_text("plain text from disk")
    (file_url,) = list_input_files([f"file://{tmp_path}/*.txt"])
    assert read_one(file_url).text == "plain text from disk" and file_url.rel == f"{tmp_path.name}/a.txt"

    memory = fsspec.filesystem("memory")
    memory.pipe("/readers-test/notes/b.md", "# Notes\n\nkept in memory".encode())
    memory.pipe("/readers-test/notes/rows.jsonl.gz", gzip.compress(jsonl_bytes(3)))
    try:
        files = list_input_files(["memory://readers-test/notes"])
        assert [f.rel for f in files] == ["notes/b.md", "notes/rows.jsonl.gz"]
        assert read_one(files[0]).text.endswith("kept in memory")
        assert len(list(read_file(files[1], OPTIONS))) == 3
    finally:
        memory.rm("/readers-test", recursive=True)
