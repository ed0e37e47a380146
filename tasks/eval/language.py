"""Language-model figures from per-unit losses: perplexity and bits per byte with bootstrap intervals, on the
packed validation blocks and on held-out documents of each input source.

Bits per byte = total NLL (nats) / (ln 2 x UTF-8 bytes of the predicted tokens): unlike perplexity it does not
depend on the tokenizer, so runs with different vocabularies compare.
"""

import math
from collections import Counter, defaultdict

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers

from infra.stage import Manifest
from infra.token_files import TokenArrays
from tasks.data.shards import read_table, shard_paths
from tasks.data.tokenize_shard import (
    is_validation,  # pack's split rule: the documents pretraining never saw
)
from tasks.eval.bootstrap import ratio_interval


def token_byte_lengths(tok: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for: (vocab_size,). Special tokens (EOS, PAD) stand for no text: 0."""
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())  # byte-level BPE writes each byte as one of these characters
    special = {i for i, token in tok.get_added_tokens_decoder().items() if token.special}
    lengths = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for i in range(len(lengths)):
        token = tok.id_to_token(i)
        if i in special or token is None:
            continue
        # a tokenizer given by the user may not be byte-level: then the bytes of the token's decoded text
        lengths[i] = len(token) if set(token) <= alphabet else len(tok.decode([i]).encode())
    return lengths


def lm_figures(unit_losses: np.ndarray, unit_tokens: np.ndarray, unit_bytes: np.ndarray,
               num_resamples: int, seed: int) -> dict:
    """Loss, perplexity and bits per byte over all units, each with an interval from resampling whole units."""
    loss = unit_losses.sum() / unit_tokens.sum()
    loss_ci = ratio_interval(unit_losses, unit_tokens, num_resamples, seed)
    bits_ci = ratio_interval(unit_losses / math.log(2), unit_bytes, num_resamples, seed)
    return {"loss": float(loss), "loss_ci95": loss_ci, "perplexity": math.exp(loss),
            "perplexity_ci95": [math.exp(bound) for bound in loss_ci],
            "bits_per_byte": float(unit_losses.sum() / (math.log(2) * unit_bytes.sum())), "bits_per_byte_ci95": bits_ci,
            "tokens": int(unit_tokens.sum()), "bytes": int(unit_bytes.sum())}


def val_block_figures(model, packed: Manifest, byte_lengths: np.ndarray, max_blocks: int | None,
                      num_resamples: int, seed: int) -> dict:
    """Figures on the packed validation blocks, the intervals resampling blocks."""
    from model.inference import block_losses

    losses = block_losses(model, packed.local_files("val-"), max_blocks=max_blocks)
    targets = TokenArrays(packed.local_files("val-")).rows(np.arange(len(losses)))[:, 1:]  # (blocks, seq_len)
    tokens = np.full(len(losses), targets.shape[1])
    return {"blocks": len(losses), **lm_figures(losses, tokens, byte_lengths[targets].sum(1), num_resamples, seed)}


def held_out_documents(deduped: Manifest, val_fraction: float, max_docs: int) -> dict[str, list[str]]:
    """Texts of validation documents, by source: the first `max_docs` of each, in shard order."""
    texts = defaultdict(list)
    for path in shard_paths(deduped.root):
        keys = read_table(path, ["id", "source"])
        picked, num_picked = [], Counter()
        for row, (doc_id, source) in enumerate(zip(keys.column("id").to_pylist(), keys.column("source").to_pylist())):
            if is_validation(doc_id, val_fraction) and len(texts[source]) + num_picked[source] < max_docs:
                picked.append((row, source))
                num_picked[source] += 1
        if picked:  # the text column only of shards that hold a picked document
            column = read_table(path, ["text"]).column("text")
            for row, source in picked:
                texts[source].append(column[row].as_py())
    return {source: docs for source, docs in sorted(texts.items()) if docs}


def per_source_figures(model, tok: Tokenizer, byte_lengths: np.ndarray, documents: dict[str, list[str]],
                       max_doc_tokens: int, eos: int, num_resamples: int, seed: int) -> dict:
    """Figures per source, each document scored on its own after an EOS (as it follows one in the packed
    stream), its closing EOS predicted too; the intervals resample documents."""
    from model.inference import sequence_losses

    figures = {}
    for source, texts in documents.items():
        ids = [encoding.ids[:max_doc_tokens] for encoding in tok.encode_batch(texts)]
        losses = sequence_losses(model, [np.array([eos, *doc, eos]) for doc in ids])
        tokens = np.array([len(doc) + 1 for doc in ids])
        num_bytes = np.array([byte_lengths[doc].sum() for doc in ids])
        figures[source] = {"documents": len(texts), **lm_figures(losses, tokens, num_bytes, num_resamples, seed)}
    return figures
