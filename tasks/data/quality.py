"""Quality signals and the rules that read them: Gopher repetition and quality, C4, FineWeb.

A signal is a number measured once per document and stored as a column of the clean shards.
A rule compares one stored signal with one configured threshold and, when the document fails,
says so in words that name the value and the threshold. Changing a threshold therefore
re-filters stored columns; nothing here is measured twice.

Definitions follow datatrove (huggingface/datatrove, src/datatrove/pipeline/filters/), which
implements the papers: Gopher, Rae et al. 2021, appendix A1 and table A1
(gopher_quality_filter.py, gopher_repetition_filter.py); C4, Raffel et al. 2020 section 2.2
and tensorflow_datasets' c4_utils.py (c4_filters.py); FineWeb, Penedo et al. 2024 section 3
(fineweb_quality_filter.py). Where this module departs from datatrove a comment says why.
Words are whitespace tokens with punctuation trimmed from their ends, where datatrove uses
NLTK's tokenizer (which needs a download we may not make at run time). Scripts written without
spaces (Han, kana, Thai, Lao, Khmer, Myanmar) have no whitespace words: there each character (with
its combining marks) is a token, so word n-grams become character n-grams, and the thresholds that
count words take per-language values (LANGUAGE_DEFAULTS, `clean.per_language`). A dictionary
segmenter (jieba, MeCab, pythainlp) would need data per language and cost far more a document.
"""

import bisect
import itertools
import operator
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's list
# datatrove's ASCII set plus the typographic closing quotes that ftfy (conservatively) leaves in place, and the
# full stops of other scripts: CJK (。！？ and closing brackets), Arabic (؟ ۔), Devanagari (। ॥)
CJK_TERMINAL_PUNCT = ("。", "！", "？", "｡", "」", "』", "）")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "»", *CJK_TERMINAL_PUNCT, "؟", "۔", "।", "॥")
ELLIPSES = ("...", "…")
BULLETS = ("•", "-", "*", "‣", "◦", "▪")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
_EDGE_PUNCT = string.punctuation + "“”‘’«»—–…¿¡·•、。，．！？：；「」『』（）【】〈〉《》・〜ー؟،؛।॥"
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# a whitespace token holding a letter (\w that is neither a digit nor "_"), found at C speed
_WORD_WITH_LETTER = re.compile(r"(?<!\S)\S*?[^\W\d_]\S*")
# Sentence ends inside a line; an approximation of NLTK's punkt, which C4 used (it over-counts "Mr.").
# A CJK full stop needs no space after it: those scripts put none. The pattern opens with one character class,
# so that the regex engine skips to the next full stop at C speed (an alternation of classes tries each one at
# every character); the lookbehind then says which kind of full stop it was.
_SENTENCE_END = re.compile(r"[.!?…؟।。！？｡](?:(?<=[.!?…؟।])[.!?…؟।]*[\"'”’»)\]]*(?=\s|$)|(?<=[。！？｡])[。！？｡]*[」』）]*)")


def _script_class(*blocks: tuple[int, int]) -> tuple[str, str]:
    """Regex classes of the base characters and of the combining marks in these Unicode blocks, as ranges:
    a class listing 90,000 characters one by one is scanned one by one."""
    def ranges(keep) -> str:
        codes = [code for start, end in blocks for code in range(start, end + 1) if keep(unicodedata.category(chr(code)))]
        runs, first = [], None
        for previous, code in zip([None, *codes], codes):
            if previous is None or code != previous + 1:
                if first is not None:
                    runs.append((first, previous))
                first = code
        runs += [(first, codes[-1])] if codes else []
        return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in runs)

    return f"[{ranges(lambda cat: cat[0] in 'LN')}]", f"[{ranges(lambda cat: cat[0] == 'M')}]*"


# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, kana, CJK ideographs, halfwidth kana.
_UNSPACED_BASE, _UNSPACED_MARKS = _script_class(
    (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x2FA1F))
_UNSPACED = re.compile(_UNSPACED_BASE)
# one character of an unspaced script with its marks, or a run of anything else but space
_TOKEN = re.compile(rf"{_UNSPACED_BASE}{_UNSPACED_MARKS}|(?:(?!{_UNSPACED_BASE})\S)+")
_LETTER = re.compile(r"[^\W\d_]")


# --- how a text splits; cached because every signal group reads the same split of one document ---

@lru_cache(maxsize=4)
def content_lines(text: str) -> tuple[str, ...]:
    """Non-empty lines, stripped. Blank lines are layout: counting them would make any prose whose
    paragraphs are separated by a blank line look half made of short, unpunctuated lines."""
    return tuple(stripped for line in text.split("\n") if (stripped := line.strip()))


