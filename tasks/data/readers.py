"""Readers: the bytes of one input file -> documents, or rejections that name what was wrong.

Pure functions over bytes and byte streams, opened through fsspec (local paths, file://,
memory://, object stores): nothing here knows about Ray, Prefect or shards. A reader yields
`Record`s; a file that cannot be read any further raises `BadFile`, whose message names the
file, the line when known, and the cause.
"""

import bz2
import codecs
import csv
import email
import gzip
import hashlib
import io
import json
import lzma
import posixpath
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from typing import BinaryIO

import fsspec
import pyarrow.parquet as pq
import zstandard
from charset_normalizer import from_bytes
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

# How a file is read, by the suffix of its name. Any other suffix, or none (`TUTORIAL.ja`, `README`, and the
# hash-like suffixes of SpamAssassin's `00001.7c53336b...`), is sniffed from the content: binary, mail, HTML or text.
KINDS = {".txt": "text_or_mail", ".md": "text", ".rst": "text", ".eml": "mail", ".mbox": "mbox", ".html": "html",
         ".htm": "html", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
SNIFFED = "sniff"
# Suffixes that name binary formats: not sniffed, so that naming one as an input fails at once (as before).
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico", ".pdf", ".zip", ".tar",
                   ".7z", ".rar", ".exe", ".dll", ".so", ".o", ".a", ".class", ".jar", ".pyc", ".whl", ".mp3", ".mp4",
                   ".wav", ".avi", ".mov", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".db", ".sqlite"}
STREAMED = {"jsonl", "csv", "tsv"}  # read line by line, optionally compressed: never held whole
# One table for ingest, fine-tuning and decontamination: a suffix here is read by all three.
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bzip2", ".xz": "xz"}
SNIFF_BYTES = 8192

