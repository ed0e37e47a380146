"""Quality rules on real prose (Moby-Dick, State of the Union) and on documents built to fail one rule each."""

import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.data.quality import (
    DUP_NGRAM_SIZES,
    QUALITY_RULES,
    QUALITY_SIGNALS,
    STOP_WORDS,
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    _ngram_ids,
    _word_arrays,
    c4_filter_lines,
    c4_signals,
    fineweb_signals,
    first_quality_failure,
    gopher_quality_signals,
    gopher_repetition_signals,
    quality_signals,
    words,
)
from tests.conftest import DATA, sotu_speeches

CHAPTER_1 = (DATA / "tiny" / "chapter_1.txt").read_text()
# real, distinct sentences to build test documents from
SENTENCES = sorted({s.strip() for path in sorted((DATA / "tiny").glob("*.txt"))
                    for s in re.split(r"(?<=[.!?])\s+", path.read_text().replace("\n", " ")) if len(s.split()) >= 6})


def default_configs(**changes) -> dict:
    english = GopherQualityConfig(stop_words=list(STOP_WORDS))  # as LANGUAGE_DEFAULTS sets it for English
    configs = {"gopher_repetition": GopherRepetitionConfig(), "gopher_quality": english,
               "c4": C4Config(), "fineweb": FineWebConfig()}
    return configs | changes


def failure(text: str, **configs) -> tuple[str, str] | None:
    cfg = default_configs(**configs)
    return first_quality_failure(quality_signals(text, cfg["c4"], cfg["fineweb"].short_line_chars), cfg)


def reason(text: str, **configs) -> str | None:
    result = failure(text, **configs)
    return result[0] if result else None


def unique_words(num: int, seed: int = 0, length: tuple[int, int] = (4, 8)) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("bcdfghjklmnprstvwz") for _ in range(rng.randint(*length))) for _ in range(num)]


def prose(num_sentences: int, start: int = 0) -> list[str]:
    return SENTENCES[start : start + num_sentences]


# --- real text passes ---

@pytest.mark.parametrize("chapter", ["chapter_1.txt", "chapter_2.txt", "chapter_9.txt", "chapter_16.txt"])
def test_moby_dick_chapters_pass_every_rule(chapter):
    assert failure((DATA / "tiny" / chapter).read_text()) is None


def test_state_of_the_union_speeches_pass_every_rule():
    speeches = sotu_speeches()[200:215]  # 1990s-2010s: speech text, no budget tables
    assert [s["id"] for s in speeches if failure(s["text"])] == []


# --- each rule, on a document built to fail it first ---

def test_gopher_repetition_rules():
    paragraph = " ".join(prose(3))
    assert reason("\n\n".join([paragraph] * 3 + prose(3, 10))) == "gopher_repetition:dup_para_frac"
    long_paragraph = " ".join(prose(12, 20))
    two_long = [long_paragraph, long_paragraph]
    assert reason("\n\n".join(prose(10, 40) + two_long)) == "gopher_repetition:dup_para_char_frac"
    assert reason("\n".join(prose(3) * 3 + prose(3, 10))) == "gopher_repetition:dup_line_frac"
    assert reason("\n".join(prose(10, 40) + two_long)) == "gopher_repetition:dup_line_char_frac"


@pytest.mark.parametrize("n", [2, 3, 4])
def test_top_ngram_rules(n):
    # the n-gram's first n-1 words are short, so the (n-1)-gram that ties with it covers few characters
    phrase = " ".join(["a", "b", "c"][: n - 1] + ["whalebonecorsetry"])
    text = " ".join(f"{phrase} {word}" for word in unique_words(80))
    assert reason(text) == f"gopher_repetition:top_{n}gram_char_frac"


def test_duplicated_ngram_rule():
    filler = unique_words(160, length=(8, 12))
    text = " ".join(f"a b c d harpooneerswhalebone {filler[2 * i]} {filler[2 * i + 1]}" for i in range(80))
    assert reason(text) == "gopher_repetition:dup_5gram_char_frac"


def test_gopher_quality_rules():
    sentence_words = " ".join(prose(30)).split()
    assert reason(" ".join(sentence_words[:40])) == "gopher_quality:word_count"
    assert reason(" ".join(unique_words(200, length=(1, 2)))) == "gopher_quality:mean_word_length"
    assert reason(" ".join(unique_words(200, length=(12, 16)))) == "gopher_quality:mean_word_length"
    every_fifth = [i % 5 == 0 for i in range(len(sentence_words))]
    assert reason(" ".join(f"#{w}" if mark else w for w, mark in zip(sentence_words, every_fifth))) == \
        "gopher_quality:hash_ratio"
    assert reason(" ".join(f"{w}..." if mark else w for w, mark in zip(sentence_words, every_fifth))) == \
        "gopher_quality:ellipsis_ratio"
    assert reason("\n".join(f"• {s}" for s in prose(30))) == "gopher_quality:bullet_lines"
    assert reason("\n".join(s.rstrip(".!?") + "…" for s in prose(30))) == "gopher_quality:ellipsis_lines"
    numbers = " ".join(f"{w} {i * 17}" for i, w in enumerate(sentence_words[:200]))
    assert reason(numbers) == "gopher_quality:alpha_words"
    assert reason(" ".join(unique_words(120)) + ".") == "gopher_quality:stop_words"


