"""Initialisation, document-aware attention and KV-cache generation of the model (issue 18, items 2-4)."""

import math

import pytest
import torch

from model.gpt import GPT, MODEL_SIZES, GPTConfig
from model.inference import generate

EOS = 0
DEBUG = GPTConfig(vocab_size=64, seq_len=32, **MODEL_SIZES["debug"])


def test_projections_into_the_residual_stream_start_smaller_with_depth():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=512, seq_len=16, n_layer=8, n_head=4, d_model=256)
    model = GPT(cfg)
    params = dict(model.named_parameters())
    residual = 0.02 / math.sqrt(2 * cfg.n_layer)
    for name, p in params.items():
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            assert p.std().item() == pytest.approx(residual, rel=0.05), name
        elif name.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight", "up_proj.weight",
                            "embed_tokens.weight")):
            assert p.std().item() == pytest.approx(0.02, rel=0.05), name
        else:
            assert name.endswith("layernorm.weight") or name == "norm.weight"
            assert torch.all(p == 1)


def packed_block(prev_doc: list[int], next_doc: list[int]) -> torch.Tensor:
    return torch.tensor([prev_doc + [EOS] + next_doc])


def test_with_document_masking_the_previous_document_cannot_change_the_next_ones_logits():
    torch.manual_seed(0)
    masked = GPT(GPTConfig(**{**DEBUG.to_dict(), "document_mask": True, "eos_id": EOS})).eval()
    plain = GPT(DEBUG).eval()
    plain.load_state_dict(masked.state_dict())
    first, other_first, second = [5, 9, 3, 7, 11, 2], [40, 41, 42, 43, 44, 45], [8, 6, 30, 12, 19]
    a, b = packed_block(first, second), packed_block(other_first, second)
    start = len(first) + 1  # the next document's first token
    assert torch.equal(masked(a)[0, start:], masked(b)[0, start:])
    assert not torch.allclose(plain(a)[0, start:], plain(b)[0, start:], atol=1e-4)  # off: attention crosses the EOS
    # the EOS itself still sees the document it ends
    assert not torch.allclose(masked(a)[0, : start], masked(b)[0, : start], atol=1e-4)


def test_document_masking_needs_to_know_the_eos_token():
    with pytest.raises(ValueError, match="model.eos_id"):
        GPT(GPTConfig(**{**DEBUG.to_dict(), "document_mask": True}))


def count_positions(model: GPT) -> list[int]:
    """Positions the model computes, summed over calls (tokens through the embedding)."""
    counted = [0]
    model.embed_tokens.register_forward_hook(lambda module, args, out: counted.__setitem__(0, counted[0] + args[0].numel()))
    return counted


@pytest.mark.parametrize("document_mask", [False, True])
def test_kv_cache_generates_the_same_tokens_computing_each_position_once(document_mask):
    torch.manual_seed(0)
    cfg = GPTConfig(**{**DEBUG.to_dict(), "seq_len": 64, "document_mask": document_mask, "eos_id": EOS})
    model = GPT(cfg).eval()
    prompt, steps = [3, 17, EOS, 25, 4, 9], 40
    computed = count_positions(model)
    cached = generate(model, prompt, steps)
    with_cache, computed[0] = computed[0], 0
    uncached = generate(model, prompt, steps, use_cache=False)
    assert cached == uncached and len(cached) == steps
    n = len(prompt) + steps - 1  # the last token is sampled, never fed back
    assert with_cache == n  # each position once
    assert computed[0] == sum(range(len(prompt), n + 1))  # without: the whole prefix at every step, about n^2 / 2


def test_past_the_context_the_cache_gives_way_to_a_sliding_window():
    torch.manual_seed(0)
    model = GPT(DEBUG).eval()
    prompt = list(range(1, 20))
    assert generate(model, prompt, 30) == generate(model, prompt, 30, use_cache=False)  # 19 + 30 > seq_len 32


def test_weight_decay_skips_embeddings_norms_and_biases():
    from model.engine import param_groups
    from model.gpt import GPTClassifier

    model = GPTClassifier(GPT(DEBUG), 2)  # the head has a bias
    decayed, plain = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {names[id(p)] for p in plain["params"]} == {n for n in names.values() if "norm" in n} | {
        "backbone.embed_tokens.weight", "score.bias"}  # the tied lm_head is the embedding: not decayed either
    assert all(n.endswith("_proj.weight") or n == "score.weight" for n in (names[id(p)] for p in decayed["params"]))
