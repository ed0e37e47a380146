"""Language identification compared on the labelled multilingual sample: see tasks/bench/langid_compare.py.

    .venv/bin/python scripts/bench_langid.py --repeats 5 --out /tmp/bench-langid.json
    .venv/bin/python scripts/bench_langid.py one NAME SAMPLE REPEATS     # one detector (internal)
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.bench.langid_compare import SAMPLE, compare, load_sample, markdown, measure


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        name, sample, repeats = sys.argv[2:5]
        print(json.dumps(measure(name, load_sample(Path(sample)), int(repeats))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="JSONL of {id, lang, text}")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the sample per detector")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    results = compare(args.sample, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
