"""Token blocks from real text (the tiny Moby-Dick chapters) for training tests without the data stages."""

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import model
from infra.launch import deepspeed_command, launch_env, run_streaming
from model.data import TokenRowWriter
from model.spec import TrainSpec

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = Path(model.__file__).parent / "trainer.py"
VOCAB = 256


@pytest.fixture(scope="session")
def text_blocks(tmp_path_factory) -> tuple[Path, Path]:
    """(train.arrow, val.arrow): blocks of 33 tokens from a byte-level BPE trained on a few chapters."""
    folder = tmp_path_factory.mktemp("text-blocks")
    texts = [p.read_text() for p in sorted((REPO / "data" / "tiny").glob("chapter_*.txt"))[:6]]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, show_progress=False,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ids = np.concatenate([tokenizer.encode(t).ids for t in texts])
    blocks = ids[: len(ids) // 33 * 33].reshape(-1, 33)
    paths = folder / "train.arrow", folder / "val.arrow"
    for path, rows in zip(paths, (blocks[:-32], blocks[-32:])):
        writer = TokenRowWriter(path, 33, VOCAB)
        writer.write(rows)
        writer.close()
    return paths


def launch(spec: TrainSpec, folder: Path, num_procs: int = 2) -> list[str]:
    """Run the spec under the real deepspeed launcher (CPU ranks over gloo); returns its output lines."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.json"
    spec.save(spec_path)
    lines: list[str] = []
    run_streaming(deepspeed_command(TRAIN_SCRIPT, [str(spec_path)], num_procs), launch_env(num_procs, False),
                  lines.append, cwd=folder)
    return lines


def metrics(out_dir: Path, split: str | None = None) -> list[dict]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
