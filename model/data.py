"""Batches the trainer reads from token files (their format: `infra/token_files.py`): data order and tensors."""

import itertools
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


def rows_at(positions: np.ndarray, num_rows: int, seed: int) -> np.ndarray:
    """The rows at global sample positions: position s is row `epoch_order(seed, s // num_rows)[s % num_rows]`."""
    epochs, offsets = np.divmod(positions, num_rows)
    rows = np.empty_like(positions)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        rows[here] = epoch_order(num_rows, seed, int(epoch))[offsets[here]]
    return rows


def micro_batches(num_rows: int, seed: int, global_batch: int, micro_batch: int, rank: int, world: int,
                  first_sample: int = 0) -> Iterator[np.ndarray]:
    """Endless micro batches of row indices for one rank, `global_batch // (micro_batch * world)` per optimizer step.

    Step k trains on the global samples [k * G, (k + 1) * G), cut into micro batches of consecutive samples; rank r
    takes micro batches r, r + world, ... of them. The samples of a step and how they are grouped into micro batches
    do not depend on the world size, only who computes which does: a run resumed on another rank count (from
    `first_sample`, a multiple of G) averages its gradient over the same micro batches.
    """
    if num_rows < global_batch:
        raise ValueError(f"{num_rows} rows cannot fill a global batch of {global_batch}")
    per_step = global_batch // (micro_batch * world)
    for step_start in itertools.count(first_sample, global_batch):
        for micro in range(per_step):
            start = step_start + (micro * world + rank) * micro_batch
            yield rows_at(np.arange(start, start + micro_batch), num_rows, seed)


def rank_batches(num_rows: int, batch_size: int, seed: int, rank: int, world: int, skip: int = 0) -> Iterator[np.ndarray]:
    """One micro batch per rank and step (no accumulation), after `skip` steps."""
    return micro_batches(num_rows, seed, batch_size * world, batch_size, rank, world, skip * batch_size * world)


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