# Signatures of files that are certainly not text, with what to call them in a rejection.
MAGIC = {b"%PDF-": "PDF document", b"\x89PNG\r\n\x1a\n": "PNG image", b"\xff\xd8\xff": "JPEG image",
         b"GIF87a": "GIF image", b"GIF89a": "GIF image", b"PK\x03\x04": "ZIP archive (or docx/xlsx/jar)",
         b"\x1f\x8b": "gzip data", b"\x28\xb5\x2f\xfd": "zstd data", b"\x7fELF": "ELF executable",
         b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "OLE document (doc/xls/msg)", b"PAR1": "Parquet file",
         b"RIFF": "RIFF media (wav/avi/webp)", b"II*\x00": "TIFF image", b"MM\x00*": "TIFF image"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-16 text is half NUL bytes: not binary
# Byte-order marks, longest first: UTF-32-LE's starts with UTF-16-LE's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig"))
_TEXT_CONTROLS = set(b"\t\n\r\f\v\b\x1b")  # ESC: ISO-2022 encodings switch character sets with it
_SHIFT_CONTROLS = set(b"\x0e\x0f")  # SO/SI: ISO-2022-KR and -CN shift in and out of the designated set
# ISO-2022 designations of a double-byte set, and the codec that reads them
_ISO2022 = ((b"\x1b$)C", "iso2022_kr"), (b"\x1b$)A", "iso2022_cn"), (b"\x1b$B", "iso2022_jp_2"),
            (b"\x1b$@", "iso2022_jp_2"), (b"\x1b$(D", "iso2022_jp_2"), (b"\x1b$A", "iso2022_jp_2"))

# Header names that make a header block a mail rather than, say, "Title: ..." front matter.
MAIL_HEADERS = {"return-path", "received", "delivered-to", "delivery-date", "message-id", "from", "to", "cc",
                "subject", "date", "mime-version", "content-type", "reply-to", "sender", "x-mailer",
                "in-reply-to", "references"}
MAIL_META = ("from", "to", "cc", "subject", "date", "message-id")
# Spam often sends HTML with no Content-Type (so text/plain): 52 such parts in SpamAssassin.
_HTML_START = re.compile(r"\s*<(!doctype|html|head|body|table|center|font|div|meta|title|img|a\s|p\b)", re.IGNORECASE)
_HEADER_LINE = re.compile(rb"([!-9;-~]+):")  # RFC 5322 field name: printable ASCII but ':'
# What a broken stream raises: gzip's BadGzipFile is an OSError, a corrupt deflate block a zlib.error,
# corrupt bzip2 an OSError, corrupt xz an LZMAError; a truncated stream of any of them an EOFError.
STREAM_ERRORS = (OSError, EOFError, zlib.error, zstandard.ZstdError, lzma.LZMAError)


@dataclass(frozen=True)
class ReadOptions:
    text_column: str = "text"
    id_column: str = "id"
    detect_mail: bool = True


@dataclass(frozen=True)
class InputFile:
    url: str  # what fsspec opens: a local path or a URL
    rel: str  # the input root's folder name + the path below it: documents' ids start with it
    kind: str  # a value of KINDS, or "unknown"
    digest: str = ""  # sha256 of the content, once the stage has read it for its fingerprint
    size: int = 0  # bytes as listed: the hashing pass groups files by it
    layout: "Layout | None" = None  # where its units may start, learned by the pass that hashes it

    @property
    def source(self) -> str:
        return posixpath.basename(posixpath.dirname(self.rel))

    @property
    def stem(self) -> str:
        """The name without its suffixes: "sotu" for sotu.jsonl.gz."""
        name = posixpath.basename(self.rel)
        return name.rsplit(".", 2 if compression_of(name) else 1)[0]


@dataclass(frozen=True)
class Part:
    """The range of one file that one unit reads. Numbers count from the file's start, so a record's id and the
    line a rejection names are the same whichever part reads it."""

    start: int  # Parquet: the first row group; streamed: byte offset of a record start in the decompressed stream
    end: int | None  # the row group or byte offset after the part; None: the end of the file
    rows_before: int = 0  # rows (JSONL: lines) before the part: ids number the rows of the whole file
    lines_before: int = 0  # lines before the part: rejections name lines of the whole file
    header_bytes: int = 0  # CSV/TSV: the header record, read before the part's own bytes
    header_lines: int = 0


@dataclass(frozen=True)
class Layout:
    """What the pass that hashes a file learned about it, so that planning units reads no file."""

    parts: tuple[Part, ...] = ()  # the units' ranges; empty: the file is read as one unit
    columns: tuple[str, ...] = ()  # Parquet: the schema's column names
    problem: str | None = None  # why the file (a Parquet footer) cannot be read


@dataclass
class Record:
    """A document as read, or a rejection (`reason` set) with the detail a person needs to find it."""

    id: str
    text: str | None
    source: str
    meta: str | None = None  # a JSON object: mail headers, the other columns of a row
    encoding: str | None = None  # how the bytes became text, e.g. "utf-8", "cp1252 (detected)"
    reason: str | None = None
    detail: str | None = None
    where: str | None = None  # file and line (or row) of a record from a file of many: rejections name it


class BadFile(Exception):
    """A file that cannot be read (any further); str() names the file, the line when known, and the cause."""


def compression_of(name: str) -> str | None:
    return COMPRESSIONS.get(posixpath.splitext(name.lower())[1])


def file_kind(name: str) -> str:
    """How a file is read, from its name: a value of KINDS, SNIFFED (from its content), or "unknown" (a binary
    format's suffix, or a compressed file that is not JSONL, CSV or TSV)."""
    stem, suffix = posixpath.splitext(name.lower())
    if suffix in COMPRESSIONS:
        kind = KINDS.get(posixpath.splitext(stem)[1])
        return kind if kind in STREAMED else "unknown"
    return KINDS.get(suffix, "unknown" if suffix in BINARY_SUFFIXES else SNIFFED)


# ---- bytes -> text -------------------------------------------------------------------------


def codec_name(label: str | None) -> str | None:
    """Python's name for a charset label ("latin_1" -> "iso8859-1"); None when unknown."""
    try:
        return codecs.lookup(label).name if label else None
    except LookupError:
        return None


def _try_decode(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Text, and how it was decoded: a byte-order mark, strict UTF-8, the declared charset, an ISO-2022 escape,
    UTF-16/32 without a BOM, a detected charset, or UTF-8 with U+FFFD."""
    for bom, codec in _BOMS:
        if data.startswith(bom) and (text := _try_decode(data, codec)) is not None:
            return text, f"{codec.removesuffix('-sig')} (BOM)"
    declared = codec_name(declared)
    if (found := _stateful_or_wide(data, declared)) is not None:
        return found
    utf8 = _try_decode(data, "utf-8")
    # Valid UTF-8 with non-ASCII bytes is almost never another charset by chance, and mail often
    # labels UTF-8 bodies latin-1; a declared 7-bit charset (iso-2022-jp) still decides ASCII bytes.
    if utf8 is not None and (declared in (None, "utf-8") or not data.isascii()):
        return utf8.removeprefix("\ufeff"), "utf-8"
    if declared and (text := _try_decode(data, declared)) is not None:
        return text, f"{declared} (declared)"
    best = from_bytes(data).best()
    if best is not None and (codec := codec_name(best.encoding)):
        return str(best), f"{codec} (detected)"
    return data.decode("utf-8", errors="replace"), "utf-8 (replaced)"


def _stateful_or_wide(data: bytes, declared: str | None) -> tuple[str, str] | None:
    """ISO-2022 text (7-bit, so it also passes for ASCII) named by its escape sequences, or UTF-16/32 without
    a BOM (whose NUL bytes UTF-8 accepts); None for anything else. A declared charset decides first."""
    if data.isascii() and b"\x1b" in data and not (declared and declared.startswith("iso2022")):
        for escape, codec in _ISO2022:
            if escape in data and (text := _decode_iso2022(data, codec)) is not None:
                return text, f"{codec} (escape sequences)"
    if declared is None and data.count(0) > len(data) // 8 and (wide := _bom_less_unicode(data)):
        return wide
    return None


def _decode_iso2022(data: bytes, codec: str) -> str | None:
    if codec == "iso2022_cn":
        try:
            return _decode_iso2022_cn(data)
        except UnicodeDecodeError:
            return None
    return _try_decode(data, codec)


def _decode_iso2022_cn(data: bytes) -> str | None:
    """Python has no ISO-2022-CN codec. Its GB2312 set (designated by ESC $ ) A) shifted in by SO is GB2312's
    EUC bytes with the high bit cleared; SI, or a line end, shifts back to ASCII (RFC 1922). None for text
    that uses its other sets (CNS 11643)."""
    out, shifted = [], False
    for chunk in re.split(rb"(\x0e|\x0f|\n)", data.replace(b"\x1b$)A", b"")):
        if chunk == b"\x0e":
            shifted = True
        elif chunk in (b"\x0f", b"\n"):
            shifted = False
            out.append(chunk.decode().replace("\x0f", ""))
        elif b"\x1b" in chunk:
            return None
        else:
            out.append(bytes(b | 0x80 for b in chunk).decode("gb2312") if shifted else chunk.decode("ascii"))
    return "".join(out)


def _bom_less_unicode(data: bytes) -> tuple[str, str] | None:
    """UTF-32 or UTF-16 text without a byte-order mark, told apart by which decoding reads as text."""
    sample = data[: SNIFF_BYTES - SNIFF_BYTES % 4]
    for codec in ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be"):
        text = _try_decode(sample, codec)
        if text and sum(ch.isprintable() or ch in "\n\r\t" for ch in text) >= 0.95 * len(text):
            full = _try_decode(data, codec)
            return (full, f"{codec} (no BOM, detected)") if full is not None else None
    return None


def valid_unicode(text: str) -> str:
    """Text that encodes as UTF-8: raw 8-bit mail headers arrive as surrogate escapes, JSON may hold lone surrogates."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return decode_bytes(text.encode("utf-8", "surrogateescape"))[0]
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def binary_kind(head: bytes) -> str | None:
    """What a file whose first bytes are `head` is, when it is certainly not text; None for text."""
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            return what
    if head.startswith(_UTF16_BOMS):
        return None
    sample = head[:SNIFF_BYTES]
    num_nul = sample.count(0)
    if num_nul > len(sample) // 100:
        return None if _bom_less_unicode(sample) else f"{num_nul} NUL bytes in the first {len(sample)} bytes"
    text_controls = _TEXT_CONTROLS | _SHIFT_CONTROLS if any(esc in sample for esc, _ in _ISO2022) else _TEXT_CONTROLS
    num_controls = sum(1 for b in sample if b < 0x20 and b not in text_controls)
    if num_controls > len(sample) // 10:
        return f"{num_controls} control bytes in the first {len(sample)} bytes"
    return None


# ---- mail ----------------------------------------------------------------------------------


def looks_like_mail(head: bytes) -> bool:
    """Whether a file starts with an RFC-822 header block (after an optional mbox "From " line)."""
    lines = head[:SNIFF_BYTES].splitlines()
    if len(head) >= SNIFF_BYTES:
        lines = lines[:-1]  # the last line may be cut off
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    names = []
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t") and names:
            continue  # a folded header line
        match = _HEADER_LINE.match(line)
        if not match:
            return False
        names.append(match.group(1).decode("ascii").lower())
    return len(MAIL_HEADERS.intersection(names)) >= 2


def _leaf_parts(part: Message) -> Iterator[Message]:
    """MIME leaves, not descending into attachments: a mail attached as a file stays one attachment."""
    if part.is_multipart() and part.get_content_disposition() != "attachment":
        for sub in part.get_payload():
            yield from _leaf_parts(sub)
    else:
        yield part


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    try:
        text = str(make_header(decode_header(value)))
    except (HeaderParseError, UnicodeError, LookupError, ValueError):
        text = str(value)  # a malformed encoded word: the raw header is still worth keeping
    return valid_unicode(text)


def read_mail(data: bytes) -> tuple[str, dict, str]:
    """Body text, headers as metadata, and the encoding decisions of the parts read.

    Non-empty text/plain parts are the body; a mail without them is read from its HTML parts
    (text/html, or text/plain that holds HTML). Attachments and non-text parts are skipped,
    and listed in the metadata.
    """
    # compat32 (the default) rather than policy.default: 8x faster on the SpamAssassin corpus,
    # and it never raised on its malformed headers where policy.default did.
    msg = email.message_from_bytes(data)
    plain, html, skipped = [], [], []
    for part in _leaf_parts(msg):
        ctype = part.get_content_type()
        if part.get_content_disposition() == "attachment" or not ctype.startswith(("text/plain", "text/html")):
            skipped.append(part.get_filename() or ctype)
            continue
        text, encoding = decode_bytes(part.get_payload(decode=True) or b"", part.get_content_charset())
        is_html = ctype.startswith("text/html") or _HTML_START.match(text)
        (html if is_html else plain).append((text, encoding))
    # An empty text/plain alternative (common in spam) must not hide the HTML one.
    parts = [part for part in plain if part[0].strip()] or [(html_to_text(text), encoding) for text, encoding in html]
    meta = {name: value for name in MAIL_META if (value := _header(msg, name)) is not None}
    if skipped:
        meta["skipped_parts"] = [valid_unicode(name) for name in skipped]
    body = "\n\n".join(text.strip() for text, _ in parts if text.strip())
    return body, meta, ", ".join(dict.fromkeys(encoding for _, encoding in parts))


# ---- HTML ----------------------------------------------------------------------------------


def html_to_text(html: str | HTMLTree) -> str:
    """Visible text with boilerplate (navigation, footers, link lists) dropped.

    resiliparse rather than trafilatura: on the 1,210 HTML parts of the SpamAssassin corpus it
    took 0.4 ms a page against trafilatura 2.3.1's 10 ms, and it writes no markdown table pipes
    into the text; it is a maintained C++ (Lexbor) extractor built for web-scale corpora.
    """
    tree = html if isinstance(html, HTMLTree) else HTMLTree.parse(html)
    text = extract_plain_text(tree, main_content=True, alt_texts=False)
    # A page that is one big table or image link (much spam) has no "main content": keep all visible text.
    return text if text.strip() else extract_plain_text(tree, main_content=False, alt_texts=False)


def read_html(data: bytes) -> tuple[str, dict | None, str]:
    html, encoding = decode_bytes(data)
    tree = HTMLTree.parse(html)
    title = tree.title.strip() if tree.title else ""
    return html_to_text(tree), {"title": title} if title else None, encoding


# ---- one file, one document ----------------------------------------------------------------


def sniff_kind(data: bytes, options: ReadOptions) -> str:
    """Mail, HTML or text, from a (non-binary) file's first bytes."""
    head = data[:SNIFF_BYTES]
    if options.detect_mail and looks_like_mail(head):
        return "mail"
    return "html" if _HTML_START.match(decode_bytes(head[:1024])[0]) else "text"


def read_whole_file(data: bytes, file: InputFile, options: ReadOptions) -> Record:
    """A text, mail or HTML file as one document; binary, empty and unsupported files as rejections.
    A file of no known suffix is sniffed, and its `encoding` says what it was read as."""
    if not data or data.isspace():
        return _rejected(file, "empty_text", f"{file.url}: empty file", text="")
    if what := binary_kind(data[:SNIFF_BYTES]):
        return _rejected(file, "binary_file", f"{file.url}: {what}")
    kind = file.kind
    if kind == "text_or_mail":
        kind = "mail" if options.detect_mail and looks_like_mail(data[:SNIFF_BYTES]) else "text"
    elif kind == SNIFFED:
        kind = sniff_kind(data, options)
    if kind == "mail":
        text, meta, encoding = read_mail(data)
    elif kind == "html":
        text, meta, encoding = read_html(data)
    elif kind == "text":
        (text, encoding), meta = decode_bytes(data), None
    else:
        return _rejected(file, "unsupported_file",
                         f"{file.url}: no reader for this suffix (expected one of {sorted(KINDS)})")
    if not text.strip():
        return _rejected(file, "empty_text", f"{file.url}: no text in this {kind}", text=text)
    if file.kind == SNIFFED:
        encoding = f"{encoding}; read as {kind} (sniffed)"
    return Record(file.rel, text, file.source, meta=to_json(meta), encoding=encoding)


# An mbox separates messages by a "From " line at the start of the file or of a line; mboxrd escapes
# a body line starting with "From " as ">From " (and ">From " as ">>From ").
_MBOX_FROM = re.compile(rb"(?:\A|\n)From [^\n]*\n")
_MBOX_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)


