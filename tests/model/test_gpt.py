import pytest
import torch
import torch.nn.functional as F

from model.gpt import GPT, MODEL_SIZES, GPTClassifier, GPTConfig
from model.weights import load_classifier, load_gpt, save_weights

DEBUG = GPTConfig(vocab_size=64, seq_len=16, **MODEL_SIZES["debug"])


def test_logits_shape():
    model = GPT(DEBUG)
    assert model(torch.randint(0, 64, (3, 16))).shape == (3, 16, 64)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = GPT(DEBUG).eval()
    x = torch.randint(0, 64, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 64  # change only the future
    assert torch.allclose(model(x)[0, :10], model(y)[0, :10], atol=1e-6)


def test_classifier_ignores_padding():
    torch.manual_seed(0)
    clf = GPTClassifier(GPT(DEBUG), num_classes=2).eval()
    tokens = torch.randint(0, 64, (1, 16))
    other_padding = tokens.clone()
    other_padding[0, 6:] = 0
    lengths = torch.tensor([6])
    assert torch.allclose(clf(tokens, lengths), clf(other_padding, lengths), atol=1e-6)


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="not divisible"):
        GPT(GPTConfig(d_model=30, n_head=4))
    with pytest.raises(ValueError, match="exceeds the model's seq_len"):
        GPT(DEBUG)(torch.zeros(1, 17, dtype=torch.long))


def test_loss_falls_when_fitting_a_batch():
    torch.manual_seed(0)
    model = GPT(DEBUG)
    x = torch.randint(0, 64, (4, 17))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_weights_round_trip_with_tied_embeddings(tmp_path):
    model = GPT(DEBUG)
    save_weights(model.state_dict(), tmp_path / "model.safetensors", DEBUG)
    loaded = load_gpt(tmp_path)
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(model.eval()(x), loaded(x))
    assert loaded.lm_head.weight.data_ptr() == loaded.embed_tokens.weight.data_ptr()


def test_classifier_weights_round_trip(tmp_path):
    clf = GPTClassifier(GPT(DEBUG), 3).eval()
    save_weights(clf.state_dict(), tmp_path / "model.safetensors", DEBUG)
    tokens, lengths = torch.randint(0, 64, (2, 16)), torch.tensor([16, 5])
    assert torch.equal(clf(tokens, lengths), load_classifier(tmp_path, 3)(tokens, lengths))


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    net = GPT(GPTConfig(vocab_size=64, seq_len=16, n_layer=2, n_head=2, d_model=32))
    idx = torch.randint(0, 64, (2, 16))
    grads = []
    for checkpointing in (False, True):
        net.zero_grad()
        net.activation_checkpointing = checkpointing
        net(idx).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for plain, recomputed in zip(*grads):
        assert torch.allclose(plain, recomputed, atol=1e-6)
