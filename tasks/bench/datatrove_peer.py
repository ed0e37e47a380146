"""The datatrove peer of our data stages, for `tokenmill bench data --against datatrove`: the same JSONL read by
datatrove 0.10.1's own steps on its LocalPipelineExecutor, tasks = workers = cores.

    filter    JsonlReader -> FTFYFormatter -> PIIFormatter -> GopherRepetitionFilter -> GopherQualityFilter
              -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter (thresholds: ours, see filter_arguments)
    minhash   signatures -> buckets (one task per bucket) -> cluster -> filter + JsonlWriter
              (5-grams, 14 buckets x 8 hashes, as our dedup)
    tokenize  JsonlReader -> DocumentTokenizer with the tokenizer.json both sides are given (a local file)

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


def filter_arguments(clean: dict) -> dict[str, dict]:
    """datatrove's filter arguments for our clean settings (`CleanConfig().model_dump()`, the recipe's defaults):
    the same thresholds on both sides, so both keep about the same documents and dedup and tokenize see the same
    amount of text. datatrove's own defaults differ in two places: C4 wants 5 sentences (ours 3) and FineWeb
    rejects 1 % of characters in duplicate lines (ours 10 %)."""
    rep, quality, c4, fineweb = clean["gopher_repetition"], clean["gopher_quality"], clean["c4"], clean["fineweb"]
    return {
        "GopherRepetitionFilter": {
            "dup_line_frac": rep["max_dup_line_frac"], "dup_para_frac": rep["max_dup_para_frac"],
            "dup_line_char_frac": rep["max_dup_line_char_frac"], "dup_para_char_frac": rep["max_dup_para_char_frac"],
            "top_n_grams": [(n, rep[f"max_top_{n}gram_char_frac"]) for n in (2, 3, 4)],
            "dup_n_grams": [(n, rep[f"max_dup_{n}gram_char_frac"]) for n in range(5, 11)]},
        "GopherQualityFilter": {
            "min_doc_words": quality["min_words"], "max_doc_words": quality["max_words"],
            "min_avg_word_length": quality["min_mean_word_length"], "max_avg_word_length": quality["max_mean_word_length"],
            "max_symbol_word_ratio": quality["max_hash_ratio"], "max_bullet_lines_ratio": quality["max_bullet_lines_ratio"],
            "max_ellipsis_lines_ratio": quality["max_ellipsis_lines_ratio"],
            "max_non_alpha_words_ratio": quality["min_alpha_words_ratio"], "min_stop_words": quality["min_stop_words"]},
        "C4QualityFilter": {
            "min_num_sentences": c4["min_sentences"], "min_words_per_line": c4["min_words_per_line"],
            "max_word_length": c4["max_word_length"], "filter_no_terminal_punct": c4["drop_unpunctuated_lines"],
            "filter_javascript": c4["drop_javascript_lines"], "filter_policy": c4["drop_policy_lines"],
            "filter_lorem_ipsum": c4["reject_lorem_ipsum"], "filter_curly_bracket": c4["reject_curly_bracket"]},
        "FineWebQualityFilter": {
            "line_punct_thr": fineweb["min_line_punct_ratio"], "line_punct_exclude_zero": fineweb["line_punct_exclude_zero"],
            "short_line_thr": fineweb["max_short_line_ratio"], "short_line_length": fineweb["short_line_chars"],
            "char_duplicates_ratio": fineweb["max_dup_line_char_frac"], "new_line_ratio": fineweb["max_list_ratio"]},
    }


def filter_steps(input_dir: Path, out: Path, arguments: dict[str, dict] | None = None) -> list:
    """The filter executor's steps; `arguments` (filter_arguments) per filter class, datatrove's defaults without."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    given = arguments or {}
    filters = [cls(**given.get(cls.__name__, {})) for cls in
               (GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter, FineWebQualityFilter)]
    return [JsonlReader(str(input_dir), glob_pattern="*.jsonl"), FTFYFormatter(), PIIFormatter(), *filters,
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


def executors(input_dir: Path, out: Path, tokenizer: Path,
              arguments: dict[str, dict] | None = None) -> list[tuple[str, list, int | None]]:
    return [("filter", filter_steps(input_dir, out, arguments), None), *minhash_steps(out),
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


def run_peer(input_dir: Path, out: Path, tokenizer: Path, cores: int, arguments: dict[str, dict] | None = None) -> dict:
    ran = {name: run_executor(name, steps, tasks or cores, cores, out)
           for name, steps, tasks in executors(input_dir, out, tokenizer, arguments)}
    return {"cores": cores, "left_out": [LEFT_OUT], "filter_arguments": arguments, "executors": ran}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="folder of *.jsonl files, one {id, text} object a line")
    parser.add_argument("out", type=Path, help="scratch folder; peer.json lands here")
    parser.add_argument("--tokenizer", type=Path, required=True, help="a local tokenizer.json")
    parser.add_argument("--cores", type=int, required=True, help="tasks and workers of each executor")
    parser.add_argument("--filters", type=Path, help="JSON of filter arguments by class name (filter_arguments); "
                        "datatrove's defaults without")
    args = parser.parse_args()
    arguments = json.loads(args.filters.read_text()) if args.filters else None
    result = run_peer(args.input, args.out, args.tokenizer, args.cores, arguments)
    (args.out / "peer.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