def read_mbox(data: bytes, file: InputFile) -> Iterator[Record]:
    """One document per message of an mbox file, each with the file's name and its number (`#msg3`)."""
    if what := binary_kind(data[:SNIFF_BYTES]):
        yield _rejected(file, "binary_file", f"{file.url}: {what}")
        return
    messages = [m for m in _MBOX_FROM.split(data) if m.strip()]
    if not messages:
        yield _rejected(file, "empty_text", f"{file.url}: no message in this mbox", text="")
    for number, message in enumerate(messages, start=1):
        text, meta, encoding = read_mail(_MBOX_QUOTED.sub(rb"\1", message))
        doc_id, where = f"{file.rel}#msg{number}", f"{file.url}: message {number}"
        if text.strip():
            yield Record(doc_id, text, file.source, meta=to_json(meta), encoding=encoding, where=where)
        else:
            yield Record(doc_id, text, file.source, reason="empty_text", detail=f"{where}: no text", where=where)


def _rejected(file: InputFile, reason: str, detail: str, text: str | None = None) -> Record:
    return Record(file.rel, text, file.source, reason=reason, detail=detail)


def to_json(meta: dict | None) -> str | None:
    return valid_unicode(json.dumps(meta, ensure_ascii=False, default=str)) if meta else None


# ---- one file, many documents --------------------------------------------------------------