def split_tokens(text: str) -> list[str]:
    """Whitespace tokens; in scripts written without spaces, each character (with its marks) is a token."""
    return text.split() if text.isascii() or not _UNSPACED.search(text) else _TOKEN.findall(text)


@lru_cache(maxsize=4)
def tokens(text: str) -> tuple[str, ...]:
    return tuple(split_tokens(text))


class Words(NamedTuple):
    ids: np.ndarray  # (num_words,) equal words, equal ids (each below num_words)
    vocabulary: dict[str, int]  # each distinct word's id
    lengths: np.ndarray  # (num_words,) characters in each word


@lru_cache(maxsize=4)
def word_ids(text: str) -> Words:
    all_words = _trimmed(tokens(text))
    ids, vocabulary = _word_arrays(all_words)
    return Words(ids, vocabulary, np.fromiter(map(len, all_words), dtype=np.int64, count=len(all_words)))


def _trimmed(all_tokens: Sequence[str]) -> list[str]:
    """Each token with punctuation trimmed from its ends; tokens that were all punctuation go."""
    return list(filter(None, map(str.strip, all_tokens, itertools.repeat(_EDGE_PUNCT))))


def words(text: str) -> tuple[str, ...]:
    """The text's words; the signals read them as ids (`word_ids`)."""
    return tuple(_trimmed(tokens(text)))


