"""Evaluation that needs the model: perplexity, classifier predictions, generation. Torch only."""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.data import IGNORE_INDEX, TokenArrays, labelled_batch, lm_batch
from model.gpt import GPT, GPTClassifier, KVCache


def perplexity(model: GPT, blocks_paths: Path | list[Path], batch_size: int = 16, max_blocks: int | None = None) -> dict:
    """Over the first `max_blocks` blocks of one token file or of a split's shards, in order."""
    losses = block_losses(model, blocks_paths, batch_size, max_blocks)
    total_tokens = len(losses) * model.cfg.seq_len
    mean_loss = float(losses.sum()) / max(1, total_tokens)
    return {"loss": mean_loss, "perplexity": math.exp(mean_loss), "tokens": total_tokens}


@torch.no_grad()
def block_losses(model: GPT, blocks_paths: Path | list[Path], batch_size: int = 16, max_blocks: int | None = None) -> np.ndarray:
    """Summed cross-entropy (nats) over each block's seq_len predicted tokens: (num_blocks,), the first `max_blocks`."""
    blocks = TokenArrays(blocks_paths)
    num_blocks = len(blocks) if max_blocks is None else min(len(blocks), max_blocks)
    losses = []
    for start in range(0, num_blocks, batch_size):
        x, y = lm_batch(blocks, np.arange(start, min(start + batch_size, num_blocks)))
        nll = F.cross_entropy(model(x).transpose(1, 2).float(), y, reduction="none")  # (B, T)
        losses.append(nll.sum(1).double().numpy())
    return np.concatenate(losses) if losses else np.zeros(0)


@torch.no_grad()
def sequence_losses(model: GPT, sequences: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Summed cross-entropy (nats) of tokens[1:] of each sequence: (num_sequences,). A sequence longer than the
    context is cut into windows of seq_len + 1 tokens that share one token, so every token is predicted once."""
    width = model.cfg.seq_len + 1
    windows = [(i, seq[start : start + width]) for i, seq in enumerate(sequences)
               for start in range(0, max(1, len(seq) - 1), width - 1)]
    totals = np.zeros(len(sequences))
    for start in range(0, len(windows), batch_size):
        owners, batch = zip(*windows[start : start + batch_size])
        rows = torch.full((len(batch), max(map(len, batch))), IGNORE_INDEX, dtype=torch.long)  # (B, <= T + 1)
        for r, window in enumerate(batch):
            rows[r, : len(window)] = torch.from_numpy(np.asarray(window, dtype=np.int64))
        # padding sits after each window's real tokens: causal attention keeps it out of their predictions
        logits = model(rows[:, :-1].clamp(min=0))
        nll = F.cross_entropy(logits.transpose(1, 2).float(), rows[:, 1:], ignore_index=IGNORE_INDEX, reduction="none")
        np.add.at(totals, list(owners), nll.sum(1).double().numpy())
    return totals


@torch.no_grad()
def predict(model: GPTClassifier, data_path: Path, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels) for every row of a labelled token file."""
    data = TokenArrays(data_path, ("length", "label"))
    truth, predicted = [], []
    for start in range(0, len(data), batch_size):
        tokens, lengths, labels = labelled_batch(data, np.arange(start, min(start + batch_size, len(data))))
        predicted.append(model(tokens, lengths).argmax(-1).numpy())
        truth.append(labels.numpy())
    return np.concatenate(truth), np.concatenate(predicted)


@torch.no_grad()
def generate(model: GPT, prompt_ids: list[int], max_new_tokens: int, top_p: float | None = None,
             temperature: float = 1.0, seed: int = 0, stop_id: int | None = None, use_cache: bool = True) -> list[int]:
    """Greedy decoding when top_p is None, nucleus sampling otherwise; stops after stop_id if given.
    With the cache each step computes only the new position; once the text outgrows the context, every step
    computes the last seq_len tokens afresh (a sliding window: cached keys would carry stale positions)."""
    generator = torch.Generator().manual_seed(seed)
    ids, cache, cached = list(prompt_ids), None, 0
    for _ in range(max_new_tokens):
        if use_cache and len(ids) <= model.cfg.seq_len:
            cache = cache or KVCache(model.cfg)
            logits = model(torch.tensor([ids[cached:]]), cache=cache)[0, -1].float()
            cached = len(ids)
        else:
            logits = model(torch.tensor([ids[-model.cfg.seq_len :]]))[0, -1].float()
        ids.append(int(logits.argmax()) if top_p is None else sample_top_p(logits, top_p, temperature, generator))
        if ids[-1] == stop_id:
            break
    return ids[len(prompt_ids) :]


def sample_top_p(logits: torch.Tensor, top_p: float, temperature: float, generator: torch.Generator) -> int:
    probs = F.softmax(logits / temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(0) - sorted_probs < top_p  # smallest set whose mass reaches top_p
    return int(order[torch.multinomial(sorted_probs * keep, 1, generator=generator)])