def row_record(row: dict, file: InputFile, position: str, options: ReadOptions, encoding: str, where: str) -> Record:
    """A row of JSONL, CSV or Parquet: its id column (or the file's place), text, source; other fields -> meta."""
    doc_id, text = row.get(options.id_column), row.get(options.text_column)
    extra = {str(k): v for k, v in row.items() if k not in (options.id_column, options.text_column, "source")}
    return Record(id=str(doc_id) if doc_id not in (None, "") else f"{file.rel}#{position}",
                  text=valid_unicode(text) if isinstance(text, str) else text,
                  source=str(row.get("source") or file.stem), meta=to_json(extra), encoding=encoding, where=where)


def _jsonl_record(line: bytes, file: InputFile, line_number: int, options: ReadOptions) -> Record:
    text, encoding = decode_bytes(line)  # per line: one stray latin-1 line decodes on its own
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        problem = f"invalid JSON ({err.msg})"
    else:
        if isinstance(row, dict):
            return row_record(row, file, f"L{line_number}", options, encoding, f"{file.url}:{line_number}")
        problem = "expected a JSON object"
    return Record(f"{file.rel}#L{line_number}", None, file.stem, reason="invalid_record",
                  detail=f"{file.url}:{line_number}: {problem}")


def _stream_problem(err: Exception, file: InputFile) -> str:
    if isinstance(err, EOFError):
        return f"truncated {compression_of(file.url) or 'file'} stream"
    return f"{type(err).__name__}: {err}"


