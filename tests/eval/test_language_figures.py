"""Bits per byte counts the text's real bytes; each source's held-out documents are those pack held out; every
document token is scored once; learning curves come from the training logs."""

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from infra.stage import Manifest
from model.data import TokenRowWriter
from model.gpt import GPT, MODEL_SIZES, GPTConfig
from model.inference import block_losses, sequence_losses
from tasks.data.pack import is_validation
from tasks.data.shards import write_parquet_atomic
from tasks.data.tokenizer import EOS, TokenizerConfig, train_bpe
from tasks.eval.evaluate import learning_curves
from tasks.eval.language import held_out_documents, lm_figures, token_byte_lengths

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["Call me Ishmael. Some years ago—never mind how long precisely—", "naïve café déjà vu 東京 🐳 whale"]


@pytest.fixture(scope="module")
def tokenizer():
    chapters = [p.read_text() for p in sorted((REPO / "data" / "tiny").glob("chapter_*.txt"))[:3]]
    return train_bpe(iter(chapters + TEXTS), TokenizerConfig(vocab_size=400))


def test_token_bytes_sum_to_the_texts_utf8_bytes(tokenizer):
    lengths = token_byte_lengths(tokenizer)
    for text in TEXTS:
        assert lengths[tokenizer.encode(text).ids].sum() == len(text.encode("utf-8"))
    assert lengths[tokenizer.token_to_id(EOS)] == 0  # a special token stands for no text


def test_bits_per_byte_is_the_loss_in_bits_spread_over_bytes():
    losses, tokens, num_bytes = np.array([60.0, 80.0]), np.array([20, 20]), np.array([70, 90])
    figures = lm_figures(losses, tokens, num_bytes, 200, 0)
    assert figures["loss"] == pytest.approx(3.5) and figures["perplexity"] == pytest.approx(math.exp(3.5))
    assert figures["bits_per_byte"] == pytest.approx(140 / (math.log(2) * 160))
    for key in ("loss", "perplexity", "bits_per_byte"):
        low, high = figures[f"{key}_ci95"]
        assert low <= figures[key] <= high


def test_a_long_document_is_scored_token_by_token_once(tmp_path):
    model = GPT(GPTConfig(vocab_size=64, seq_len=16, **MODEL_SIZES["debug"])).eval()
    rows = np.random.default_rng(0).integers(0, 64, (3, 17))
    path = tmp_path / "blocks.arrow"
    writer = TokenRowWriter(path, 17, 64)
    writer.write(rows)
    writer.close()
    per_block = block_losses(model, path)
    assert sequence_losses(model, list(rows)).tolist() == pytest.approx(per_block.tolist(), rel=1e-5)
    # three blocks that share their edge tokens are one document of 49 tokens: 48 predictions, in 3 windows
    document = np.concatenate([rows[0], *(row[1:] for row in rows[1:])])
    windows = [document[:17], document[16:33], document[32:]]
    assert sequence_losses(model, [document, document[:5]])[0] == pytest.approx(
        sum(sequence_losses(model, windows)), rel=1e-5)


def test_held_out_documents_are_packs_validation_documents_capped_per_source(tmp_path):
    ids = [f"doc-{i}" for i in range(400)]
    sources = ["a" if i % 4 else "b" for i in range(400)]
    for shard in range(2):
        rows = [{"id": i, "text": f"text of {i}", "source": s} for i, s in list(zip(ids, sources))[shard::2]]
        write_parquet_atomic(pa.Table.from_pylist(rows), tmp_path / f"shard-{shard:05d}.parquet")
    deduped = Manifest(stage="dedup", fingerprint="f", path=str(tmp_path))
    held_out = held_out_documents(deduped, 0.2, max_docs=15)
    expected = {s: {f"text of {i}" for i, s2 in zip(ids, sources) if s2 == s and is_validation(i, 0.2)} for s in "ab"}
    assert set(held_out) == {"a", "b"}
    for source, texts in held_out.items():
        assert len(texts) == min(15, len(expected[source])) and set(texts) <= expected[source]


def test_learning_curves_read_each_training_stages_log(tmp_path):
    records = [{"split": "train", "step": 1, "loss": 5.0, "lr": 0.1}, {"split": "val", "step": 2, "loss": 4.5},
               {"split": "checkpoint", "step": 2, "tag": "x"}, {"split": "train", "step": 2, "loss": 4.0, "lr": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifests = {"pack": Manifest(stage="pack", fingerprint="p", path=str(tmp_path), files={"val-00000": "v.arrow"}),
                 "pretrain": Manifest(stage="pretrain", fingerprint="t", path=str(tmp_path), files={"metrics": "metrics.jsonl"})}
    assert learning_curves(manifests) == {"pretrain": {"train": [{"step": 1, "loss": 5.0}, {"step": 2, "loss": 4.0}],
                                                       "val": [{"step": 2, "loss": 4.5}]}}
