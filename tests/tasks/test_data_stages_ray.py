"""The data stages on a real local Ray, on real Moby-Dick chapters plus planted bad documents."""

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from model.data import TokenArrays
from tasks.data.clean import CleanConfig, clean
from tasks.data.dedup import DedupConfig, dedup
from tasks.data.ingest import IngestConfig, ingest
from tasks.data.pack import PackConfig, tokenize_and_pack
from tasks.data.shards import rejected_rows, shard_paths
from tasks.data.tokenizer import EOS, TokenizerConfig, train_tokenizer
from tests.conftest import DATA


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    chapters = sorted((DATA / "tiny").glob("*.txt"))[:8]
    for path in chapters:
        shutil.copy(path, folder / path.name)
    shutil.copy(chapters[0], folder / "copy_of_chapter.txt")  # an exact duplicate
    (folder / "note.txt").write_text("Too short.")
    (folder / "table.txt").write_text("12 34 56 78 90 " * 40)
    return folder


def run_data_stages(corpus, workdir, files_per_shard):
    ingested = ingest(IngestConfig(paths=[corpus], files_per_shard=files_per_shard), workdir)
    cleaned = clean(ingested, CleanConfig(min_chars=200), workdir)
    deduped = dedup(cleaned, DedupConfig(), workdir)
    return ingested, cleaned, deduped


def kept_ids(manifest):
    return sorted(i for p in shard_paths(manifest.path) for i in pq.read_table(p).column("id").to_pylist())


def test_every_document_is_kept_or_rejected_with_a_reason(ray_local, corpus, tmp_path):
    stages = run_data_stages(corpus, tmp_path, files_per_shard=3)
    for m in stages:
        assert m.counts["docs_in"] == m.counts["kept"] + m.counts["rejected"], m.stage
    ingested, cleaned, deduped = stages
    assert ingested.counts["docs_in"] == 11
    assert cleaned.stats["rejected_by_reason"] == {"low_alpha_ratio": 1, "too_short": 1}
    assert deduped.stats["rejected_by_reason"] == {"exact_duplicate": 1}
    (duplicate,) = rejected_rows(deduped.path)
    # the smallest id of a group is kept, whichever shard each copy landed in
    assert duplicate["id"] == f"{corpus.name}/copy_of_chapter.txt"
    assert duplicate["detail"] == f"duplicate of {corpus.name}/chapter_1.txt"
    assert cleaned.counts["kept"] == deduped.counts["docs_in"]


def test_results_do_not_depend_on_sharding(ray_local, corpus, tmp_path):
    # one file per shard against content-defined batches of about five files
    a = run_data_stages(corpus, tmp_path / "a", files_per_shard=1)[-1]
    b = run_data_stages(corpus, tmp_path / "b", files_per_shard=5)[-1]
    assert kept_ids(a) == kept_ids(b)
    assert a.counts["kept"] == b.counts["kept"] and a.stats["num_shards"] != b.stats["num_shards"]


def test_unchanged_rerun_is_cached_and_changed_threshold_reruns_clean_only(ray_local, corpus, tmp_path):
    first = run_data_stages(corpus, tmp_path, files_per_shard=3)
    again = run_data_stages(corpus, tmp_path, files_per_shard=3)
    assert all(m.cached for m in again) and not any(m.cached for m in first)
    ingested = ingest(IngestConfig(paths=[corpus], files_per_shard=3), tmp_path)
    stricter = clean(ingested, CleanConfig(min_chars=5000), tmp_path)
    assert ingested.cached and not stricter.cached
    assert stricter.counts["kept"] < first[1].counts["kept"]


def test_tokenizer_and_packed_blocks(ray_local, corpus, tmp_path):
    deduped = run_data_stages(corpus, tmp_path, files_per_shard=3)[-1]
    tok_manifest = train_tokenizer(deduped, TokenizerConfig(vocab_size=400), tmp_path)
    tokenizer = Tokenizer.from_file(str(tok_manifest.file("tokenizer")))
    assert tokenizer.get_vocab_size() == 400
    assert tokenizer.decode(tokenizer.encode("Call me Ishmael.").ids) == "Call me Ishmael."
    packed = tokenize_and_pack(deduped, tok_manifest, PackConfig(seq_len=32, val_fraction=0.2), tmp_path)
    train = TokenArrays(packed.local_files("train-"))
    assert train.parts[0].shape[1] == 33 and train.parts[0].dtype == np.uint16
    assert len(train) == packed.counts["train_blocks"]
    eos = tokenizer.token_to_id(EOS)
    num_docs, num_units = packed.counts["train_docs"], len(packed.roles("train-"))
    num_eos = sum(int((p == eos).sum()) for p in train.parts)
    assert num_docs - num_units <= num_eos <= num_docs  # one EOS per document; each unit's last may sit in its dropped tail
    assert packed.counts["train_docs"] + packed.counts["val_docs"] == deduped.counts["kept"]