def _word_arrays(all_words: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
    """Words as integer ids (equal words, equal ids) and each distinct word's id, in a map at C speed:
    setdefault keeps the number that a word's first occurrence drew from the counter."""
    vocabulary: dict[str, int] = {}
    ids = np.fromiter(map(vocabulary.setdefault, all_words, itertools.count()), dtype=np.int64, count=len(all_words))
    return ids, vocabulary


def _share(items: Iterable[Any], predicate: Callable[[Any], bool]) -> float:
    items = list(items)
    return sum(1 for item in items if predicate(item)) / len(items) if items else 0.0


def _duplicates(items: Iterable[str]) -> tuple[int, int]:
    """(number, characters) of the items that repeat an earlier one: datatrove's find_duplicates."""
    seen: set[str] = set()
    num, chars = 0, 0
    for item in items:
        if item in seen:
            num, chars = num + 1, chars + len(item)
        else:
            seen.add(item)
    return num, chars


@lru_cache(maxsize=4)
def _duplicate_lines(text: str) -> tuple[int, int]:
    return _duplicates(content_lines(text))


# --- Gopher quality (Rae et al. 2021, A1.1) ---

# str.split() splits ASCII text at these too, bytes.split() does not
_ASCII_SEPARATORS = bytes.maketrans(b"\x1c\x1d\x1e\x1f", b"    ")
_ASCII_NEITHER_LETTER_NOR_SPACE = bytes(code for code in range(128) if not (chr(code).isalpha() or chr(code).isspace()))


def _alpha_words_ratio(text: str, all_tokens: tuple[str, ...]) -> float:
    if not all_tokens:
        return 0.0
    if text.isascii():  # without its other characters, a token with no letter is gone: 5x faster than the regex
        lettered = text.encode("ascii").translate(_ASCII_SEPARATORS, _ASCII_NEITHER_LETTER_NOR_SPACE).split()
        return len(lettered) / len(all_tokens)
    if _UNSPACED.search(text):
        return sum(1 for token in all_tokens if _LETTER.search(token)) / len(all_tokens)
    return len(_WORD_WITH_LETTER.findall(text)) / len(all_tokens)  # the same count for whitespace tokens, at C speed


@lru_cache(maxsize=64)
def _stop_word_kinds(stop_words: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(words, substrings): a stop word written in a script without spaces (の, ที่) is no token of its own."""
    unspaced = tuple(word for word in stop_words if _UNSPACED.search(word))
    return frozenset(word.lower() for word in stop_words if word not in unspaced), unspaced


def count_stop_words(text: str, all_words: Words, stop_words: Iterable[str]) -> int:
    spaced, unspaced = _stop_word_kinds(tuple(stop_words))
    count = sum(map(text.count, unspaced))
    vocabulary = all_words.vocabulary  # each distinct word lowered once, times its occurrences
    if stop_ids := list(itertools.compress(vocabulary.values(), map(spaced.__contains__, map(str.lower, vocabulary)))):
        count += int(np.bincount(all_words.ids, minlength=len(all_words.ids))[stop_ids].sum())
    return count


def gopher_quality_signals(text: str, stop_words: Iterable[str] = STOP_WORDS) -> dict[str, float]:
    all_words, lines = word_ids(text), content_lines(text)
    num_words = len(all_words.ids)
    per_word = max(num_words, 1)
    return {
        "gopher_num_words": num_words,
        "gopher_mean_word_length": int(all_words.lengths.sum()) / num_words if num_words else 0.0,
        "gopher_hash_ratio": text.count("#") / per_word,
        "gopher_ellipsis_ratio": sum(text.count(e) for e in ELLIPSES) / per_word,
        "gopher_bullet_lines_ratio": _share(lines, lambda line: line.startswith(BULLETS)),
        "gopher_ellipsis_lines_ratio": _share(lines, lambda line: line.endswith(ELLIPSES)),
        # Gopher: "80% of words contain at least one alphabetic character"; a lone "—" or "&" is a word without one
        "gopher_alpha_words_ratio": _alpha_words_ratio(text, tokens(text)),
        "gopher_stop_words": count_stop_words(text, all_words, stop_words),
    }


# --- Gopher repetition (Rae et al. 2021, A1.1 and table A1) ---

_TOP_NGRAM_SIGNALS = {n: f"gopher_top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES}
_DUP_NGRAM_SIGNALS = {n: f"gopher_dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES}


def gopher_repetition_signals(text: str) -> dict[str, float]:
    num_chars = max(len(text), 1)
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    lines = content_lines(text)
    dup_paragraphs, dup_paragraph_chars = _duplicates(paragraphs)
    dup_lines, dup_line_chars = _duplicate_lines(text)
    signals = {
        "gopher_dup_para_frac": dup_paragraphs / len(paragraphs) if paragraphs else 0.0,
        "gopher_dup_para_char_frac": dup_paragraph_chars / num_chars,
        "gopher_dup_line_frac": dup_lines / len(lines) if lines else 0.0,
        "gopher_dup_line_char_frac": dup_line_chars / num_chars,
    }
    signals |= dict.fromkeys([*_TOP_NGRAM_SIGNALS.values(), *_DUP_NGRAM_SIGNALS.values()], 0.0)
    all_words = word_ids(text)
    word_starts = [0, *np.cumsum(all_words.lengths).tolist()]  # characters before each word
    for n, top, repeats in _ngram_ids(all_words.ids, max(DUP_NGRAM_SIZES)):
        if n in _TOP_NGRAM_SIGNALS:
            start, count = top
            chars = (word_starts[start + n] - word_starts[start] + n - 1) * count  # with the spaces inside
            signals[_TOP_NGRAM_SIGNALS[n]] = chars / num_chars
        if n in _DUP_NGRAM_SIGNALS:
            signals[_DUP_NGRAM_SIGNALS[n]] = _duplicate_ngram_chars(repeats, word_starts, n) / num_chars
    return signals


class NgramSize(NamedTuple):
    """What the signals read of one n-gram size; each part only for the sizes whose signal reads it (else None)."""
    n: int
    top: tuple[int, int] | None  # (first position, occurrences) of the most frequent n-gram, the earliest of equals
    repeats: list[tuple[int, int]] | None  # (position, first position of its n-gram) where an n-gram occurs again


def _ngram_ids(ids: np.ndarray, max_n: int) -> Iterator[NgramSize]:
    """Each n-gram size from 2 to max_n, as NgramSize; an n-gram is named by its first position.

    An n-gram repeats only where its (n-1)-gram repeats, so each size looks at those positions alone: in
    prose few 4-grams repeat, and the larger sizes cost next to nothing. numpy pays a fixed cost a call
    that a paragraph of 100 words does not repay, so short texts are grouped with dicts."""
    if len(ids) < _NUMPY_FROM_WORDS:
        return _small_ngram_sizes(ids.tolist(), max_n)
    return _large_ngram_sizes(ids, max_n)


# Below this many words dicts group n-grams faster than numpy (measured on State of the Union paragraphs).
_NUMPY_FROM_WORDS = 300


def _small_ngram_sizes(ids: list[int], max_n: int) -> Iterator[NgramSize]:
    groups: dict[Any, list[int]] = {}
    for position, word in enumerate(ids):
        groups.setdefault(word, []).append(position)
    repeated = [group for group in groups.values() if len(group) > 1]  # positions of each repeated (n-1)-gram
    for n in range(2, min(max_n, len(ids)) + 1):
        if not repeated:  # nothing repeats at this size, so nothing at the larger ones
            yield from _unrepeated(n, min(max_n, len(ids)))
            return
        groups = {}
        for group in repeated:
            for position in group[: bisect.bisect_right(group, len(ids) - n)]:  # where an n-gram fits
                groups.setdefault((group[0], ids[position + n - 1]), []).append(position)
        repeated = [group for group in groups.values() if len(group) > 1]
        top = repeats = None
        if n in TOP_NGRAM_SIZES:
            most = max(repeated, key=lambda group: (len(group), -group[0]), default=[0])
            top = (most[0], len(most))
        if n in DUP_NGRAM_SIZES:
            repeats = sorted((position, group[0]) for group in repeated for position in group[1:])
        yield NgramSize(n, top, repeats)


def _large_ngram_sizes(ids: np.ndarray, max_n: int) -> Iterator[NgramSize]:
    """The same with numpy. An n-gram can repeat only where the (n-1)-grams at p and p+1 both repeat; there
    it is its (n-1)-gram's first position and its last word, a pair of ints folded into one int64 (at most
    #positions * vocabulary size) and grouped by np.unique."""
    num_words, vocabulary_size = len(ids), int(ids.max(initial=0)) + 1
    label, repeated = ids, np.bincount(ids)[ids] > 1  # each (n-1)-gram's name, and whether it repeats
    for n in range(2, min(max_n, num_words) + 1):
        candidates = np.flatnonzero(repeated[:-1] & repeated[1:])
        if not len(candidates):  # nothing repeats at this size, so nothing at the larger ones
            yield from _unrepeated(n, min(max_n, num_words))
            return
        keys = label[candidates] * vocabulary_size + ids[candidates + n - 1]
        _, index, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        again = counts[inverse] > 1
        positions, firsts = candidates[again], candidates[index[inverse[again]]]
        top = repeats = None
        if n in TOP_NGRAM_SIZES:
            top = (0, 1) if counts.max() < 2 else (int(candidates[index[counts == counts.max()]].min()), int(counts.max()))
        if n in DUP_NGRAM_SIZES:
            later = positions != firsts
            repeats = list(zip(positions[later].tolist(), firsts[later].tolist()))
        yield NgramSize(n, top, repeats)
        repeated = np.zeros(num_words - n + 1, dtype=bool)
        repeated[positions] = True
        label = np.zeros(num_words - n + 1, dtype=np.int64)
        label[positions] = firsts


def _unrepeated(first_n: int, last_n: int) -> Iterator[NgramSize]:
    """Sizes at which every n-gram occurs once: the top one is the first, and none repeats."""
    for n in range(first_n, last_n + 1):
        yield NgramSize(n, (0, 1) if n in TOP_NGRAM_SIZES else None, [] if n in DUP_NGRAM_SIZES else None)


def _duplicate_ngram_chars(repeats: list[tuple[int, int]], word_starts: list[int], n: int) -> int:
    """Characters in n-grams that repeat an earlier one: datatrove's find_all_duplicate, which
    walks the n-grams and jumps past a duplicate so that overlapping repeats count once. Here the
    walk visits only the positions whose n-gram occurred before; the others are first occurrences,
    which the walk adds to its `seen` set unless a jump skipped them."""
    chars, next_position, skipped, added_at_repeat = 0, 0, set(), set()
    for position, first in repeats:
        if position < next_position:
            continue
        if first not in skipped or first in added_at_repeat:  # datatrove: `if n_gram in unique`
            chars += word_starts[position + n] - word_starts[position]
            skipped.update(range(position + 1, position + n))
            next_position = position + n
        else:
            added_at_repeat.add(first)
            next_position = position + 1
    return chars


# --- C4 (Raffel et al. 2020, 2.2; tensorflow_datasets c4_utils.clean_page) ---

class C4Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="apply C4's document rules (lorem ipsum, curly bracket, too few sentences)")
    filter_lines: bool = Field(False, description="rewrite the text without the lines C4 drops (changes the text)")
    # line rules: they decide which lines survive, so they change the stored signals and text
    min_words_per_line: int = Field(3, ge=0, description="a line with fewer words is dropped (paper: 3; TFDS code: 5)")
    max_word_length: int = Field(1000, ge=1, description="a line with a longer word is dropped")
    drop_unpunctuated_lines: bool = Field(True, description="drop lines not ending in . ! ? or a quote, "
                                                            "and lines ending in ...")
    drop_javascript_lines: bool = Field(True, description='drop lines that mention "javascript"')
    drop_policy_lines: bool = Field(True, description='drop lines like "terms of use" or "privacy policy"')
    # document thresholds
    min_sentences: int = Field(3, ge=0, description="reject a document with fewer sentences in surviving lines "
                                                    "(TFDS code: 3; the paper and datatrove: 5)")
    reject_lorem_ipsum: bool = Field(True, description='reject a document whose surviving lines say "lorem ipsum"')
    reject_curly_bracket: bool = Field(True, description="reject a document whose surviving lines hold a {")

    def line_settings(self) -> dict[str, Any]:
        """The settings that change the text or the C4 signals; the rest only decide what to keep."""
        return self.model_dump(include={"filter_lines", "min_words_per_line", "max_word_length",
                                        "drop_unpunctuated_lines", "drop_javascript_lines", "drop_policy_lines"})


# Fates that drop the whole document rather than the line.
DOCUMENT_FATES = ("lorem_ipsum", "curly_bracket")


def c4_line_fate(line: str, cfg: C4Config) -> str:
    """'keep', or why C4 drops this (stripped) line; checks run in TFDS's order. A line no longer than
    max_word_length has no word longer either, so only long lines are split whole (through the cache: a
    text of one line is its own line, and the word signals split it too)."""
    if len(line) > cfg.max_word_length and max(map(len, tokens(line))) > cfg.max_word_length:
        return "too_long_word"
    if cfg.drop_unpunctuated_lines and (not line.endswith(TERMINAL_PUNCT) or line.endswith(ELLIPSES)):
        return "unpunctuated"
    if _fewer_tokens(line, cfg.min_words_per_line):
        return "too_few_words"
    lowered = line.lower()
    if "lorem ipsum" in lowered:
        return "lorem_ipsum"
    if cfg.drop_javascript_lines and "javascript" in lowered:
        return "javascript"
    if "{" in line:
        return "curly_bracket"
    if cfg.drop_policy_lines and any(phrase in lowered for phrase in POLICY_PHRASES):
        return "policy"
    return "keep"


def _fewer_tokens(line: str, num: int) -> bool:
    if line.isascii() or not _UNSPACED.search(line):
        return len(line.split(maxsplit=num)) < num  # stops after num tokens
    return len(split_tokens(line)) < num


def c4_signals(text: str, cfg: C4Config) -> dict[str, int]:
    fates = [(line, c4_line_fate(line, cfg)) for line in content_lines(text)]
    kept = [line for line, fate in fates if fate == "keep"]
    return {
        "c4_num_sentences": sum(max(1, len(_SENTENCE_END.findall(line))) for line in kept),
        "c4_lines_dropped": sum(fate not in ("keep", *DOCUMENT_FATES) for _, fate in fates),
        "c4_lorem_ipsum": int(any(fate == "lorem_ipsum" for _, fate in fates)),
        "c4_curly_bracket": int(any(fate == "curly_bracket" for _, fate in fates)),
    }


def c4_filter_lines(text: str, cfg: C4Config) -> str:
    """The text without the lines C4 drops. Blank lines stay, so paragraphs stay paragraphs; lines
    that condemn the whole document stay too, so its rejection can be read in the text."""
    kept = [line for line in text.split("\n")
            if not line.strip() or c4_line_fate(line.strip(), cfg) in ("keep", *DOCUMENT_FATES)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


# --- FineWeb (Penedo et al. 2024, 3.3) ---

class FineWebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    short_line_chars: int = Field(30, ge=1, description="a line this long or shorter is short (changes the signal)")
    min_line_punct_ratio: float = Field(0.12, ge=0, le=1, description="reject if at most this share of lines "
                                                                      "ends in terminal punctuation")
    line_punct_exclude_zero: bool = Field(False, description="spare documents with no punctuated line at all "
                                                             "(datatrove's option: a single unwrapped line, say)")
    max_short_line_ratio: float = Field(0.67, ge=0, le=1, description="reject if at least this share of lines is short")
    # the FineWeb paper's 0.1; datatrove's class default is 0.01
    max_dup_line_char_frac: float = Field(0.1, ge=0, le=1, description="reject if at least this share of characters "
                                                                       "sits in lines that repeat an earlier line")
    max_list_ratio: float = Field(0.3, ge=0, description="reject if line breaks per word exceed this (list-like pages)")


def fineweb_signals(text: str, short_line_chars: int = 30) -> dict[str, float]:
    lines, num_words = content_lines(text), len(word_ids(text).ids)
    num_chars = len(text) - text.count("\n")
    return {
        "fineweb_line_punct_ratio": _share(lines, lambda line: line.endswith(TERMINAL_PUNCT)),
        "fineweb_short_line_ratio": _share(lines, lambda line: len(line) <= short_line_chars),
        "fineweb_dup_line_char_frac": _duplicate_lines(text)[1] / num_chars if num_chars else 0.0,
        # datatrove counts "\n" per word; breaks between content lines keep blank lines from doubling it
        "fineweb_list_ratio": max(len(lines) - 1, 0) / num_words if num_words else 0.0,
    }


# --- configs of the threshold groups ---

class GopherQualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3, ge=0)
    max_mean_word_length: float = Field(10, ge=0)
    max_hash_ratio: float = Field(0.1, ge=0, description="'#' per word")
    max_ellipsis_ratio: float = Field(0.1, ge=0, description="'...' or '…' per word")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="share of words with a letter")
    min_stop_words: int = Field(2, ge=0, description="occurrences of `stop_words`; the rule is off without a list")
    stop_words: list[str] = Field([], description="the language's stop words (per_language sets them; English: "
                                  f"Gopher's {list(STOP_WORDS)})")


class GopherRepetitionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    max_dup_para_frac: float = Field(0.30, ge=0, le=1)
    max_dup_para_char_frac: float = Field(0.20, ge=0, le=1)
    max_dup_line_frac: float = Field(0.30, ge=0, le=1)
    max_dup_line_char_frac: float = Field(0.20, ge=0, le=1)
    max_top_2gram_char_frac: float = Field(0.20, ge=0, le=1)
    max_top_3gram_char_frac: float = Field(0.18, ge=0, le=1)
    max_top_4gram_char_frac: float = Field(0.16, ge=0, le=1)
    max_dup_5gram_char_frac: float = Field(0.15, ge=0, le=1)
    max_dup_6gram_char_frac: float = Field(0.14, ge=0, le=1)
    max_dup_7gram_char_frac: float = Field(0.13, ge=0, le=1)
    max_dup_8gram_char_frac: float = Field(0.12, ge=0, le=1)
    max_dup_9gram_char_frac: float = Field(0.11, ge=0, le=1)
    max_dup_10gram_char_frac: float = Field(0.10, ge=0, le=1)


# --- rules: each reads one stored signal and one threshold ---

Check = Callable[[Mapping[str, Any], BaseModel], str | None]


def _compare(signal: str, field: str, fails: Callable[[Any, Any], bool], symbol: str) -> Check:
    def check(row: Mapping[str, Any], cfg: BaseModel) -> str | None:
        value, limit = row[signal], getattr(cfg, field)
        return f"{signal} {value:.4g} {symbol} {field} {limit}" if fails(value, limit) else None
    return check


