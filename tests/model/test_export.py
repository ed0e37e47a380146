"""The export loads in transformers with no code of ours and matches our logits."""

import pytest
import torch
import transformers
from tokenizers import Tokenizer

from model.gpt import GPT, GPTConfig
from model.hf import export_hf
from tasks.data.tokenizer import EOS, PAD, TokenizerConfig, save_tokenizer, train_bpe

TEXT = open(__file__.replace("tests/model/test_export.py", "data/tiny/chapter_1.txt"), encoding="utf-8").read()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_bpe(iter([TEXT]), TokenizerConfig(vocab_size=320)), folder)
    return folder


def randomized(model: GPT) -> GPT:
    """Norm weights start at one; move them so that parity covers every parameter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_logits_match_llama_for_causal_lm(tokenizer_dir, tmp_path, tied):
    torch.manual_seed(0)
    ours = randomized(GPT(GPTConfig(vocab_size=320, seq_len=64, n_layer=2, n_head=2, d_model=64, tie_embeddings=tied)))
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    export_hf(ours, tokenizer_dir, tmp_path, tok.token_to_id(EOS), tok.token_to_id(PAD))

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf_model).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([hf_tok("Call me Ishmael. Some years ago, never mind how long")["input_ids"]])
    assert ids.tolist()[0] == tok.encode("Call me Ishmael. Some years ago, never mind how long").ids
    with torch.no_grad():
        diff = (ours(ids) - hf_model(ids).logits).abs().max().item()
    assert diff < 1e-4
    generated = hf_model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=hf_tok.pad_token_id)
    assert generated.shape == (1, ids.shape[1] + 5)