def read_jsonl(stream: BinaryIO, file: InputFile, options: ReadOptions, lines_before: int = 0) -> Iterator[Record]:
    line_number = lines_before
    try:
        for line_number, line in enumerate(stream, start=lines_before + 1):
            if line.strip():
                yield _jsonl_record(line, file, line_number, options)
    except STREAM_ERRORS as err:
        raise BadFile(f"{file.url}: {_stream_problem(err, file)} after line {line_number}") from err


def _sniff_encoding(head: bytes) -> tuple[str, str]:
    """(codec, label) for a whole streamed file, judged on its first bytes (cut at a line end)."""
    sample = head[: head.rfind(b"\n") + 1] or head
    if _try_decode(sample, "utf-8") is not None:
        return "utf-8", "utf-8"
    best = from_bytes(sample).best()
    codec = codec_name(best.encoding) if best else None
    return (codec, f"{codec} (detected)") if codec else ("utf-8", "utf-8 (replaced)")


def read_csv(stream: io.BufferedReader, file: InputFile, options: ReadOptions, head: bytes,
             part: Part | None = None) -> Iterator[Record]:
    """Rows of a CSV or TSV file with a header line; the text column is named by options.text_column.

    `head` is the start of the whole file (its encoding is judged there, whichever part is read); a part's
    stream is the header record followed by the part's own bytes."""
    codec, label = _sniff_encoding(head)
    text_stream = io.TextIOWrapper(stream, encoding=codec, errors="replace", newline="")
    # TSV (IANA) has no quoting: a '"' is text. Documents are long: lift csv's 128 KiB field limit.
    dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if file.kind == "tsv" else {}
    csv.field_size_limit(1 << 30)
    reader = csv.DictReader(text_stream, **dialect)
    shift = part.lines_before - part.header_lines if part and part.start else 0  # lines not read, before the part
    try:
        if reader.fieldnames and options.text_column not in reader.fieldnames:
            if shift:  # the part that starts the file reports it, once for the file
                return
            header = [name[:40] for name in reader.fieldnames[:8]]
            raise BadFile(f"{file.url}:1: no column {options.text_column!r} in the header {header} "
                          "(the first line must name the columns; set ingest.text_column)")
        for number, row in enumerate(reader, start=(part.rows_before if part else 0) + 1):
            replaced = label == "utf-8" and any("\ufffd" in v for v in row.values() if isinstance(v, str))
            yield row_record(row, file, f"row{number}", options, "utf-8 (replaced)" if replaced else label,
                             f"{file.url}:{reader.line_num + shift}")
    except csv.Error as err:
        raise BadFile(f"{file.url}:{reader.line_num + shift}: {err}") from err
    except STREAM_ERRORS as err:
        raise BadFile(f"{file.url}: {_stream_problem(err, file)} after line {reader.line_num + shift}") from err