def below(signal: str, field: str) -> Check:
    return _compare(signal, field, operator.lt, "<")


def above(signal: str, field: str) -> Check:
    return _compare(signal, field, operator.gt, ">")


def at_most(signal: str, field: str) -> Check:
    return _compare(signal, field, operator.le, "<=")


def at_least(signal: str, field: str) -> Check:
    return _compare(signal, field, operator.ge, ">=")


def outside(signal: str, low: str, high: str) -> Check:
    too_low, too_high = below(signal, low), above(signal, high)
    return lambda row, cfg: too_low(row, cfg) or too_high(row, cfg)


def present(signal: str, switch: str) -> Check:
    return lambda row, cfg: f"{signal}: found in a surviving line" if getattr(cfg, switch) and row[signal] else None


def _line_punct_ratio(row: Mapping[str, Any], cfg: FineWebConfig) -> str | None:
    if cfg.line_punct_exclude_zero and row["fineweb_line_punct_ratio"] == 0:
        return None
    return _LINE_PUNCT_AT_MOST(row, cfg)


_LINE_PUNCT_AT_MOST = at_most("fineweb_line_punct_ratio", "min_line_punct_ratio")
_STOP_WORDS_BELOW = below("gopher_stop_words", "min_stop_words")

# Group order follows FineWeb's pipeline (repetition, quality, C4, FineWeb); within a group, the paper's.
QUALITY_RULES: dict[str, dict[str, Check]] = {
    "gopher_repetition": {
        "dup_para_frac": above("gopher_dup_para_frac", "max_dup_para_frac"),
        "dup_para_char_frac": above("gopher_dup_para_char_frac", "max_dup_para_char_frac"),
        "dup_line_frac": above("gopher_dup_line_frac", "max_dup_line_frac"),
        "dup_line_char_frac": above("gopher_dup_line_char_frac", "max_dup_line_char_frac"),
        **{f"top_{n}gram_char_frac": above(f"gopher_top_{n}gram_char_frac", f"max_top_{n}gram_char_frac")
           for n in TOP_NGRAM_SIZES},
        **{f"dup_{n}gram_char_frac": above(f"gopher_dup_{n}gram_char_frac", f"max_dup_{n}gram_char_frac")
           for n in DUP_NGRAM_SIZES},
    },
    "gopher_quality": {
        "word_count": outside("gopher_num_words", "min_words", "max_words"),
        "mean_word_length": outside("gopher_mean_word_length", "min_mean_word_length", "max_mean_word_length"),
        "hash_ratio": above("gopher_hash_ratio", "max_hash_ratio"),
        "ellipsis_ratio": above("gopher_ellipsis_ratio", "max_ellipsis_ratio"),
        "bullet_lines": above("gopher_bullet_lines_ratio", "max_bullet_lines_ratio"),
        "ellipsis_lines": above("gopher_ellipsis_lines_ratio", "max_ellipsis_lines_ratio"),
        "alpha_words": below("gopher_alpha_words_ratio", "min_alpha_words_ratio"),
        "stop_words": lambda row, cfg: _STOP_WORDS_BELOW(row, cfg) if cfg.stop_words else None,
    },
    "c4": {
        "lorem_ipsum": present("c4_lorem_ipsum", "reject_lorem_ipsum"),
        "curly_bracket": present("c4_curly_bracket", "reject_curly_bracket"),
        "too_few_sentences": below("c4_num_sentences", "min_sentences"),
    },
    "fineweb": {
        "line_punct_ratio": _line_punct_ratio,
        "short_line_ratio": at_least("fineweb_short_line_ratio", "max_short_line_ratio"),
        "dup_line_char_frac": at_least("fineweb_dup_line_char_frac", "max_dup_line_char_frac"),
        "list_ratio": above("fineweb_list_ratio", "max_list_ratio"),
    },
}

