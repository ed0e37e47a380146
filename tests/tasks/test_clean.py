from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import infra.shard_cache as shard_cache
import tasks.data.clean as clean_module
from infra.stage import Manifest
from tasks.data.clean import (
    SIGNAL_SCHEMA,
    CleanConfig,
    clean,
    clean_document,
    filter_by_thresholds,
    filter_shard,
    first_failure,
    measure_shard,
    normalize_whitespace,
    repair,
    signal_settings,
)
from tasks.data.langid import LanguageConfig, detect_language
from tasks.data.quality import C4Config, GopherQualityConfig
from tests.conftest import DATA, sotu_speeches

CHAPTERS = {path.stem: path.read_text() for path in sorted((DATA / "tiny").glob("chapter_*.txt"))[:4]}
SPEECHES = [speech["text"] for speech in sotu_speeches()[220:223]]
GERMAN = ("Nennt mich Ismael. Vor einigen Jahren, gleichgültig wie lange es genau her ist, hatte ich wenig oder gar "
          "kein Geld in der Tasche, und an Land reizte mich nichts besonders; so dachte ich, ich wollte ein wenig "
          "herumsegeln und mir den wässrigen Teil der Welt ansehen. Das ist so meine Art, die Milz zu vertreiben und "
          "den Kreislauf in Ordnung zu bringen. Wann immer ich merke, dass mein Mund grimmig wird, gehe ich zur See.")


def test_whitespace_is_normalised_and_control_characters_dropped():
    text = "  Call\tme   Ishmael.\r\n\r\n\r\n\r\nSome\x00 years\x07 ago.\u2028Ahab.  \n"
    assert normalize_whitespace(text) == "Call me Ishmael.\n\nSome years ago.\nAhab."


def test_ftfy_repairs_mojibake():
    assert repair("The Whaleâ€™s jaw", CleanConfig()) == "The Whale’s jaw"


def test_repair_can_be_turned_off():
    assert repair("Whaleâ€™s", CleanConfig(fix_text=False)) == "Whaleâ€™s"


def test_real_prose_is_kept():
    cfg = CleanConfig()
    for name, text in [*CHAPTERS.items(), *enumerate(SPEECHES)]:
        assert first_failure(clean_document(text, cfg)[1], cfg) is None, name


def test_each_rule_names_its_reason():
    cfg = CleanConfig(min_chars=50, max_chars=500, min_alpha_ratio=0.6)

    def check(text):
        return first_failure(clean_document(text, cfg)[1], cfg)

    assert check("too short") == ("too_short", "num_chars 9 < min_chars 50")
    assert check("a" * 600)[0] == "too_long"
    assert check("1234 5678 9012 " * 10) == ("low_alpha_ratio", "alpha_ratio 0 < min_alpha_ratio 0.6")
    assert check(GERMAN[:480])[0] == "language"
    assert check(CHAPTERS["chapter_1"][:480].rsplit(" ", 1)[0])[0] == "c4:too_few_sentences"  # 3 lines, 2 sentences
    assert check(CHAPTERS["chapter_1"][21:250])[0] == "gopher_quality:word_count"


def test_language_is_stored_and_the_allow_list_decides():
    text, signals = clean_document(GERMAN, CleanConfig())
    assert signals["lang"] == "de" and signals["lang_score"] > 0.9
    name, detail = first_failure(signals, CleanConfig())
    assert name == "language" and detail.startswith("lang de (score")
    german = CleanConfig(language=LanguageConfig(languages=["de"]), gopher_quality=GopherQualityConfig(enabled=False))
    assert first_failure(clean_document(GERMAN, german)[1], german) is None
    assert detect_language("1234 5678 !!!", LanguageConfig()) == ("und", 0.0)
    with pytest.raises(ValueError, match="not language codes that lid.176 knows"):
        LanguageConfig(languages=["english"])


def test_pii_is_scrubbed_and_counted():
    text, signals = clean_document(CHAPTERS["chapter_1"] + "\n\nWrite to ishmael@pequod.org or call (415) 555-2671.",
                                   CleanConfig())
    assert "ishmael@pequod.org" not in text and "<EMAIL>" in text and "<PHONE>" in text
    assert (signals["pii_email"], signals["pii_ip"], signals["pii_phone"]) == (1, 0, 1)