def read_parquet(file: InputFile, part: Part | None, options: ReadOptions) -> Iterator[Record]:
    """Rows of a Parquet file's row groups (all of them, or a part's), one row group in memory at a time.

    A row group that cannot be read is one bad_file record; the others are still read (the footer says how
    many rows it held, so the ids after it do not move)."""
    try:
        with fsspec.open(file.url, "rb") as raw:
            parquet = pq.ParquetFile(raw)
            groups = range(part.start, part.end) if part else range(parquet.num_row_groups)
            position = part.rows_before if part else 0
            for group in groups:
                yield from _row_group_records(parquet, group, position, file, options)
                position += parquet.metadata.row_group(group).num_rows
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is no Parquet
        raise BadFile(f"{file.url}: {type(err).__name__}: {err}") from err


def _row_group_records(parquet: pq.ParquetFile, group: int, position: int, file: InputFile,
                       options: ReadOptions) -> Iterator[Record]:
    try:
        table = parquet.read_row_group(group)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for a corrupt page
        yield _rejected(file, "bad_file", f"{file.url}: row group {group}: {type(err).__name__}: {err}")
        return
    for batch in table.to_batches(max_chunksize=1024):  # Python objects for one batch at a time
        for row in batch.to_pylist():
            position += 1
            # Parquet strings are UTF-8
            yield row_record(row, file, f"row{position}", options, "utf-8", f"{file.url}: row {position}")


# ---- opening ------------------------------------------------------------------------------