_COUNT_SIGNALS = {"gopher_num_words", "gopher_stop_words", "c4_num_sentences", "c4_lines_dropped", "c4_lorem_ipsum",
                  "c4_curly_bracket"}


def first_quality_failure(row: Mapping[str, Any], configs: Mapping[str, BaseModel]) -> tuple[str, str] | None:
    """(`group:rule`, detail) of the first enabled rule the stored signals fail, or None."""
    for group, rules in QUALITY_RULES.items():
        cfg = configs[group]
        if not cfg.enabled:
            continue
        for name, check in rules.items():
            if detail := check(row, cfg):
                return f"{group}:{name}", detail
    return None


def quality_signals(text: str, c4: C4Config, short_line_chars: int,
                    stop_words: Iterable[str] = STOP_WORDS) -> dict[str, float]:
    """Every quality signal of one document, in one pass over its shared split."""
    return {**gopher_repetition_signals(text), **gopher_quality_signals(text, stop_words), **c4_signals(text, c4),
            **fineweb_signals(text, short_line_chars)}


# Every quality signal column and its type: the clean shards' schema is built from this.
QUALITY_SIGNALS: dict[str, type] = {name: int if name in _COUNT_SIGNALS else float
                                    for name in quality_signals("", C4Config(), 30)}



# --- per-language thresholds and stop words ---

