"""`bench data --against datatrove`: its code on a tiny input (the bench itself stays out of make test)."""

import importlib.util
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from infra.stage import latest_output
from tasks.bench.datatrove_peer import filter_arguments
from tasks.bench.peer_compare import (
    INSTALL,
    PAIRS,
    compare_with_datatrove,
    peer_missing,
    summarise_peer,
    write_jsonl,
)
from tasks.data.clean import CleanConfig
from tasks.data.tokenizer import TokenizerConfig, save_tokenizer, train_bpe

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny"


def tiny_documents(num_docs: int = 200) -> list[dict]:
    """Moby-Dick paragraphs, two to a document: short documents, every one with text."""
    paragraphs = [p.strip() for f in sorted(TINY.glob("*.txt")) for p in f.read_text().split("\n\n") if p.strip()]
    return [{"id": f"tiny-{i:04d}", "text": "\n\n".join(paragraphs[2 * i:2 * i + 2])} for i in range(num_docs)]


def test_the_jsonl_is_dealt_out_in_contiguous_runs(tmp_path):
    files = write_jsonl(tiny_documents(7), tmp_path, 3)
    rows = [[json.loads(line)["id"] for line in f.read_text().splitlines()] for f in files]
    assert [f.name for f in files] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert rows == [["tiny-0000", "tiny-0001", "tiny-0002"], ["tiny-0003", "tiny-0004", "tiny-0005"], ["tiny-0006"]]


def test_the_first_executor_is_split_between_reader_and_filters_by_step_time():
    def step(seconds: float, **stats) -> dict:
        return {"time_stats": {"total": seconds}, "stats": stats}

    executors = {"filter": {"seconds": 10.0, "stats": [step(1.0, documents={"total": 50}), step(3.0), step(0, total=40)]},
                 "minhash-signatures": {"seconds": 2.0}, "minhash-buckets": {"seconds": 1.0},
                 "minhash-cluster": {"seconds": 0.5}, "minhash-filter": {"seconds": 1.5, "stats": [step(0, total=38)]},
                 "tokenize": {"seconds": 4.0}}
    summary = summarise_peer({"executors": executors, "left_out": ["language ID"]})
    assert summary["stages"] == {"ingest": 2.5, "clean": 7.5, "dedup": 5.0, "pack": 4.0}
    assert (summary["documents_in"], summary["after_clean"], summary["after_dedup"]) == (50, 40, 38)


def test_a_missing_peer_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "datatrove" else object())
    assert peer_missing() == f"datatrove not installed: {INSTALL}"


def test_both_sides_run_on_the_same_jsonl(tmp_path):
    pytest.importorskip("datatrove", reason=f"the datatrove peer is a bench-only extra: {INSTALL}")
    pytest.importorskip("spacy", reason=f"datatrove's Gopher and C4 filters need spaCy: {INSTALL}")
    jsonl = tmp_path / "input"
    write_jsonl(tiny_documents(), jsonl, 1)

    (tmp_path / "tokenizer").mkdir()
    save_tokenizer(train_bpe(iter(d["text"] for d in tiny_documents()), TokenizerConfig(vocab_size=512)),
                   tmp_path / "tokenizer")
    given = tmp_path / "tokenizer" / "tokenizer.json"

    result = compare_with_datatrove(jsonl, given, tmp_path, cores=1, overrides=["pack.seq_len=64"], repeats=2)

    ours, peer = result["ours"], result["datatrove"]
    assert len(result["runs"]) == 2 and result["command_ratio"] in [run["command_ratio"] for run in result["runs"]]
    assert ours["command_seconds"] > 0 and peer["command_seconds"] > 0
    assert result["command_ratio"] == peer["command_seconds"] / ours["command_seconds"]
    assert set(result["pairs"]) == set(PAIRS)
    for stage, pair in result["pairs"].items():
        assert pair["ours_seconds"] > 0 and pair["datatrove_seconds"] > 0, stage
        assert pair["ratio"] == pair["datatrove_seconds"] / pair["ours_seconds"]
    assert peer["documents_in"] == ours["documents_in"] == 200
    assert 0 < peer["after_dedup"] <= peer["after_clean"] <= 200
    assert any("language ID" in item for item in peer["left_out"])
    assert (tmp_path / "turn1" / "datatrove" / "tokens").is_dir()  # the peer tokenized with the given tokenizer.json
    assert peer["filter_arguments"]["C4QualityFilter"]["min_num_sentences"] == CleanConfig().c4.min_sentences
    used = latest_output(str((tmp_path / "turn2" / "ours" / "work").resolve()), "tokenizer").local_file("tokenizer")
    assert Tokenizer.from_file(str(used)).get_vocab() == Tokenizer.from_file(str(given)).get_vocab()  # ours too


def test_the_peer_filters_take_our_thresholds():
    pytest.importorskip("datatrove", reason=f"the datatrove peer is a bench-only extra: {INSTALL}")
    from tasks.bench.datatrove_peer import filter_steps

    clean = CleanConfig(c4={"min_sentences": 4}, fineweb={"max_dup_line_char_frac": 0.05})
    steps = filter_steps(Path("in"), Path("out"), filter_arguments(clean.model_dump()))
    by_name = {type(step).__name__: step for step in steps}
    assert by_name["C4QualityFilter"].min_num_sentences == 4  # datatrove's default is 5
    assert by_name["FineWebQualityFilter"].char_duplicates_ratio == 0.05  # its default 0.01
    assert by_name["GopherQualityFilter"].min_doc_words == clean.gopher_quality.min_words
    assert dict(by_name["GopherRepetitionFilter"].dup_n_grams)[5] == clean.gopher_repetition.max_dup_5gram_char_frac