def test_c4_rules():
    body = "\n".join(prose(10))
    assert reason(body + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.") == "c4:lorem_ipsum"
    assert reason(body + "\nThe harpoon was darted at the whale {with great force}.") == "c4:curly_bracket"
    unpunctuated = "\n".join(s.rstrip(".!?'\"”’") for s in prose(20))
    assert reason(unpunctuated + "\nCall me Ishmael. Some years ago I went to sea.") == "c4:too_few_sentences"


def test_c4_lines_that_doom_the_document_only_count_when_they_survive_the_line_rules():
    body = "\n".join(prose(10))
    assert reason(body + "\nfunction f() { return 1 }") is None  # unpunctuated: dropped as a line first
    assert reason(body + "\nThe harpoon was darted {with force}.", c4=C4Config(reject_curly_bracket=False)) is None


def test_fineweb_rules():
    sentences = prose(100)
    few_punctuated = [s.rstrip(".!?'\"”’") if i % 10 else s for i, s in enumerate(sentences)]
    assert reason("\n".join(few_punctuated)) == "fineweb:line_punct_ratio"
    short = [" ".join(s.split()[:3]).rstrip(".,;!?") for s in prose(70, 100)]
    assert reason("\n".join(short + prose(30, 200))) == "fineweb:short_line_ratio"
    long_line = " ".join(prose(6, 300))
    assert reason("\n".join(prose(60, 400) + [long_line, long_line])) == "fineweb:dup_line_char_frac"
    # three words a line, too long to be short lines, with a stop word each for Gopher
    long_words = unique_words(80, length=(13, 13))
    listy = [f"the {long_words[2 * i]} {long_words[2 * i + 1]}." for i in range(40)]
    assert reason("\n".join(listy)) == "fineweb:list_ratio"


def test_a_single_unwrapped_line_can_be_spared_by_the_punctuation_rule():
    speech = " ".join(prose(40)) + " (Applause"  # one line, no line breaks, ends without punctuation
    assert reason(speech, c4=C4Config(enabled=False)) == "fineweb:line_punct_ratio"
    assert reason(speech, c4=C4Config(enabled=False), fineweb=FineWebConfig(line_punct_exclude_zero=True)) is None


def test_detail_names_the_measured_value_and_the_threshold():
    name, detail = failure(" ".join(" ".join(prose(30)).split()[:40]))
    assert name == "gopher_quality:word_count"
    assert detail == "gopher_num_words 40 < min_words 50"


def test_thresholds_are_configurable_and_groups_can_be_switched_off():
    text = "\n".join(f"• {s}" for s in prose(30))
    assert reason(text) == "gopher_quality:bullet_lines"
    assert reason(text, gopher_quality=GopherQualityConfig(max_bullet_lines_ratio=1.0)) is None
    assert reason(text, gopher_quality=GopherQualityConfig(enabled=False)) is None


def test_rule_order_is_deterministic_and_the_first_failure_is_recorded():
    # repeated bullet lines fail both repetition and bullet rules; repetition comes first
    text = "\n".join(f"• {s}" for s in prose(3) * 5)
    assert reason(text) == "gopher_repetition:dup_line_frac"
    assert list(QUALITY_RULES) == ["gopher_repetition", "gopher_quality", "c4", "fineweb"]


def test_c4_filter_lines_drops_lines_and_keeps_paragraphs():
    text = ("CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago I went to sea.\nClick here\n\n"
            "Enable JavaScript to read this page.\nIt is a way I have of driving off the spleen.")
    assert c4_filter_lines(text, C4Config()) == ("CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago I went to sea."
                                                 "\n\nIt is a way I have of driving off the spleen.")
    assert c4_signals(text, C4Config())["c4_lines_dropped"] == 2


def test_every_signal_has_a_declared_column_type():
    signals = quality_signals(CHAPTER_1, C4Config(), 30)
    assert set(signals) == set(QUALITY_SIGNALS)
    assert all(isinstance(value, QUALITY_SIGNALS[name]) for name, value in signals.items())


# --- properties ---

def datatrove_find_all_duplicate(all_words: list[str], n: int) -> int:
    """datatrove's gopher_repetition_filter.find_all_duplicate, transcribed: the reference for our numpy walk."""
    unique, repeated_chars, idx = set(), 0, 0
    while idx < len(all_words) - n + 1:
        n_gram = "".join(all_words[idx : idx + n])
        if n_gram in unique:
            repeated_chars += len(n_gram)
            idx += n
        else:
            unique.add(n_gram)
            idx += 1
    return repeated_chars


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "ccc", "the", "whale"]), max_size=60))
def test_duplicate_ngram_chars_match_datatrove(all_words):
    text = " ".join(all_words)
    signals = gopher_repetition_signals(text)
    ids, _ = _word_arrays(words(text))
    assert max((n for n, _, _ in _ngram_ids(ids, 10)), default=1) == min(max(len(all_words), 1), 10)
    for n in DUP_NGRAM_SIZES:
        expected = datatrove_find_all_duplicate(all_words, n) / max(len(text), 1)
        assert math.isclose(signals[f"gopher_dup_{n}gram_char_frac"], expected), n


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_signal_functions_never_raise_and_give_finite_numbers(text):
    for signals in (gopher_quality_signals(text), gopher_repetition_signals(text), c4_signals(text, C4Config()),
                    fineweb_signals(text)):
        assert all(math.isfinite(v) and v >= 0 for v in signals.values())
    c4_filter_lines(text, C4Config())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["The whale.", "", "• a list item", "Call me Ishmael", "{", "...", "# 1", "\t"]),
                max_size=30))
def test_signal_functions_on_line_soup(lines):
    text = "\n".join(lines)
    assert set(quality_signals(text, C4Config(filter_lines=True), 30)) == set(QUALITY_SIGNALS)