QUALITY_CONFIGS: dict[str, type[BaseModel]] = {"gopher_repetition": GopherRepetitionConfig,
                                                "gopher_quality": GopherQualityConfig, "c4": C4Config,
                                                "fineweb": FineWebConfig}


def _stop(words_: str) -> dict[str, Any]:
    return {"stop_words": words_.split()}


# Ten or so of each language's most frequent function words (from its frequency lists: articles, particles,
# conjunctions, prepositions), so that two of them mean running prose, as Gopher's eight do for English.
_SPACED_STOP_WORDS = {
    "en": " ".join(STOP_WORDS),
    "de": "der die und in den von zu das mit sich des auf ist nicht", "fr": "le la de et les des un une est que en du",
    "es": "de la que el en y los se del las un por con", "pt": "de o que e do da em um para com não uma os",
    "it": "di il la che in un per è non una del con", "nl": "de het een en van in is dat op te zijn met voor",
    "ru": "и в не на что с по как это к но из", "uk": "і в у на що не з та до як це й",
    "pl": "i w z na się nie do to że jest o jak", "cs": "a v se na je že s z do to o k",
    "sv": "och i att det som en på är av för med till", "fi": "ja on ei se että oli hän kun mutta ovat",
    "hu": "a az és hogy nem is egy meg van csak", "ro": "și în de la a cu pe că nu este un o",
    "tr": "ve bir bu da de için ile olarak daha çok", "vi": "và của là có được cho các những trong không một",
    "id": "yang dan di ke dari ini itu untuk dengan tidak akan", "ar": "في من على إلى أن عن مع هذا التي الذي ما لا",
    "fa": "و در به از که این را با است می برای", "hi": "के का की है में और को से पर कि हैं यह",
    "he": "של את על עם לא הוא היא זה גם כי אם", "el": "και το να του της τα η ο με σε για που",
    "ko": "수 것 및 그 이 더 또 등 있는 있습니다 합니다 하는", "bn": "ও এবং এই যে না করে হয় থেকে জন্য একটি",
}
# CJK and Thai tokens are characters, so a text of N characters has about N "words": Gopher's 50 words of
# English (~300 characters) are ~80 characters of Chinese or Japanese; a line of 12 such characters is as short
# as one of 30 Latin letters; a token is one character long, two on average with the Latin words inside.
_CHARACTER_TOKENS = {"gopher_quality": {"min_words": 80, "max_words": 300_000, "min_mean_word_length": 1},
                     "fineweb": {"short_line_chars": 12}}
