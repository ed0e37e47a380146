import json

import pytest

from tasks.data.tokenizer import EOS, PAD, TokenizerConfig, train_bpe
from tasks.train.sft import SFTConfig, encode_pairs, read_pairs


def test_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "response": "A"}) + "\n" + json.dumps({"prompt": "Q"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: needs string fields 'prompt' and 'response'"):
        read_pairs(path, SFTConfig(data=path))
    path.write_text("{oops\n")
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: invalid JSON"):
        read_pairs(path, SFTConfig(data=path))


def test_pairs_are_prompt_response_eos_then_padding():
    tok = train_bpe(iter(["Is this spam? Answer: ham spam ham"] * 20), TokenizerConfig(vocab_size=300))
    encoded = encode_pairs(tok, [("Is this spam? Answer:", " ham")], width=16)
    prompt_len, length = int(encoded["prompt_length"][0]), int(encoded["length"][0])
    row = encoded["rows"][0].tolist()
    assert tok.decode(row[:prompt_len]) == "Is this spam? Answer:"
    assert tok.decode(row[prompt_len : length - 1]) == " ham"
    assert row[length - 1] == tok.token_to_id(EOS)
    assert set(row[length:]) == {tok.token_to_id(PAD)}