class _ZstdReader(io.RawIOBase):
    """zstandard's stream_reader ends quietly at a truncated frame; this raises EOFError, as gzip does."""

    def __init__(self, raw: BinaryIO):
        self._raw, self._pending = raw, b""
        self._dctx = zstandard.ZstdDecompressor()
        self._frame = self._dctx.decompressobj()
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                if self._started and not self._frame.eof:
                    raise EOFError("truncated zstd stream")
                return 0
            self._started = True
            self._pending = self._decompress(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size

    def _decompress(self, chunk: bytes) -> bytes:
        out = self._frame.decompress(chunk)
        while self._frame.eof and self._frame.unused_data:  # concatenated frames (pzstd, appended logs)
            rest, self._frame = self._frame.unused_data, self._dctx.decompressobj()
            out += self._frame.decompress(rest)
        return out


def open_stream(raw: BinaryIO, name: str) -> io.BufferedReader:
    """A buffered, decompressed view of a file, whose first bytes can be peeked at."""
    compression = compression_of(name)
    if compression == "gzip":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"))
    if compression == "zstd":
        return io.BufferedReader(_ZstdReader(raw))
    if compression == "bzip2":
        return io.BufferedReader(bz2.BZ2File(raw, mode="rb"))
    if compression == "xz":
        return io.BufferedReader(lzma.LZMAFile(raw, mode="rb"))
    return io.BufferedReader(raw) if not isinstance(raw, io.BufferedReader) else raw


class _Ranges(io.RawIOBase):
    """The bytes of a stream at some (start, end) ranges, one after the other: a CSV part is its file's header
    and then its own range. A plain file seeks to a range; a compressed stream cannot seek, so it is
    decompressed from its start and the bytes before the range are read and dropped."""

    def __init__(self, stream: io.BufferedReader, ranges: list[tuple[int, int | None]]):
        self._stream, self._ranges, self._position = stream, list(ranges), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._ranges:
            start, end = self._ranges[0]
            self._skip_to(start)
            wanted = len(buffer) if end is None else min(len(buffer), end - self._position)
            data = self._stream.read(wanted) if wanted > 0 else b""
            if data:
                buffer[:len(data)] = data
                self._position += len(data)
                return len(data)
            self._ranges.pop(0)
        return 0

    def _skip_to(self, start: int) -> None:
        if self._position >= start:
            return
        if self._stream.seekable():  # a plain file (gzip's own seek decompresses from the start too)
            self._position = self._stream.seek(start)
            return
        while self._position < start and (data := self._stream.read(min(start - self._position, 1 << 20))):
            self._position += len(data)


def _part_stream(stream: io.BufferedReader, part: Part) -> io.BufferedReader:
    ranges = [(0, part.header_bytes)] if part.start and part.header_bytes else []
    return io.BufferedReader(_Ranges(stream, ranges + [(part.start, part.end)]))


def read_streamed(file: InputFile, options: ReadOptions, part: Part | None = None) -> Iterator[Record]:
    with fsspec.open(file.url, "rb") as raw:
        stream = open_stream(raw, file.url)
        try:
            peeked = stream.peek(SNIFF_BYTES)
        except STREAM_ERRORS as err:
            raise BadFile(f"{file.url}: {_stream_problem(err, file)} at the start") from err
        if what := binary_kind(peeked[:SNIFF_BYTES]):
            yield _rejected(file, "binary_file", f"{file.url}: {what}")
            return
        if part:
            stream = _part_stream(stream, part)
        if file.kind == "jsonl":
            yield from read_jsonl(stream, file, options, part.lines_before if part else 0)
        else:
            yield from read_csv(stream, file, options, peeked, part)


def read_file(file: InputFile, options: ReadOptions, part: Part | None = None) -> Iterator[Record]:
    """Every record of one input file, or of one part of it."""
    if file.kind == "parquet":
        yield from read_parquet(file, part, options)
    elif file.kind in STREAMED:
        yield from read_streamed(file, options, part)
    elif file.kind == "mbox":
        with fsspec.open(file.url, "rb") as f:
            yield from read_mbox(f.read(), file)
    else:
        with fsspec.open(file.url, "rb") as f:
            data = f.read()
        yield read_whole_file(data, file, options)


# ---- hashing, and where units may start ---------------------------------------------------------

# A compressed file is decompressed to find its parts only when it may hold more than one unit: text
# rarely compresses more than this, and a file left whole is still read right, only by one worker.
MAX_COMPRESSION = 16
_QUOTED_REST = re.compile(rb'(?:[^"]|"")*+')  # inside a quoted CSV field, up to its closing quote
_UNQUOTED = re.compile(rb"[^,\r\n]*+")  # an unquoted field, or what follows a closing quote: quotes are text


class _Hashing(io.RawIOBase):
    """Reads a file through sha256, so one pass both hashes it and finds where its units may start."""

    def __init__(self, raw: BinaryIO):
        self._raw, self.sha256 = raw, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        buffer[:len(data)] = data
        self.sha256.update(data)
        return len(data)

    def hexdigest(self) -> str:
        """The digest of the whole file: whatever was not read yet is read now."""
        while data := self._raw.read(1 << 20):
            self.sha256.update(data)
        return self.sha256.hexdigest()


def hash_and_layout(file: InputFile, size: int, unit_bytes: int) -> tuple[str, Layout]:
    """The sha256 of a file's bytes and, from the same read, its Layout for units of about `unit_bytes`."""
    with fsspec.open(file.url, "rb") as raw:
        hashing = _Hashing(raw)
        if file.kind in STREAMED:
            layout = _streamed_layout(hashing, file, size, unit_bytes)
            return hashing.hexdigest(), layout
        digest = hashing.hexdigest()
        return digest, parquet_layout(raw, unit_bytes) if file.kind == "parquet" else Layout()


def parquet_layout(raw: BinaryIO, unit_bytes: int) -> Layout:
    """Consecutive row groups of up to `unit_bytes` (uncompressed) per part; a bigger row group is a part alone."""
    try:
        parquet = pq.ParquetFile(raw)
        metadata, columns = parquet.metadata, tuple(parquet.schema_arrow.names)
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError ... for a file that is no Parquet
        return Layout(problem=f"not a readable Parquet file ({type(err).__name__}: {err})")
    parts, start, rows_before, num_rows, num_bytes = [], 0, 0, 0, 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).total_byte_size
        if group > start and num_bytes + size > unit_bytes:
            parts.append(Part(start, group, rows_before))
            start, rows_before, num_bytes = group, rows_before + num_rows, 0
            num_rows = 0
        num_rows += metadata.row_group(group).num_rows
        num_bytes += size
    parts.append(Part(start, metadata.num_row_groups, rows_before))
    return Layout(tuple(parts) if len(parts) > 1 else (), columns)