def test_c4_line_filtering_is_a_switch():
    chapter = CHAPTERS["chapter_1"]
    text = chapter + "\n\nShare this page\n\nEnable JavaScript to see the comments below."
    kept, signals = clean_document(text, CleanConfig())
    assert kept.endswith("comments below.")
    filtered, filtered_signals = clean_document(text, CleanConfig(c4=C4Config(filter_lines=True)))
    assert "Share this page" not in filtered and "JavaScript" not in filtered and "Call me Ishmael." in filtered
    assert signals["c4_lines_dropped"] == filtered_signals["c4_lines_dropped"] == 2 + clean_document(
        chapter, CleanConfig())[1]["c4_lines_dropped"]
    assert filtered_signals["num_chars"] < signals["num_chars"]


def write_shard(tmp_path: Path, docs: list[dict]) -> str:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(docs), path)
    return str(path)


DOCS = [{"id": "good", "text": CHAPTERS["chapter_1"], "source": "t", "meta": {"year": 1851}, "encoding": "utf-8"},
        {"id": "short", "text": "Hi.", "source": "t", "meta": {"year": 1852}, "encoding": "utf-8"},
        {"id": "digits", "text": "0123456789 " * 40, "source": "t", "meta": {"year": None}, "encoding": "latin-1"},
        {"id": "german", "text": GERMAN, "source": "t", "meta": {"year": 1927}, "encoding": "utf-8"}]


def test_shards_keep_or_reject_every_document_and_carry_extra_columns(tmp_path):
    signals_dir, out = tmp_path / "signals", tmp_path / "out"
    signals_dir.mkdir(), out.mkdir()
    cfg = CleanConfig(min_chars=100)
    measured = measure_shard((0, write_shard(tmp_path, DOCS)), str(signals_dir), cfg)
    assert measured["docs_in"] == measured["kept"] == 4
    stats = filter_shard((0, str(signals_dir / "shard-00000.parquet")), str(out), cfg)
    assert stats["docs_in"] == 4 and stats["kept"] == 1 and stats["rejected"] == 3
    assert stats["reasons"] == {"too_short": 1, "low_alpha_ratio": 1, "language": 1}
    rejected = pq.read_table(out / "rejected-00000.parquet").to_pylist()
    assert {r["id"]: r["reason"] for r in rejected} == {"short": "too_short", "digits": "low_alpha_ratio",
                                                        "german": "language"}
    assert all(r["detail"] for r in rejected)
    kept = pq.read_table(out / "shard-00000.parquet")
    assert kept.column("id").to_pylist() == ["good"]
    assert set(SIGNAL_SCHEMA.names) <= set(kept.column_names)  # signals stored beside the text
    assert kept.column("meta").to_pylist() == [{"year": 1851}] and kept.column("encoding").to_pylist() == ["utf-8"]
    assert kept.column("lang").to_pylist() == ["en"]


def test_a_threshold_change_refilters_stored_columns_without_measuring(tmp_path, monkeypatch):
    docs = [{"id": name, "text": text, "source": "moby"} for name, text in CHAPTERS.items()]
    measure_shard((0, write_shard(tmp_path, docs)), str(tmp_path), CleanConfig())
    signals = pq.read_table(tmp_path / "shard-00000.parquet")
    for name in ("clean_document", "quality_signals", "detect_language", "scrub_pii", "repair"):
        monkeypatch.setattr(clean_module, name, lambda *args, **kwargs: pytest.fail("a signal was recomputed"))
    assert filter_by_thresholds(signals, CleanConfig()) == [None] * 4
    stricter = CleanConfig(gopher_quality=GopherQualityConfig(min_words=1000))
    decisions = filter_by_thresholds(signals, stricter)
    words = signals.column("gopher_num_words").to_pylist()
    assert [d and d[0] for d in decisions] == [("gopher_quality:word_count" if n < 1000 else None) for n in words]
    assert any(decisions) and not all(decisions)