LANGUAGE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    **{lang: {"gopher_quality": _stop(stop_words)} for lang, stop_words in _SPACED_STOP_WORDS.items()},
    # a Vietnamese word is a syllable: 3.4 letters on average, where Gopher's minimum of 3 is English's
    "vi": {"gopher_quality": _stop(_SPACED_STOP_WORDS["vi"]) | {"min_mean_word_length": 2}},
    # Korean words (eojeol) are syllable blocks, about three to a word: Gopher's minimum of 3 is English's
    "ko": {"gopher_quality": _stop(_SPACED_STOP_WORDS["ko"]) | {"min_mean_word_length": 1.5},
           "fineweb": {"short_line_chars": 15}},
    "ja": {"gopher_quality": _CHARACTER_TOKENS["gopher_quality"] | _stop("の に は を が で と も から ます です"),
           "fineweb": _CHARACTER_TOKENS["fineweb"]},
    "zh": {"gopher_quality": _CHARACTER_TOKENS["gopher_quality"] | _stop("的 了 是 在 和 有 我 这 不 也 就 都"),
           "fineweb": _CHARACTER_TOKENS["fineweb"]},
    # Thai ends sentences with a space, not a mark: no line is "punctuated", so those rules stay off
    "th": {"gopher_quality": _CHARACTER_TOKENS["gopher_quality"] | _stop("ที่ และ ของ ใน เป็น ได้ ไม่ ให้ การ มี"),
           "fineweb": _CHARACTER_TOKENS["fineweb"] | {"line_punct_exclude_zero": True},
           "c4": {"drop_unpunctuated_lines": False, "min_sentences": 1}},
}


class LanguageRules(BaseModel):
    """One language's departures from the top-level groups: only the fields it changes, group by group."""
    model_config = ConfigDict(extra="forbid")
    gopher_repetition: dict[str, Any] = {}
    gopher_quality: dict[str, Any] = {}
    c4: dict[str, Any] = {}
    fineweb: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_fields(self):
        for group, model in QUALITY_CONFIGS.items():
            if unknown := sorted(set(getattr(self, group)) - set(model.model_fields)):
                raise ValueError(f"{group}: unknown field(s) {unknown} (known: {sorted(model.model_fields)})")
        return self


def with_language_defaults(given: Mapping[str, Any]) -> dict[str, Any]:
    """LANGUAGE_DEFAULTS with the user's entries laid over them field by field (a group's other fields stay)."""
    merged = {lang: {group: dict(fields) for group, fields in groups.items()} for lang, groups in LANGUAGE_DEFAULTS.items()}
    for lang, rules in given.items():
        rules = rules.model_dump() if isinstance(rules, LanguageRules) else rules
        if not isinstance(rules, Mapping):
            return dict(given)  # not a mapping: let pydantic name the problem
        language = merged.setdefault(lang.lower(), {})
        for group, fields in rules.items():
            language.setdefault(group, {}).update(fields or {})
    return merged


def resolve_groups(groups: Mapping[str, BaseModel], rules: LanguageRules | None) -> dict[str, BaseModel]:
    """The group configs for one language: the top-level ones with the language's fields changed, validated."""
    if rules is None:
        return dict(groups)
    resolved = {}
    for name, cfg in groups.items():
        changes = getattr(rules, name)
        try:
            resolved[name] = type(cfg).model_validate(cfg.model_dump() | changes) if changes else cfg
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{name}: {problems}") from None
    return resolved
