"""Peak memory of the data stages at 1x and Nx the bundled corpus: the driver must not grow with the corpus.

    .venv/bin/python scripts/memory_check.py [--scale 10] [--workdir runs/memory-check]

The Nx corpus is N hard links (or copies) of data/corpus.parquet under different names, so every
document id is new: ingest and clean see N times the text, dedup drops the N-1 exact copies of
each document, tokenizer training and packing see 1x. Peak RSS is read for this process (the
driver: planning, dedup's cluster join, tokenizer training, block packing) and, by polling, for
every Ray worker process. Prints one JSON line per scale.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.ray_runtime import ensure_ray  # noqa: E402
from tasks.data.clean import CleanConfig, clean  # noqa: E402
from tasks.data.dedup import DedupConfig, dedup  # noqa: E402
from tasks.data.ingest import IngestConfig, ingest  # noqa: E402
from tasks.data.pack import PackConfig, tokenize_and_pack  # noqa: E402
from tasks.data.tokenizer import TokenizerConfig, train_tokenizer  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.parquet"


class WorkerPeak(threading.Thread):
    """Polls the RSS of Ray's worker processes (`ray::...`) and keeps the largest seen."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mb, self.running = 0.0, True

    def run(self) -> None:
        while self.running:
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = proc.info["cmdline"] or []
                if cmdline and cmdline[0].startswith("ray::") and proc.info["memory_info"]:
                    self.peak_mb = max(self.peak_mb, proc.info["memory_info"].rss / 2**20)
            time.sleep(0.2)


def corpus_of(scale: int, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(scale):
        try:
            os.link(CORPUS, folder / f"copy{i:02d}.parquet")
        except OSError:
            shutil.copy(CORPUS, folder / f"copy{i:02d}.parquet")
    return folder


def data_stages(corpus: Path, workdir: Path) -> dict:
    # ids from file and row: the copies share the corpus's own id column
    ingested = ingest(IngestConfig(paths=[corpus], id_column="no_such_column"), workdir)
    deduped = dedup(clean(ingested, CleanConfig(), workdir), DedupConfig(), workdir)
    tokenizer = train_tokenizer(deduped, TokenizerConfig(), workdir)
    packed = tokenize_and_pack(deduped, tokenizer, PackConfig(), workdir)
    return {"docs_in": ingested.counts["docs_in"], "text_mb": ingested.counts["bytes"] / 1e6,
            "after_dedup": deduped.counts["kept"], "train_blocks": packed.counts["train_blocks"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path("runs/memory-check"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    ensure_ray()
    for scale in (1, args.scale):
        watcher = WorkerPeak()
        watcher.start()
        started = time.perf_counter()
        result = data_stages(corpus_of(scale, args.workdir / f"corpus-x{scale}"), args.workdir / f"work-x{scale}")
        watcher.running = False
        watcher.join()
        # ru_maxrss is the peak of the whole process life: the 1x run comes first, so a bigger
        # figure at Nx is growth caused by the larger corpus
        driver_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"scale": scale, **result, "seconds": round(time.perf_counter() - started, 1),
                          "driver_peak_rss_mb": round(driver_mb), "worker_peak_rss_mb": round(watcher.peak_mb)}),
              flush=True)


if __name__ == "__main__":
    main()
