"""Pack: every shard packs its own documents into its own block files; the driver only links them."""

import numpy as np
import pytest
from datasets import Dataset
from tokenizers import Tokenizer

from infra.stage import Manifest
from infra.token_files import TokenArrays
from tasks.data.pack import PackConfig, tokenize_and_pack
from tasks.data.tokenize_shard import is_validation
from tasks.data.tokenizer import EOS, TokenizerConfig, save_tokenizer, train_bpe
from tests.data.conftest import dealt, deduped_shards


@pytest.fixture(scope="module")
def tokenizer(paragraphs, tmp_path_factory) -> Manifest:
    folder = tmp_path_factory.mktemp("tokenizer")
    trained = train_bpe((d["text"] for d in paragraphs), TokenizerConfig(vocab_size=400))
    save_tokenizer(trained, folder)
    return Manifest(stage="tokenizer", fingerprint="moby-400", path=str(folder), counts={"vocab_size": 400},
                    files={"tokenizer": "tokenizer.json"})


def expected_blocks(docs: list[dict], tokenizer, split: str, width: int) -> np.ndarray:
    """What one unit must hold: its split's documents in order, EOS after each, cut into rows, the tail dropped."""
    eos = tokenizer.token_to_id(EOS)
    stream = [t for d in docs if (split == "val") == is_validation(d["id"], 0.2) for t in tokenizer.encode(d["text"]).ids + [eos]]
    return np.asarray(stream[: len(stream) // width * width]).reshape(-1, width)


def test_each_shard_packs_its_own_blocks(ray_local, paragraphs, tokenizer, tmp_path):
    deduped = deduped_shards(tmp_path / "deduped", dealt(paragraphs, 3))
    packed = tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=32, val_fraction=0.2), str(tmp_path))
    assert packed.roles("train-") == ["train-00000", "train-00001", "train-00002"]
    assert sorted(packed.files) == sorted(packed.roles("train-") + packed.roles("val-"))
    hf = Tokenizer.from_file(str(tokenizer.local_file("tokenizer")))
    for split in ("train", "val"):
        for role in packed.roles(f"{split}-"):
            blocks, index = TokenArrays(packed.local_file(role)), int(role.split("-")[1])
            assert np.array_equal(blocks.rows(np.arange(len(blocks))), expected_blocks(paragraphs[index::3], hf, split, 33))
        assert len(TokenArrays(packed.local_files(f"{split}-"))) == packed.counts[f"{split}_blocks"]
        tokens = packed.counts[f"{split}_tokens"]
        assert tokens == packed.counts[f"{split}_blocks"] * 33 + packed.counts[f"{split}_dropped_tail_tokens"]
    assert packed.counts["train_docs"] + packed.counts["val_docs"] == len(paragraphs)
    assert len(Dataset.from_file(str(packed.local_file("train-00001")))) == len(TokenArrays(packed.local_file("train-00001")))


def test_a_unit_without_a_full_block_writes_no_file(ray_local, paragraphs, tokenizer, tmp_path):
    short = min(paragraphs, key=lambda d: len(d["text"]))  # fewer tokens than a block of 65
    deduped = deduped_shards(tmp_path / "deduped", [paragraphs[:60], [short]])
    packed = tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=64, val_fraction=0.2), str(tmp_path))
    assert packed.roles("train-") == ["train-00000"] and packed.stats["num_shards"] == 2
    assert "val-00001" not in packed.files and packed.counts["train_docs"] + packed.counts["val_docs"] == 61


def test_a_split_without_a_block_names_the_fields_to_change(ray_local, paragraphs, tokenizer, tmp_path):
    deduped = deduped_shards(tmp_path / "deduped", dealt(paragraphs[:30], 2))
    with pytest.raises(ValueError, match="holds no full block.*pack.seq_len"):
        tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=8192, val_fraction=0.2), str(tmp_path))


def test_seq_len_is_part_of_each_unit_key(ray_local, paragraphs, tokenizer, tmp_path):
    deduped = deduped_shards(tmp_path / "deduped", dealt(paragraphs, 2))
    first = tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=32), str(tmp_path))
    shorter = tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=16), str(tmp_path))
    again = tokenize_and_pack(deduped, tokenizer, PackConfig(seq_len=32), str(tmp_path))
    assert first.counts["units_reused"] == 0 and shorter.counts["units_reused"] == 0
    assert again.cached and again.fingerprint == first.fingerprint
