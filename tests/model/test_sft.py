import torch
import torch.nn.functional as F

from model.data import IGNORE_INDEX, sft_targets
from model.gpt import GPT, GPTConfig

# two pairs: prompt of 3 tokens + response of 2 + EOS (length 6), prompt of 2 + response of 1 + EOS (length 4)
ROWS = torch.tensor([[5, 6, 7, 8, 9, 1, 0, 0], [5, 6, 8, 1, 0, 0, 0, 0]])
PROMPT_LENGTHS, LENGTHS = torch.tensor([3, 2]), torch.tensor([6, 4])


def test_only_response_and_eos_are_targets():
    x, y = sft_targets(ROWS, PROMPT_LENGTHS, LENGTHS)
    assert x.tolist()[0] == [5, 6, 7, 8, 9, 1, 0]
    assert y.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 8, 9, 1] + [IGNORE_INDEX] * 2,
                          [IGNORE_INDEX, 8, 1] + [IGNORE_INDEX] * 4]


def test_prompt_positions_contribute_nothing_to_the_gradient():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, seq_len=8, n_layer=1, n_head=2, d_model=16))
    x, y = sft_targets(ROWS, PROMPT_LENGTHS, LENGTHS)
    logits = model(x)
    logits.retain_grad()
    F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX).backward()
    masked = y == IGNORE_INDEX
    assert torch.count_nonzero(logits.grad[masked]) == 0  # no gradient flows out of prompt or padding positions
    assert torch.count_nonzero(logits.grad[~masked]) > 0

    # and the parameter gradient is exactly that of the loss over response positions alone
    full_grad = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(x)
    per_position = F.cross_entropy(logits.flatten(0, 1), y.clamp(min=0).flatten(), reduction="none")
    (per_position[~masked.flatten()].sum() / (~masked).sum()).backward()
    for a, p in zip(full_grad, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
