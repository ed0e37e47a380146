"""The clean_signals step gives the same text and signals as the code it replaced (frozen in
tasks/bench/clean_baseline.py) on real and awkward documents: every signal within 1e-9, the text identical."""

import json

import ftfy
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tasks.bench import clean_baseline
from tasks.bench.clean_speed import signal_differences
from tasks.data.clean import (
    MOJIBAKE_REACH,
    CleanConfig,
    clean_document,
    ftfy_would_change,
)
from tasks.data.quality import C4Config, _large_ngram_sizes, _small_ngram_sizes
from tasks.data.readers import read_mail
from tests.conftest import DATA, REPO, sotu_speeches

FIXTURES = REPO / "tests" / "fixtures"
EDGE_CASES = {
    "empty": "", "spaces": " \t \n\n \u3000 \r\n ", "punctuation": "... !!! ??? --- ### ***\n• • •\n{ } & # @",
    "digits": "1790 1791 1792\n3.14 2.71 $5 — 12:30:45",
    "cjk": "東京タワーに行きました。とても高かったです！\n北京是中国的首都，有很多名胜古迹。我们明天去长城。",
    "thai": "สวัสดีครับ ผมชื่อสมชาย วันนี้อากาศดีมาก", "korean": "대한민국 헌법 제1조 대한민국은 민주공화국이다.",
    "repeated_line": "All work and no play makes Jack a dull boy.\n" * 2000,
    "repeated_long_line": "the same words over and over again " * 20_000,
    "one_long_word": "x" * 5000 + " tail.",
    "mojibake": "The cafÃ© served crÃ¨me brÃ»lÃ©e â€” and â€œcoffeeâ€\x9d.\nsÃ³ voilÃ le travail\n\x81À§ €©\u200b",
    "html_entities": "Fish &amp; chips &lt;b&gt; cost &pound;5 &hellip; P&EACUTE;REZ said &#x2019;hello&#x2019;.",
    "controls": "Line one\x00\x07 with bell\r\nline two\u2028line three\u2029\x1b[31mred\x1b[0m\x85end\ufeff",
    "odd_spaces": "wide\u00a0\u00a0spaces\u2003and\u200bzero width\tand tabs  \t  here\u202fnarrow\u1680ogham",
    "pii": "Mail bob.smith@corp-mail.com or alice@example.com, call +44 20 7946 0958 or (415) 555-2671; "
           "hosts 8.8.8.8, 192.168.0.1, 2001:4860:4860::8888 and ::1; version 1.2.0.4.",
    "decomposed": "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030a",
    "lorem": "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\nfunction() { return 1; }\nEnable JavaScript.",
    "bullets": "\n".join(f"• item number {i} of the list..." for i in range(40)),
    "surrogates": "before \ud800 between \udfff after",
    "mixed_scripts": "Москва — столица России. Ελλάδα είναι ωραία. مرحبا بالعالم. नमस्ते दुनिया।",
}


def corpus() -> dict[str, str]:
    docs = {f"tiny/{path.stem}": path.read_text() for path in sorted((DATA / "tiny").glob("*.txt"))}
    for path in sorted((FIXTURES / "spam_assassin_sample").glob("*/*.txt")):
        data = path.read_bytes()
        docs[f"mail/{path.name}"] = read_mail(data)[0]
        docs[f"raw-mail/{path.name}"] = data.decode("latin-1")  # headers, MIME, mojibake: all of it
    for line in (FIXTURES / "multilingual" / "langid.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        docs[f"langid/{row['id']}"] = row["text"]
    docs |= {f"sotu/{row['id']}": row["text"] for row in sotu_speeches()[::40]}
    return docs | {f"edge/{name}": text for name, text in EDGE_CASES.items()}


CONFIGS = {
    "default": CleanConfig(),
    "c4_filter_lines": CleanConfig(c4=C4Config(filter_lines=True)),
    "no_fix_text": CleanConfig(fix_text=False, pii={"keep_non_public_ips": False, "keep_example_domains": False}),
}


def differences(raw: str, cfg: CleanConfig) -> list[str]:
    return signal_differences(clean_baseline.clean_document(raw, cfg), clean_document(raw, cfg))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_signal_and_the_text_equal_the_frozen_code_on_the_corpus(config):
    cfg = CONFIGS[config]
    found = {doc: problems for doc, raw in corpus().items() if (problems := differences(raw, cfg))}
    assert not found, found


# pieces of words, layout, mojibake, entities, unspaced scripts and controls, strung together
prose_like = st.lists(st.sampled_from(
    [*"ab c.de\n\n,!?'\"#-•…{}@:0123456789", "the ", "whale ", "Ã©", "â€", "™", "\u00a0", "\r\n", "\t", "&amp;",
     "東京", "。", "ที่", "é", "e\u0301", "Σ", "—", "’", "\x85", "\x00"]), max_size=120).map("".join)


@settings(max_examples=300, deadline=None)
@given(prose_like | st.text(max_size=200))
@example("\x81À§")
@example("€©\u200b")
def test_any_text_gives_the_frozen_codes_signals(text):
    assert not differences(text, CONFIGS["default"])


# --- skipping ftfy is exact: the reasoning behind ftfy_would_change, checked against the installed ftfy ---

def test_every_mojibake_pattern_holds_a_non_ascii_character_within_reach():
    import re._constants as sre
    import re._parser

    import ftfy.badness

    tree = re._parser.parse(ftfy.badness.BADNESS_RE.pattern, ftfy.badness.BADNESS_RE.flags)
    assert tree.getwidth()[1] <= MOJIBAKE_REACH
    (op, (_, branches)), = tree.data
    assert op is sre.BRANCH

    def only_non_ascii(item) -> bool:
        op, arg = item
        if op is sre.IN:
            return all(o is sre.LITERAL and a > 127 or o is sre.RANGE and a[0] > 127 for o, a in arg)
        return op is sre.LITERAL and arg > 127

    assert all(any(map(only_non_ascii, branch.data)) for branch in branches)


mojibake_like = st.lists(st.sampled_from(
    [*"aZ .\n-1", "Ã", "Â", "©", "€", "™", "—", "’", "“", "”", "é", "ü", "°", "²", "×", "Ø", "à", "√", "‚", "Ä", "в",
     "Ђ", "В", "β", "ā", "œ", "\u00a0", "\xad", "¡", "¿", "«", "»", "•", "¢", "£", "ă", "e\u0301", "&", "\r"]),
    max_size=40).map("".join)


@settings(max_examples=500, deadline=None)
@given(mojibake_like | st.text(max_size=60))
def test_text_ftfy_would_leave_alone_is_left_alone(text):
    if not text.isascii() and not ftfy_would_change(text):
        assert ftfy.fix_text(text, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=400))
def test_the_dict_and_the_numpy_ngram_groupings_agree(ids):
    """Texts under _NUMPY_FROM_WORDS words take the dict path, longer ones numpy: the two must say the same."""
    assert list(_small_ngram_sizes(ids, 10)) == list(_large_ngram_sizes(np.array(ids, dtype=np.int64), 10))
