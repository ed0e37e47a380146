"""Batches the trainer reads from token files (their format: `infra/token_files.py`): data order and tensors."""

from collections.abc import Iterator

import numpy as np
import torch

from infra.token_files import (  # noqa: F401 - re-exported
    TokenArrays,
    TokenRowWriter,
    read_fixed_tokens,
    token_dtype,
)


def epoch_order(num_rows: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every rank for a given (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_rows)


def rank_batches(num_rows: int, batch_size: int, seed: int, rank: int, world: int, skip: int = 0) -> Iterator[np.ndarray]:
    """Endless batches of row indices for one rank: each epoch split evenly across ranks.

    `skip` batches are passed over without reading anything, so a resumed run continues
    exactly where the checkpoint left off.
    """
    per_rank = num_rows // world
    if per_rank < batch_size:
        raise ValueError(f"{num_rows} rows cannot fill a batch of {batch_size} on each of {world} ranks")
    per_epoch = per_rank // batch_size
    epoch, first = divmod(skip, per_epoch)
    while True:
        mine = epoch_order(num_rows, seed, epoch)[rank::world][:per_rank]
        for start in range(first * batch_size, per_epoch * batch_size, batch_size):
            yield mine[start : start + batch_size]
        epoch, first = epoch + 1, 0


def lm_batch(blocks: TokenArrays, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.from_numpy(blocks.rows(indices).astype(np.int64))  # (B, T + 1)
    return rows[:, :-1], rows[:, 1:]


def labelled_batch(data: TokenArrays, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tokens = torch.from_numpy(data.rows(indices).astype(np.int64))
    lengths = torch.from_numpy(data.extra["length"][indices].astype(np.int64))
    labels = torch.from_numpy(data.extra["label"][indices].astype(np.int64))
    return tokens, lengths, labels


IGNORE_INDEX = -100  # cross_entropy skips these targets


def sft_batch(data: TokenArrays, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets where only response tokens (and the closing EOS) are predicted."""
    rows = torch.from_numpy(data.rows(indices).astype(np.int64))  # (B, T + 1)
    prompt_lengths = torch.from_numpy(data.extra["prompt_length"][indices].astype(np.int64))
    lengths = torch.from_numpy(data.extra["length"][indices].astype(np.int64))
    return sft_targets(rows, prompt_lengths, lengths)


def sft_targets(rows: torch.Tensor, prompt_lengths: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = rows[:, :-1], rows[:, 1:].clone()
    predicted = torch.arange(1, rows.shape[1])[None, :]  # position of the token each target predicts
    keep = (predicted >= prompt_lengths[:, None]) & (predicted < lengths[:, None])
    y[~keep] = IGNORE_INDEX
    return x, y
