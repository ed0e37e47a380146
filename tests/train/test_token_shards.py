"""The trainer reads a split as a list of shard files: rows indexed across them, each file still a datasets file."""

import numpy as np
import pytest
from datasets import Dataset

from infra.token_files import TokenArrays, TokenRowWriter
from model.gpt import GPTConfig
from model.spec import TrainConfig, TrainSpec


def write_shard(path, rows: np.ndarray, **extra: np.ndarray) -> str:
    writer = TokenRowWriter(path, rows.shape[1], 1000, tuple(extra))
    half = len(rows) // 2  # two record batches per file: reads cross batch and file boundaries
    writer.write(rows[:half], **{k: v[:half] for k, v in extra.items()})
    writer.write(rows[half:], **{k: v[half:] for k, v in extra.items()})
    writer.close()
    return str(path)


@pytest.fixture
def shards(tmp_path) -> list[str]:
    rows = np.arange(23 * 9).reshape(23, 9)
    cuts = [(0, 7), (7, 8), (8, 23)]  # uneven, one with a single row
    return [write_shard(tmp_path / f"train-{i:05d}.arrow", rows[a:b], label=np.arange(a, b)) for i, (a, b) in enumerate(cuts)]


def test_rows_across_shards_are_the_files_read_one_by_one(shards):
    one_by_one = np.concatenate([np.array(Dataset.from_file(path)["tokens"]) for path in shards])
    arrays = TokenArrays(shards, ("label",))
    assert len(arrays) == len(one_by_one) == 23
    order = np.random.default_rng(0).permutation(23)
    assert np.array_equal(arrays.rows(order), one_by_one[order])
    assert arrays.extra["label"].tolist() == list(range(23))


def test_one_path_still_reads_alone(shards):
    assert len(TokenArrays(shards[2])) == 15 and len(TokenArrays([shards[2]])) == 15


def test_shards_of_different_widths_or_none_are_refused(shards, tmp_path):
    other = write_shard(tmp_path / "wide.arrow", np.zeros((4, 17), int))
    with pytest.raises(ValueError, match="row widths"):
        TokenArrays([shards[0], other])
    with pytest.raises(ValueError, match="no token files"):
        TokenArrays([])


def test_a_spec_keeps_its_list_of_shards(shards, tmp_path):
    spec = TrainSpec(objective="lm", model=GPTConfig(), train=TrainConfig(), train_data=shards, val_data=shards[1],
                     out_dir=str(tmp_path))
    spec.save(tmp_path / "spec.json")
    loaded = TrainSpec.load(tmp_path / "spec.json")
    assert loaded.train_data == shards and loaded.val_data == shards[1]
