"""The held-out cloze task, and lm-evaluation-harness scoring our Hugging Face export with it."""

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from model.gpt import GPT, GPTConfig
from model.hf import export_hf
from tasks.data.tokenizer import EOS, PAD, TokenizerConfig, save_tokenizer, train_bpe
from tasks.eval.cloze import WORD, cloze_items, fit_context
from tasks.eval.harness import (
    CLOZE_DATA,
    CLOZE_TASK,
    COMMAND,
    LmEvalConfig,
    run_lm_eval,
    write_cloze_task,
)

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "data" / "tiny").glob("*.txt"))


def test_cloze_items_are_real_sentences_with_real_word_distractors():
    texts = [p.read_text(encoding="utf-8") for p in CHAPTERS[:3]]
    counts = Counter(w for t in texts for w in WORD.findall(t))
    items = cloze_items(texts, 50, 4, seed=0)
    assert len(items) == 50 and items == cloze_items(texts, 50, 4, seed=0)  # the seed fixes the task
    flat = " ".join(" ".join(t.split()) for t in texts)
    for item in items:
        answer = item["choices"][item["answer"]]
        assert f"{item['context']}{answer}" in flat  # the answer is how the sentence really goes on
        assert len({c.lower() for c in item["choices"]}) == 4
        for choice in item["choices"]:
            word = choice[1:]
            assert choice[0] == " " and (choice == answer or counts[word] >= 2)  # a distractor is a word seen twice
            assert word[0].isupper() == answer[1].isupper() and abs(len(word) - len(answer[1:])) <= 2
    assert Counter(item["answer"] for item in items).most_common(1)[0][1] < 25  # the answer's place is shuffled


def test_a_context_is_cut_to_the_model_window_at_word_boundaries():
    item = {"context": " ".join(f"w{i}" for i in range(100)), "choices": [" end", " fin"], "answer": 0}
    fitted = fit_context(item, lambda text: len(text.split()), 30)
    assert len(fitted["context"].split()) + 1 <= 30 and item["context"].endswith(fitted["context"])


@pytest.fixture
def exported(tmp_path):
    text = " ".join(p.read_text(encoding="utf-8") for p in CHAPTERS)
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    save_tokenizer(train_bpe(iter([text]), TokenizerConfig(vocab_size=512)), tok_dir)
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, seq_len=128, n_layer=2, n_head=2, d_model=64)).eval()
    return export_hf(model, tok_dir, tmp_path / "hf", tok.token_to_id(EOS), tok.token_to_id(PAD)), tok


def test_lm_eval_scores_the_export_with_stderr_and_keeps_each_item(exported, tmp_path):
    export_dir, tok = exported
    cfg = LmEvalConfig(cloze_items=40)
    folder = tmp_path / "lm_eval"
    texts = [p.read_text(encoding="utf-8") for p in CHAPTERS[-2:]]
    assert write_cloze_task(folder, texts, cfg, lambda t: len(tok.encode(t).ids), 128) == 40
    assert (folder / f"{CLOZE_TASK}.yaml").read_text().count(CLOZE_DATA) == 1  # relative: the folder can move
    scores = run_lm_eval(export_dir, folder, cfg, "cpu")["tasks"][CLOZE_TASK]
    assert scores["items"] == 40 and 0 <= scores["acc"] <= 1 and scores["acc_stderr"] > 0
    low, high = scores["acc_ci95"]
    assert low < scores["acc"] < high
    samples = [json.loads(line) for line in (folder / f"samples_{CLOZE_TASK}.jsonl").read_text().splitlines()]
    assert len(samples) == 40 and all(len(s["loglikelihoods"]) == 4 for s in samples)
    assert sum(s["acc"] for s in samples) / 40 == pytest.approx(scores["acc"])


def test_a_missing_lm_eval_names_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed: import raises ImportError
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[lm-eval\]'"):
        run_lm_eval(tmp_path, tmp_path, LmEvalConfig(), "cpu")


def test_the_readme_shows_the_command_the_report_gives():
    assert COMMAND in (REPO / "README.md").read_text()