def test_only_signal_settings_change_the_signals_fingerprint():
    base = signal_settings(CleanConfig())
    assert signal_settings(CleanConfig(min_chars=1000, gopher_quality=GopherQualityConfig(min_words=10))) == base
    assert signal_settings(CleanConfig(language=LanguageConfig(min_lang_score=0.9))) == base
    assert signal_settings(CleanConfig(fix_text=False)) != base
    assert signal_settings(CleanConfig(c4=C4Config(filter_lines=True))) != base
    # no shortlist of candidates: the allow-list decides what is kept, never what is detected
    assert signal_settings(CleanConfig(language=LanguageConfig(languages=["en", "fi"]))) == base
    assert signal_settings(CleanConfig(language=LanguageConfig(prefix_chars=500))) != base


def run_in_process(fn, items, description, **shared):
    return [fn(item, **shared) for item in items]


def test_clean_stage_reuses_signals_when_only_a_threshold_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_cache, "map_shards", run_in_process)
    ingested_dir = tmp_path / "ingest" / "fp"
    ingested_dir.mkdir(parents=True)
    for i in range(2):
        pq.write_table(pa.Table.from_pylist(DOCS[2 * i : 2 * i + 2]), ingested_dir / f"shard-{i:05d}.parquet")
    ingested = Manifest(stage="ingest", fingerprint="fp", path=ingested_dir)
    first = clean(ingested, CleanConfig(min_chars=100), tmp_path)
    assert first.counts["docs_in"] == 4 and first.counts["kept"] + first.counts["rejected"] == 4
    assert first.stats["rejected_by_reason"] == {"language": 1, "low_alpha_ratio": 1, "too_short": 1}
    monkeypatch.setattr(clean_module, "measure_shard", lambda *a, **k: pytest.fail("signals were recomputed"))
    stricter = clean(ingested, CleanConfig(min_chars=100_000), tmp_path)
    assert not stricter.cached and stricter.counts["kept"] == 0 and stricter.stats["signals"] == first.stats["signals"]
    assert clean(ingested, CleanConfig(min_chars=100), tmp_path).cached


def test_pii_counts_reach_the_stage_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_cache, "map_shards", run_in_process)
    ingested_dir = tmp_path / "ingest" / "fp"
    ingested_dir.mkdir(parents=True)
    docs = [{"id": "a", "text": CHAPTERS["chapter_1"] + "\n\nMail ahab@pequod.org.", "source": "t"},
            {"id": "b", "text": "Server 81.2.69.160 and bob@mail.org", "source": "t"}]
    pq.write_table(pa.Table.from_pylist(docs), ingested_dir / "shard-00000.parquet")
    manifest = clean(Manifest(stage="ingest", fingerprint="fp", path=ingested_dir), CleanConfig(), tmp_path)
    assert (manifest.counts["pii_email"], manifest.counts["pii_ip"], manifest.counts["pii_phone"]) == (2, 1, 0)


# --- properties ---

@settings(max_examples=300, deadline=None)
@given(st.text() | st.text(alphabet=st.sampled_from(" \t\r\n\x00\x0b\u00a0\u2028\u3000ab."), max_size=40))
def test_normalisation_is_idempotent(text):
    once = normalize_whitespace(text)
    assert normalize_whitespace(once) == once


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_cleaning_any_string_never_raises(text):
    cfg = CleanConfig(c4=C4Config(filter_lines=True))
    repaired = repair(text, cfg)
    assert normalize_whitespace(repaired) == repaired
    cleaned, signals = clean_document(text, cfg)
    assert set(signals) == set(SIGNAL_SCHEMA.names)
    lang, score = detect_language(text, cfg.language)
    assert 0.0 <= score <= 1.0 and isinstance(lang, str)
    first_failure(signals, cfg)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_skipping_ftfy_on_plain_ascii_changes_nothing(text):
    import ftfy

    from tasks.data.clean import ftfy_would_change, normalize_whitespace

    if not ftfy_would_change(text):
        fixed = ftfy.fix_text(text, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
        assert normalize_whitespace(fixed) == normalize_whitespace(text)
