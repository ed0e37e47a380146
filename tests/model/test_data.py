import numpy as np
import pytest

from model.data import TokenArrays, TokenRowWriter, epoch_order, rank_batches


def write_rows(path, rows, vocab_size=1000, **extra):
    writer = TokenRowWriter(path, rows.shape[1], vocab_size, tuple(extra))
    half = len(rows) // 2  # two record batches: reads must cross the boundary
    writer.write(rows[:half], **{k: v[:half] for k, v in extra.items()})
    writer.write(rows[half:], **{k: v[half:] for k, v in extra.items()})
    writer.close()


def test_rows_read_back_across_record_batches(tmp_path):
    rows = np.arange(50).reshape(10, 5)
    write_rows(tmp_path / "b.arrow", rows)
    arrays = TokenArrays(tmp_path / "b.arrow")
    assert len(arrays) == 10
    assert np.array_equal(arrays.rows(np.array([0, 4, 5, 9])), rows[[0, 4, 5, 9]])
    assert arrays.parts[0].dtype == np.uint16  # the vocab fits 16 bits


def test_datasets_can_open_the_token_file(tmp_path):
    from datasets import Dataset

    rows = np.arange(40).reshape(8, 5)
    write_rows(tmp_path / "b.arrow", rows, label=np.arange(8))
    ds = Dataset.from_file(str(tmp_path / "b.arrow"))
    assert len(ds) == 8 and ds[3]["tokens"] == list(range(15, 20)) and ds[3]["label"] == 3


def test_ranks_split_each_epoch_without_overlap():
    first_epoch = [np.concatenate([b for b, _ in zip(rank_batches(20, 5, 1, r, 2), range(2))]) for r in range(2)]
    assert set(first_epoch[0]).isdisjoint(first_epoch[1])
    assert sorted(np.concatenate(first_epoch)) == list(range(20))


def test_order_is_deterministic_per_seed_and_epoch():
    assert np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 7, 0))
    assert not np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 7, 1))


def test_too_few_rows_for_a_batch_is_explained():
    with pytest.raises(ValueError, match="cannot fill a batch"):
        next(rank_batches(6, 4, 0, 0, 2))


def test_skipping_batches_continues_the_same_sequence():
    from itertools import islice

    full = list(islice(rank_batches(50, 4, seed=1, rank=1, world=2), 20))  # 6 batches an epoch: crosses epochs
    for skip in (0, 5, 6, 13):
        resumed = list(islice(rank_batches(50, 4, seed=1, rank=1, world=2, skip=skip), 20 - skip))
        assert [b.tolist() for b in resumed] == [b.tolist() for b in full[skip:]]
