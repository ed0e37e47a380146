"""The datatrove peer of our data stages, for `tokenmill bench data --against datatrove`: the same JSONL read by
datatrove 0.10.1's own steps on its LocalPipelineExecutor, tasks = workers = cores.

    filter    JsonlReader -> FTFYFormatter -> PIIFormatter -> GopherRepetitionFilter -> GopherQualityFilter
              -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter
    minhash   signatures -> buckets (one task per bucket) -> cluster -> filter + JsonlWriter
              (5-grams, 14 buckets x 8 hashes, as our dedup)
    tokenize  JsonlReader -> DocumentTokenizer with the tokenizer.json our run trained (a local file)

Language ID is left out: datatrove's LanguageFilter downloads a fastText model when it runs, and the bench
machines have no route out. Our clean stage identifies every document's language, so our side does more work.

Run as `python -m tasks.bench.datatrove_peer INPUT OUT --tokenizer PATH --cores N` with HF_HUB_OFFLINE=1; it
writes OUT/peer.json: each executor's wall seconds and its stats.json (per-step time and counts).
"""

import argparse
import json
import time
from pathlib import Path

NUM_BUCKETS, HASHES_PER_BUCKET, NGRAMS = 14, 8, 5
LEFT_OUT = "language ID (datatrove's LanguageFilter downloads a fastText model at run time; offline here)"


def filter_steps(input_dir: Path, out: Path) -> list:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    return [JsonlReader(str(input_dir), glob_pattern="*.jsonl"), FTFYFormatter(), PIIFormatter(),
            GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter(),
            JsonlWriter(str(out / "filtered"))]


def minhash_steps(out: Path) -> list[tuple[str, list, int | None]]:
    """(name, steps, tasks) of the four MinHash executors; tasks None = cores."""
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    # 32-bit signatures, as rensa's in our dedup
    config = MinhashConfig(hash_config=HashConfig(precision=32), n_grams=NGRAMS, num_buckets=NUM_BUCKETS,
                           hashes_per_bucket=HASHES_PER_BUCKET)
    filtered, minhash = str(out / "filtered"), out / "minhash"
    return [
        ("minhash-signatures", [JsonlReader(filtered), MinhashDedupSignature(str(minhash / "signatures"), config=config)],
         None),
        ("minhash-buckets", [MinhashDedupBuckets(str(minhash / "signatures"), str(minhash / "buckets"), config=config)],
         NUM_BUCKETS),
        ("minhash-cluster", [MinhashDedupCluster(str(minhash / "buckets"), str(minhash / "remove_ids"), config=config)], 1),
        ("minhash-filter", [JsonlReader(filtered), MinhashDedupFilter(str(minhash / "remove_ids")),
                            JsonlWriter(str(out / "deduplicated"))], None),
    ]


def tokenize_steps(out: Path, tokenizer: Path) -> list:
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    # a path that is a file is loaded with Tokenizer.from_file: nothing is fetched from the Hub
    return [JsonlReader(str(out / "deduplicated")),
            DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(tokenizer), eos_token="<|endoftext|>")]


def executors(input_dir: Path, out: Path, tokenizer: Path) -> list[tuple[str, list, int | None]]:
    return [("filter", filter_steps(input_dir, out), None), *minhash_steps(out),
            ("tokenize", tokenize_steps(out, tokenizer), None)]


def run_executor(name: str, steps: list, tasks: int, cores: int, out: Path) -> dict:
    """One LocalPipelineExecutor, timed around its run; its merged stats.json as written by datatrove."""
    from datatrove.executor import LocalPipelineExecutor

    logs = out / "logs" / name
    executor = LocalPipelineExecutor(steps, tasks=tasks, workers=min(tasks, cores), logging_dir=str(logs))
    started = time.perf_counter()
    executor.run()
    return {"seconds": time.perf_counter() - started, "tasks": tasks,
            "stats": json.loads((logs / "stats.json").read_text())}


def run_peer(input_dir: Path, out: Path, tokenizer: Path, cores: int) -> dict:
    ran = {name: run_executor(name, steps, tasks or cores, cores, out)
           for name, steps, tasks in executors(input_dir, out, tokenizer)}
    return {"cores": cores, "left_out": [LEFT_OUT], "executors": ran}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="folder of *.jsonl files, one {id, text} object a line")
    parser.add_argument("out", type=Path, help="scratch folder; peer.json lands here")
    parser.add_argument("--tokenizer", type=Path, required=True, help="a local tokenizer.json")
    parser.add_argument("--cores", type=int, required=True, help="tasks and workers of each executor")
    args = parser.parse_args()
    result = run_peer(args.input, args.out, args.tokenizer, args.cores)
    (args.out / "peer.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