def _streamed_layout(hashing: _Hashing, file: InputFile, size: int, unit_bytes: int) -> Layout:
    if size * (MAX_COMPRESSION if compression_of(file.url) else 1) <= unit_bytes:
        return Layout()
    stream = open_stream(hashing, file.url)
    try:
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        # a part starts after a b"\n": no split for binary files, nor UTF-16, where that byte is half a character
        if binary_kind(head) or head.startswith(_UTF16_BOMS):
            return Layout()
        if file.kind == "jsonl":
            parts = _jsonl_parts(stream, unit_bytes)
        else:
            parts = _table_parts(stream, unit_bytes, quoted=file.kind == "csv")
    except STREAM_ERRORS:  # a broken stream is read as one unit, which reports where it broke
        return Layout()
    return Layout(tuple(parts) if len(parts) > 1 else ())


def _jsonl_parts(stream: BinaryIO, unit_bytes: int) -> list[Part]:
    """Parts starting at the first non-blank line past each `unit_bytes` (so every part holds a record)."""
    starts, offset, next_cut = [(0, 0)], 0, unit_bytes
    for number, line in enumerate(stream):
        if offset >= next_cut and not line.isspace():
            starts.append((offset, number))
            next_cut = offset + unit_bytes
        offset += len(line)
    return [Part(start, end, lines, lines) for (start, lines), (end, _) in zip(starts, starts[1:] + [(None, 0)])]


def _table_parts(stream: BinaryIO, unit_bytes: int, quoted: bool) -> list[Part]:
    """CSV/TSV parts starting at a record past each `unit_bytes`: a line start outside quotes, as Python's csv
    reads it (a '"' opens a quoted field only at a field's start; "" inside one is a quote). Each part is read
    after the header record. Files with a bare CR (which csv also takes as a line end) stay whole."""
    starts, header, in_quotes = [], None, False
    offset = num_lines = num_rows = 0
    next_cut = unit_bytes
    for line in stream:
        if line.count(b"\r") > line.endswith(b"\r\n"):
            return []
        if not in_quotes:
            if header is None and line in (b"\n", b"\r\n"):
                return []  # csv takes a blank first line as an empty header
            if header is not None and offset >= next_cut and not line.isspace():
                starts.append((offset, num_lines, num_rows))
                next_cut = offset + unit_bytes
            num_rows += line not in (b"\n", b"\r\n")  # DictReader skips blank records
        if quoted and (in_quotes or b'"' in line):
            in_quotes = _ends_in_quotes(line, in_quotes)
        offset, num_lines = offset + len(line), num_lines + 1
        if header is None and not in_quotes:
            header, num_rows = (offset, num_lines), 0
    if not starts:
        return []
    header_bytes, header_lines = header
    starts = [(0, 0, 0)] + starts
    return [Part(start, end, rows, lines, header_bytes, header_lines)
            for (start, lines, rows), (end, _, _) in zip(starts, starts[1:] + [(None, 0, 0)])]


def _ends_in_quotes(line: bytes, in_quotes: bool) -> bool:
    """Whether a CSV line ends inside a quoted field, given whether it starts inside one."""
    position = 0
    if not in_quotes and line.startswith(b'"'):
        in_quotes, position = True, 1
    while True:
        if in_quotes:
            position = _QUOTED_REST.match(line, position).end()
            if position == len(line):
                return True
            position += 1  # the closing quote
        position = _UNQUOTED.match(line, position).end()
        if position == len(line) or line[position] != ord(","):
            return False
        position += 1
        in_quotes = line.startswith(b'"', position)
        position += in_quotes
