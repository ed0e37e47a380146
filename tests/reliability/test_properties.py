"""Properties over any input, with hypothesis: the readers never raise on any bytes, and the text functions are
idempotent. tests/tasks/test_clean.py, test_pii.py and test_quality.py already check that normalize_whitespace is
idempotent and that cleaning, scrubbing and the quality signals never raise on any string."""

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.data.clean import CleanConfig, clean_document, repair
from tasks.data.pii import PiiConfig, scrub_pii
from tasks.data.readers import (
    InputFile,
    ReadOptions,
    _jsonl_record,
    binary_kind,
    decode_bytes,
    looks_like_mail,
    read_whole_file,
    valid_unicode,
)

CFG = CleanConfig()
OPTIONS = ReadOptions()
TEXT_FILE = InputFile("in/doc.txt", "in/doc.txt", "text_or_mail")
HTML_FILE = InputFile("in/page.html", "in/page.html", "html")
MAIL_HEAD = b"From: a@b.org\nTo: c@d.org\nSubject: hi\nContent-Type: text/plain; charset=koi8-r\n\n"
# bytes that look like text, mail, HTML or nothing at all
any_bytes = st.binary(max_size=600) | st.builds(lambda b: MAIL_HEAD + b, st.binary(max_size=300)) | \
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
prose_like = st.text(alphabet=st.sampled_from("ab cd\n\t.é€Ã©â€™\u00a0\u200b@0123456789-:<>"), max_size=120) \
    | st.text()


def encodes(text: str) -> bool:
    text.encode("utf-8")
    return True


@settings(max_examples=300, deadline=None)
@given(any_bytes)
@example(b"\xed\xa0\x80")  # a UTF-8-encoded surrogate
@example(b"\xff\xfe" + "utf-16 text".encode("utf-16-le"))
def test_decoding_any_bytes_gives_valid_unicode(data):
    text, how = decode_bytes(data)
    assert encodes(text) and how
    binary_kind(data)
    looks_like_mail(data)


@settings(max_examples=200, deadline=None)
@given(st.text() | st.builds(lambda t: t + "\udcff\ud800", st.text(max_size=20)))
def test_valid_unicode_always_encodes_and_keeps_what_was_valid(text):
    fixed = valid_unicode(text)
    assert encodes(fixed)
    if "\ud800" not in text and "\udcff" not in text and not any("\ud800" <= c <= "\udfff" for c in text):
        assert fixed == text


@settings(max_examples=300, deadline=None)
@given(any_bytes, st.sampled_from([TEXT_FILE, HTML_FILE]))
def test_a_whole_file_of_any_bytes_is_a_document_or_a_rejection_with_a_reason(data, file):
    record = read_whole_file(data, file, OPTIONS)
    assert (record.reason is None) == (record.detail is None)
    if record.reason is None:
        assert record.text.strip() and encodes(record.text)
    else:
        assert file.url in record.detail


@settings(max_examples=300, deadline=None)
@given(any_bytes | st.dictionaries(st.sampled_from(["id", "text", "source", "x"]),
                                   st.none() | st.integers() | st.text() | st.lists(st.integers()))
       .map(lambda d: json.dumps(d).encode()))
def test_a_jsonl_line_of_any_bytes_is_a_row_or_an_invalid_record_naming_the_line(line):
    record = _jsonl_record(line, TEXT_FILE, 7, OPTIONS)
    if record.reason:
        assert record.reason == "invalid_record" and record.detail.startswith("in/doc.txt:7: ")
    else:
        assert record.where == "in/doc.txt:7" and (record.text is None or not isinstance(record.text, str)
                                                  or encodes(record.text))


@settings(max_examples=200, deadline=None)
@given(prose_like)
@example("\x81À§")
def test_repair_is_idempotent(text):
    once = repair(text, CFG)
    assert repair(once, CFG) == once


@settings(max_examples=200, deadline=None)
@given(prose_like)
def test_scrubbing_pii_twice_finds_nothing_new(text):
    once, _ = scrub_pii(text, PiiConfig())
    twice, counts = scrub_pii(once, PiiConfig())
    assert twice == once and not any(counts.values())


@settings(max_examples=100, deadline=None)
@given(prose_like)
@example("€©\u200b")  # dropping the zero-width space joins new mojibake: repair needs a second round
def test_cleaning_a_cleaned_document_changes_nothing(text):
    once, signals = clean_document(text, CFG)
    twice, again = clean_document(once, CFG)
    assert twice == once and again["num_chars"] == signals["num_chars"]
