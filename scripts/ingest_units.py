"""How ingest would cut its inputs into units: one line per file (its kind, size and units), then the total.

    .venv/bin/python scripts/ingest_units.py PATH... [--unit-bytes 67108864]

Hashes each file in this process, as a Ray worker would (one read finds the parts of a large
JSONL/CSV/TSV file), and plans the units; it reads no cache and writes nothing.
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.data.ingest import IngestConfig, hash_file, list_input_files, plan_units  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--unit-bytes", type=int, default=IngestConfig.model_fields["unit_bytes"].default)
    args = parser.parse_args()
    cfg = IngestConfig(paths=args.paths, unit_bytes=args.unit_bytes)
    started = time.perf_counter()
    files = []
    for f in list_input_files(cfg.paths):
        digest, layout, _ = hash_file(f, None, cfg.unit_bytes, rehash=True)
        files.append(replace(f, digest=digest, layout=layout))
    units = plan_units(files, cfg)
    for f in files:
        print(f"{f.rel}\t{f.kind}\t{f.size} bytes\t{sum(f in u.files for u in units)} units")
    seconds = time.perf_counter() - started
    print(f"{len(units)} units from {len(files)} files (unit_bytes {cfg.unit_bytes}) in {seconds:.1f} s")


if __name__ == "__main__":
    main()
