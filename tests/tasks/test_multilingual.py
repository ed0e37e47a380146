"""Cleaning for every language: files read by their content and encoding, script-aware quality rules,
and the language rule on real multilingual text (tests/fixtures/multilingual)."""

import json

import pytest

from tasks.data.clean import CleanConfig, clean_document, first_failure
from tasks.data.ingest import list_input_files
from tasks.data.langid import LanguageConfig
from tasks.data.quality import split_tokens
from tasks.data.readers import ReadOptions, decode_bytes, file_kind, read_file
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "multilingual"
SAMPLE = [json.loads(line) for line in (FIXTURES / "langid.jsonl").read_text(encoding="utf-8").splitlines()]
JAPANESE = "\n\n".join(row["text"] for row in SAMPLE if row["lang"] == "ja")
CHINESE = "\n\n".join(row["text"] for row in SAMPLE if row["lang"] == "zh")
KOREAN = next(row["text"] for row in SAMPLE if row["lang"] == "ko")
# a Japanese site's navigation, as an HTML-to-text extractor leaves it on every page
NAVIGATION = "\n".join(["ホーム | 会社概要 | 製品情報 | お問い合わせ | サイトマップ", "ログイン | 新規登録 | カートを見る",
                        "ホーム > 製品情報 > 一覧", "Copyright © 2024 株式会社サンプル All Rights Reserved."] * 5)
MENU_ITEMS = ("ホーム", "会社概要", "事業内容", "製品情報", "採用情報", "ニュース", "お知らせ一覧", "よくある質問",
                  "お問い合わせ", "サイトマップ", "プライバシーポリシー", "利用規約", "アクセス", "ページの先頭へ",
                  "新規会員登録", "カートを見る", "メニュー", "トップページ", "商品を探す", "ご利用ガイド", "店舗案内",
                  "キャンペーン", "新着情報", "ランキング", "特集", "ブランド一覧", "ギフト", "お支払い方法",
                  "配送について", "返品・交換について", "会員特典", "ポイントについて", "メールマガジン登録",
                  "お気に入り一覧", "閲覧履歴", "注文履歴", "ログアウト", "会員情報の変更", "パスワードを忘れた方",
                  "法人のお客様", "IR情報", "サステナビリティ", "English", "中文", "한국어")
MENU = "\n".join(MENU_ITEMS)  # one link a line, none repeated


def clean(text: str, *languages: str) -> tuple[str, dict, tuple[str, str] | None]:
    cfg = CleanConfig(language=LanguageConfig(languages=list(languages)))
    cleaned, signals = clean_document(text, cfg)
    return cleaned, signals, first_failure(signals, cfg)


# ---- quality rules that mean the same in every script ----

@pytest.mark.parametrize("text, lang", [(JAPANESE, "ja"), (CHINESE, "zh")])
def test_well_formed_cjk_prose_passes_when_its_language_is_allowed(text, lang):
    _, signals, failure = clean(text, lang)
    assert signals["lang"] == lang and failure is None
    assert signals["gopher_num_words"] > 500 and signals["c4_num_sentences"] >= 10  # characters; 。 ends sentences


def test_every_language_of_the_sample_passes_every_rule_when_allowed():
    by_language: dict[str, list[str]] = {}
    for row in SAMPLE:
        by_language.setdefault(row["lang"], []).append(row["text"])
    failures = {lang: clean("\n\n".join(texts), lang)[2] for lang, texts in by_language.items()}
    assert {lang: failure for lang, failure in failures.items() if failure} == {}


@pytest.mark.parametrize("boilerplate, reason", [(NAVIGATION, "gopher_repetition:dup_line_frac"),
                                                 (MENU, "c4:too_few_sentences")])
def test_japanese_navigation_boilerplate_is_rejected_with_a_reason(boilerplate, reason):
    _, signals, failure = clean(boilerplate, "ja")
    assert signals["lang"] == "ja" and failure[0] == reason


def test_japanese_is_rejected_by_language_when_only_english_is_allowed():
    _, signals, failure = clean(JAPANESE, "en")
    assert signals["lang"] == "ja" and failure[0] == "language"


def test_unspaced_scripts_split_into_characters_and_spaced_ones_into_words():
    assert split_tokens("東京タワーに行きました。Tokyo Tower!") == [*"東京タワーに行きました", "。Tokyo", "Tower!"]
    assert split_tokens("สวัสดีครับ") == ["ส", "วั", "ส", "ดี", "ค", "รั", "บ"]  # each vowel mark stays on its letter
    assert split_tokens("대한민국 헌법") == ["대한민국", "헌법"]  # Korean writes spaces


def test_per_language_thresholds_are_typed_and_named_in_errors():
    cfg = CleanConfig(per_language={"ja": {"gopher_quality": {"min_words": 2000}}})
    assert cfg.groups_for("ja")["gopher_quality"].min_words == 2000
    assert "の" in cfg.groups_for("ja")["gopher_quality"].stop_words  # the defaults' other fields stay
    assert cfg.groups_for("en")["gopher_quality"].min_words == 50
    assert first_failure(clean_document(JAPANESE, cfg)[1], cfg)[0] == "language"
    with pytest.raises(ValueError, match=r"per_language.ja.gopher_quality: min_words: Input should be greater"):
        CleanConfig(per_language={"ja": {"gopher_quality": {"min_words": -1}}})
    with pytest.raises(ValueError, match=r"gopher_quality: unknown field\(s\) \['min_wrds'\]"):
        CleanConfig(per_language={"ja": {"gopher_quality": {"min_wrds": 1}}})
    with pytest.raises(ValueError, match=r"per_language: not language codes that lid.176 knows: \['japanese'\]"):
        CleanConfig(per_language={"japanese": {}})


