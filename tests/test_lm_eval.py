"""lm-evaluation-harness runs on our Hugging Face export with a task defined in the repo, no code of ours inside."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from model.gpt import GPT, GPTConfig
from model.hf import export_hf
from tasks.data.tokenizer import EOS, PAD, TokenizerConfig, save_tokenizer, train_bpe

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "configs" / "lm_eval"


@pytest.fixture
def exported(tmp_path):
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "data" / "tiny").glob("*.txt")))
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    save_tokenizer(train_bpe(iter([text]), TokenizerConfig(vocab_size=512)), tok_dir)
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, seq_len=128, n_layer=2, n_head=2, d_model=64)).eval()
    return export_hf(model, tok_dir, tmp_path / "hf", tok.token_to_id(EOS), tok.token_to_id(PAD))


def test_lm_eval_scores_the_export_on_a_local_task(exported, tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={exported},dtype=float32",
           "--include_path", str(TASK_DIR), "--tasks", "tokenmill_moby_cloze", "--device", "cpu",
           "--batch_size", "8", "--output_path", str(out)]
    result = subprocess.run(cmd, cwd=TASK_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    task = results["results"]["tokenmill_moby_cloze"]
    assert 0.0 <= task["acc,none"] <= 1.0
    assert results["n-samples"]["tokenmill_moby_cloze"]["effective"] == 24
