"""Build the bundled sample data in data/ from ../shared/corpora.

    python scripts/build_sample_data.py [--corpora ../shared/corpora] [--out data]

Writes two zstd-compressed Parquet files:
  corpus.parquet     pretraining text: State of the Union addresses + Moby-Dick chapters
  sms_spam.parquet   labelled set for fine-tuning: label ("ham"/"spam"), text
and data/tiny/: the first Moby-Dick chapters as plain text files, for the test recipe,
and data/sms_instructions.jsonl: SMS messages as prompt/response pairs, a small SFT example.
Rows are sorted by id so that the output is byte-stable for the same input.
"""

import argparse
import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Small row groups so that ingest has several units of work even on the sample.
ROW_GROUP_SIZE = 32
TINY_CHAPTERS = 24
NUM_INSTRUCTIONS = 800


def read_sotu(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            rows.append({"id": record["id"], "text": record["text"], "source": "sotu"})
    return rows


def read_moby_dick(folder: Path) -> list[dict]:
    return [
        {"id": f"moby_dick/{p.stem}", "text": p.read_text(encoding="utf-8"), "source": "moby_dick"}
        for p in sorted(folder.glob("*.txt"))
    ]


def read_sms(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [{"label": label, "text": text} for label, text in reader]


def write_instructions(sms: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in sms:
            prompt = f"Message: {row['text']}\nIs this message spam or ham? Answer:"
            f.write(json.dumps({"prompt": prompt, "response": f" {row['label']}"}) + "\n")


def write_parquet(rows: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, path, compression="zstd", compression_level=19, row_group_size=ROW_GROUP_SIZE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = Path(__file__).resolve().parents[1]
    parser.add_argument("--corpora", type=Path, default=repo.parent / "shared" / "corpora")
    parser.add_argument("--out", type=Path, default=repo / "data")
    args = parser.parse_args()

    corpus = read_sotu(args.corpora / "sotu.jsonl") + read_moby_dick(args.corpora / "moby_dick")
    corpus.sort(key=lambda row: row["id"])
    args.out.mkdir(parents=True, exist_ok=True)
    write_parquet(corpus, args.out / "corpus.parquet")
    sms = read_sms(args.corpora / "sms_spam.tsv")
    pq.write_table(pa.Table.from_pylist(sms), args.out / "sms_spam.parquet", compression="zstd", compression_level=19)
    write_instructions(sms[:NUM_INSTRUCTIONS], args.out / "sms_instructions.jsonl")
    tiny = args.out / "tiny"
    tiny.mkdir(exist_ok=True)
    for n in range(1, TINY_CHAPTERS + 1):
        name = f"chapter_{n}.txt"
        (tiny / name).write_text((args.corpora / "moby_dick" / name).read_text(encoding="utf-8"), encoding="utf-8")
    for name in ("corpus.parquet", "sms_spam.parquet"):
        size_mb = (args.out / name).stat().st_size / 1e6
        print(f"{args.out / name}: {size_mb:.2f} MB")


if __name__ == "__main__":
    main()
