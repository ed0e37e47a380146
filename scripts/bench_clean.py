"""Clean-signals throughput, current code against the frozen copy of the code it replaced: see
tasks/bench/clean_speed.py and docs/benchmarks.md ("Clean signals").

    .venv/bin/python scripts/bench_clean.py --rounds 3 --short-docs 20000 --out /tmp/bench-clean.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.bench.clean_speed import CORPUS, markdown, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="Parquet with a `text` column")
    parser.add_argument("--rounds", type=int, default=3, help="turns each implementation takes over each corpus")
    parser.add_argument("--short-docs", type=int, default=20_000, help="sample this many short documents (0: all)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    results = run(args.rounds, args.short_docs or None, path=args.corpus)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
