"""The tokenizer trains on a seeded sample that Ray workers draw: the same sample, and tokenizer, for any sharding."""

import numpy as np
import pytest

from infra.stage import Manifest
from tasks.data import tokenizer as tok
from tasks.data.tokenizer import TokenizerConfig, bottom, doc_scores, train_tokenizer
from tests.data.conftest import dealt, deduped_shards


def test_ties_at_the_cut_are_all_kept():
    scores, sizes = bottom(np.array([5, 1, 5, 3], np.uint64), np.full(4, 10), cap=25)
    assert scores.tolist() == [1, 3, 5, 5] and sizes.sum() == 40  # the first 5 reaches 25 bytes; its tie comes along


def test_a_bottom_merged_from_parts_is_the_bottom_of_the_whole():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 50, 300).astype(np.uint64)  # many ties
    sizes = rng.integers(1, 100, 300)
    whole = bottom(scores, sizes, cap=2000)
    parts = [bottom(scores[i::3], sizes[i::3], cap=2000) for i in range(3)]
    merged = bottom(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), cap=2000)
    assert whole[0].tolist() == merged[0].tolist() and whole[1].sum() == merged[1].sum()


def test_the_seed_picks_the_sample_and_the_id_alone_scores_a_document():
    ids = [f"doc-{i}" for i in range(200)]
    assert doc_scores(1, ids).tolist() == doc_scores(1, ids[::-1])[::-1].tolist()
    first, second = (set(bottom(doc_scores(seed, ids), np.ones(200, int), cap=20)[0]) for seed in (1, 2))
    assert first != second


def trained(workdir, docs, num_shards: int, cfg: TokenizerConfig) -> Manifest:
    return train_tokenizer(deduped_shards(workdir / "deduped", dealt(docs, num_shards)), cfg, str(workdir))


@pytest.mark.parametrize("sample_bytes", [60_000, 10**9], ids=["sampled", "whole-corpus"])
def test_one_shard_or_three_give_the_same_tokenizer(ray_local, paragraphs, tmp_path, monkeypatch, sample_bytes):
    cfg = TokenizerConfig(vocab_size=400, sample_bytes=sample_bytes, sample_seed=7)
    one = trained(tmp_path / "one", paragraphs, 1, cfg)
    monkeypatch.setattr(tok, "ROUND_SHARDS_PER_CPU", 1)  # rounds of fewer shards than there are: the threshold carries over
    three = trained(tmp_path / "three", paragraphs, 3, cfg)
    assert one.local_file("tokenizer").read_bytes() == three.local_file("tokenizer").read_bytes()
    assert one.counts == three.counts and one.stats == three.stats == {"sample_cap_bytes": sample_bytes, "sample_seed": 7}
    total = sum(len(d["text"].encode()) for d in paragraphs)
    if sample_bytes < total:
        assert sample_bytes <= one.counts["sample_bytes"] < sample_bytes + 5_000  # the cap, crossed by one paragraph
        assert one.counts["sample_docs"] < len(paragraphs)
    else:
        assert one.counts["sample_docs"] == len(paragraphs) and one.counts["sample_bytes"] == total
    assert not list((tmp_path / "three" / "tokenizer").glob(".sample-*"))  # the scratch texts are removed


def test_another_seed_trains_on_another_sample(ray_local, paragraphs, tmp_path):
    first, second = (trained(tmp_path / str(seed), paragraphs, 2, TokenizerConfig(vocab_size=400, sample_bytes=30_000,
                                                                                   sample_seed=seed)) for seed in (1, 2))
    assert first.fingerprint != second.fingerprint
    assert first.local_file("tokenizer").read_bytes() != second.local_file("tokenizer").read_bytes()
