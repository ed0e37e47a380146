from itertools import islice

import numpy as np
import pytest

from model.data import (
    TokenArrays,
    TokenRowWriter,
    epoch_order,
    micro_batches,
    rank_batches,
)
from model.spec import TrainConfig


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


def one_step(world: int, num_rows: int = 50, step: int = 3) -> list[list[int]]:
    """Every micro batch of optimizer step `step` over all ranks, global batch 8 in micro batches of 2."""
    per_rank = 8 // (2 * world)
    batches = []
    for rank in range(world):
        ranks_batches = micro_batches(num_rows, 1, 8, 2, rank, world, first_sample=step * 8)
        batches += [next(ranks_batches).tolist() for _ in range(per_rank)]
    return sorted(batches)


def test_a_step_trains_on_the_same_micro_batches_on_any_world_size():
    assert one_step(1) == one_step(2) == one_step(4)
    assert len({row for batch in one_step(2) for row in batch}) == 8  # 8 distinct samples (50 rows, inside epoch 0)


def test_each_epoch_visits_every_row_once():
    batches = micro_batches(20, 1, 4, 2, rank=0, world=1)
    first_epoch = np.concatenate([next(batches) for _ in range(10)])
    assert sorted(first_epoch) == list(range(20))
    second_epoch = np.concatenate([next(batches) for _ in range(10)])
    assert sorted(second_epoch) == list(range(20)) and not np.array_equal(first_epoch, second_epoch)


def test_order_is_deterministic_per_seed_and_epoch():
    assert np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 7, 0))
    assert not np.array_equal(epoch_order(100, 7, 0), epoch_order(100, 7, 1))


def test_too_few_rows_for_a_global_batch_is_explained():
    with pytest.raises(ValueError, match="cannot fill a global batch of 8"):
        next(micro_batches(6, 0, 8, 4, 0, 2))


def test_a_global_batch_the_ranks_cannot_share_is_a_config_error():
    with pytest.raises(ValueError, match=r"train.global_batch_size=12 is not a multiple of train.micro_batch_size=4 x 2"):
        TrainConfig(micro_batch_size=4, global_batch_size=12).accumulation_steps(world=2)
    assert TrainConfig(micro_batch_size=4, global_batch_size=16).accumulation_steps(world=2) == 2
    assert TrainConfig(micro_batch_size=4).accumulation_steps(world=3) == 1  # unset: one micro batch per rank


def test_resuming_at_a_sample_continues_the_same_sequence_across_epochs():
    full = list(islice(micro_batches(50, 1, 8, 4, rank=1, world=2), 20))  # 6.25 steps an epoch: crosses epochs
    for step in (0, 5, 6, 13):
        resumed = list(islice(micro_batches(50, 1, 8, 4, rank=1, world=2, first_sample=step * 8), 20 - step))
        assert [b.tolist() for b in resumed] == [b.tolist() for b in full[step:]]


def test_rank_batches_is_one_micro_batch_per_rank_and_step():
    assert [b.tolist() for b in islice(rank_batches(50, 4, 1, 1, 2, skip=2), 3)] == \
        [b.tolist() for b in islice(micro_batches(50, 1, 8, 4, 1, 2, first_sample=16), 3)]
