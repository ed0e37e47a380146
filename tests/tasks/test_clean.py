import pyarrow as pa
import pyarrow.parquet as pq

from tasks.clean import CleanConfig, clean_shard, first_failure, normalize_whitespace, repair, signals

PROSE = "Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about. " * 4


def test_whitespace_is_normalised_and_control_characters_dropped():
    text = "  Call\tme   Ishmael.\r\n\r\n\r\n\r\nSome\x00 years\x07 ago.  \n"
    assert normalize_whitespace(text) == "Call me Ishmael.\n\nSome years ago."


def test_ftfy_repairs_mojibake():
    assert repair("The Whaleâ€™s jaw", CleanConfig()) == "The Whale’s jaw"


def test_repair_can_be_turned_off():
    assert repair("Whaleâ€™s", CleanConfig(fix_text=False)) == "Whaleâ€™s"


def test_each_rule_names_its_reason():
    cfg = CleanConfig(min_chars=50, max_chars=500, min_alpha_ratio=0.6)
    assert first_failure(signals("too short"), cfg)[0] == "too_short"
    assert first_failure(signals("a" * 600), cfg)[0] == "too_long"
    name, detail = first_failure(signals("1234 5678 9012 " * 10), cfg)
    assert name == "low_alpha_ratio" and "alpha_ratio 0.00 < 0.6" in detail
    assert first_failure(signals(PROSE), cfg) is None


def test_clean_shard_keeps_or_rejects_every_document(tmp_path):
    docs = [{"id": "good", "text": PROSE, "source": "t"}, {"id": "short", "text": "Hi.", "source": "t"},
            {"id": "digits", "text": "0123456789 " * 40, "source": "t"}]
    shard = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(docs), shard)
    out = tmp_path / "out"
    out.mkdir()
    stats = clean_shard((0, str(shard)), str(out), CleanConfig(min_chars=100))
    assert stats["docs_in"] == 3 and stats["kept"] == 1 and stats["rejected"] == 2
    assert stats["reasons"] == {"too_short": 1, "low_alpha_ratio": 1}
    rejected = pq.read_table(out / "rejected-00000.parquet").to_pylist()
    assert {r["id"]: r["reason"] for r in rejected} == {"short": "too_short", "digits": "low_alpha_ratio"}
    kept = pq.read_table(out / "shard-00000.parquet")
    assert kept.column("id").to_pylist() == ["good"]
    assert {"num_chars", "alpha_ratio"} <= set(kept.column_names)  # signals stored beside the text