def test_a_per_language_stop_word_list_changes_the_signals_fingerprint():
    from tasks.data.clean import signal_settings
    base = signal_settings(CleanConfig())
    assert signal_settings(CleanConfig(per_language={"ja": {"gopher_quality": {"min_words": 10}}})) == base
    assert signal_settings(CleanConfig(per_language={"ja": {"gopher_quality": {"stop_words": ["の"]}}})) != base


# ---- files by content ----

KOREAN_LAW = ("제1조 이 법은 국민의 권리와 의무를 정함을 목적으로 한다.\n"
              "제2조 모든 국민은 법 앞에 평등하다. 누구든지 성별, 종교 또는 사회적 신분에 의하여 차별을 받지 아니한다.\n")
PAGE = ("<!DOCTYPE html><html><head><title>チュートリアル</title></head><body><nav><a href='/'>ホーム</a></nav>"
        f"<main><h1>はじめに</h1><p>{JAPANESE.split(chr(10))[0]}</p></main></body></html>")


def _gb2312_in_iso2022_cn(text: str) -> bytes:
    return b"".join(b"\x1b$)A\x0e" + bytes(b & 0x7F for b in line.encode("gb2312")) + b"\x0f\n"
                    for line in text.split("\n"))


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "manuals"
    folder.mkdir()
    files = {"TUTORIAL.ja": JAPANESE.encode("euc_jp"), "TUTORIAL.cn": CHINESE.encode("gb2312"),
             "TUTORIAL.ko": KOREAN.encode("iso2022_kr"), "LAW.kr": KOREAN_LAW.encode("iso2022_kr"),
             "README.jp": JAPANESE.encode("iso2022_jp"), "GUIDE.zh": _gb2312_in_iso2022_cn(CHINESE[:300]),
             "notes.u16": CHINESE.encode("utf-16-le"), "notes.u16be": JAPANESE.encode("utf-16-be"),
             "notes.u32": KOREAN.encode("utf-32"), "index": PAGE.encode("utf-8"),
             "logo.bin": b"\x89PNG\r\n\x1a\n" + bytes(300)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "list.mbox").write_bytes(
        b"From alice@lists.example Mon Jan  1 00:00:00 2024\nFrom: Alice <alice@lists.example>\nSubject: first\n"
        b"Content-Type: text/plain; charset=iso-2022-jp\n\n" + "こんにちは。最初のメッセージです。".encode("iso2022_jp")
        + b"\n>From the archive: quoted.\n\nFrom bob@lists.example Mon Jan  1 00:01:00 2024\nFrom: Bob\n"
        b"Subject: second\n\nThe second message.\n\nFrom carol@lists.example Mon Jan  1 00:02:00 2024\n"
        b"From: Carol\nSubject: empty\n\n\n")
    return {file.rel.split("/")[-1]: file for file in list_input_files([folder])}


def read(file) -> list:
    return list(read_file(file, ReadOptions()))


def test_unknown_suffixes_are_sniffed_and_read_when_text(corpus):
    assert file_kind("TUTORIAL.ja") == "sniff" and file_kind("list.mbox") == "mbox" and file_kind("a.png") == "unknown"
    expected = {"TUTORIAL.ja": JAPANESE, "TUTORIAL.cn": CHINESE, "TUTORIAL.ko": KOREAN, "LAW.kr": KOREAN_LAW,
                "README.jp": JAPANESE, "GUIDE.zh": CHINESE[:300] + "\n", "notes.u16": CHINESE,
                "notes.u16be": JAPANESE, "notes.u32": KOREAN}
    for name, text in expected.items():
        (record,) = read(corpus[name])
        assert record.reason is None and record.text.strip() == text.strip(), (name, record.encoding)
        assert record.encoding.endswith("read as text (sniffed)")
    encodings = {name: read(corpus[name])[0].encoding.split(";")[0] for name in expected}
    assert encodings["LAW.kr"] == "iso2022_kr (escape sequences)"
    assert encodings["GUIDE.zh"] == "iso2022_cn (escape sequences)"
    assert encodings["notes.u16be"].startswith("utf-16-be") and encodings["notes.u32"] == "utf-32 (BOM)"


def test_html_without_a_suffix_loses_its_markup(corpus):
    (record,) = read(corpus["index"])
    assert record.encoding == "utf-8; read as html (sniffed)" and "<p>" not in record.text
    assert JAPANESE.split("\n")[0] in record.text and json.loads(record.meta) == {"title": "チュートリアル"}


def test_binary_files_are_still_rejected(corpus):
    (record,) = read(corpus["logo.bin"])
    assert record.reason == "binary_file" and "PNG image" in record.detail


def test_an_mbox_is_one_document_per_message(corpus):
    records = read(corpus["list.mbox"])
    assert [r.id.split("#")[1] for r in records] == ["msg1", "msg2", "msg3"]
    first, second, empty = records
    assert "最初のメッセージです" in first.text and "From the archive" in first.text and ">From" not in first.text
    assert json.loads(first.meta)["subject"] == "first" and first.encoding == "iso2022_jp (declared)"
    assert second.text == "The second message." and empty.reason == "empty_text"


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be",
                                   "iso2022_jp", "iso2022_kr"])
def test_wide_and_stateful_encodings_decode(codec):
    text = {"iso2022_jp": JAPANESE, "iso2022_kr": KOREAN_LAW}.get(codec, "Plain words, " + CHINESE[:80])
    assert decode_bytes(text.encode(codec))[0] == text
