"""The scale curve: the data stages at 1x, 4x and 16x documents, each run in a fresh process.

    .venv/bin/python scripts/bench_scale.py --base-docs 5000 --repeats 3 --out /tmp/bench-scale

Documents are made from the bundled corpus's sentences: each is a run of 6-14 sentences picked
at random, so they read like text, pass the quality rules about as often as the corpus does, and
are distinct (fewer than 1 % lost to dedup: the run reports it). A measurement runs in a process of
its own, so that its peak memory is its own: the driver's peak RSS (`ru_maxrss`) and the largest RSS
any Ray worker reached (sampled every 0.2 s) are recorded beside each stage's seconds. Dedup alone
is measured at the largest size against the frozen driver-side implementation
(`tasks/bench/dedup_baseline.py`), in the same run.
"""

import json
import random
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from tasks.bench.data_prep import fresh_scratch, timed

REPO = Path(__file__).resolve().parents[2]
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentence_pool(corpus: Path = REPO / "data" / "corpus.parquet") -> list[str]:
    texts = pq.read_table(corpus, columns=["text"]).column("text").to_pylist()
    sentences = (" ".join(s.split()) for t in texts for s in _SENTENCE.split(t))
    return [s for s in sentences if 40 <= len(s) <= 400]


def write_corpus(folder: Path, num_docs: int, seed: int = 0, docs_per_file: int = 2000) -> list[Path]:
    """`num_docs` synthetic documents as JSONL files of `docs_per_file` lines each."""
    pool, rng = sentence_pool(), random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for start in range(0, num_docs, docs_per_file):
        path = folder / f"part-{start // docs_per_file:05d}.jsonl"
        with path.open("w") as f:
            for n in range(start, min(num_docs, start + docs_per_file)):
                text = " ".join(rng.choice(pool) for _ in range(rng.randint(6, 14)))
                f.write(json.dumps({"id": f"doc-{n:08d}", "text": text}) + "\n")
        files.append(path)
    return files


class WorkerMemory:
    """The largest RSS any Ray worker process (`ray::...`) reached while it ran, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                cmdline = proc.info["cmdline"] or []
                if cmdline and cmdline[0].startswith("ray::") and proc.info["memory_info"]:
                    self.peak = max(self.peak, proc.info["memory_info"].rss)
            self._stop.wait(self.every)

    def __enter__(self) -> "WorkerMemory":  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure_stages(corpus: Path, workdir: Path, cores: int) -> dict:
    """One run of the data stages (in this process: call it in a fresh one)."""
    from infra.ray_runtime import ensure_ray
    from tasks.bench.data_prep import run_stages

    fresh_scratch(workdir)
    _, ray_seconds = timed(ensure_ray, cores)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with WorkerMemory() as workers:
        manifests, seconds = run_stages([corpus], workdir)
    dedup = manifests["dedup"].counts
    return {"seconds": seconds, "total_seconds": sum(seconds.values()), "ray_start_seconds": ray_seconds,
            "documents": manifests["ingest"].counts["docs_in"], "dedup_docs_in": dedup["docs_in"],
            "dedup_rejected": dedup["rejected"], "driver_rss_before_stages": rss_before,
            "driver_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "worker_peak_rss": workers.peak, "clean_root": manifests["clean"].root}


def measure_dedup(clean_root: str, workdir: Path, cores: int, implementation: str) -> dict:
    """Dedup alone over an existing clean output: the stage as it is now, or the frozen baseline."""
    from infra.ray_runtime import ensure_ray
    from infra.stage import Manifest
    from tasks.bench.dedup_baseline import dedup_in_driver
    from tasks.data.dedup import DedupConfig, dedup

    fresh_scratch(workdir)
    ensure_ray(cores)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    with WorkerMemory() as workers:
        if implementation == "baseline":
            (workdir / "out").mkdir()
            dropped = dedup_in_driver(clean_root, str(workdir / "out"), DedupConfig())
        else:
            cleaned = Manifest(stage="clean", fingerprint="bench", path=clean_root)
            dropped = dedup(cleaned, DedupConfig(), str(workdir)).counts["rejected"]
    return {"seconds": time.perf_counter() - started, "dropped": dropped, "driver_rss_before": rss_before,
            "driver_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "worker_peak_rss": workers.peak}


def in_fresh_process(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_scale.py"), *args],
                          capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode:
        raise RuntimeError(f"bench_scale {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale_curve(out: Path, base_docs: int, factors: tuple[int, ...] = (1, 4, 16), repeats: int = 3,
                cores: int = 2) -> dict:
    runs: dict[int, list[dict]] = {}
    for factor in factors:
        corpus = out / f"corpus-{factor}x"
        if not corpus.exists():
            write_corpus(corpus, base_docs * factor)
        runs[factor] = [in_fresh_process("stages", str(corpus), str(out / f"work-{factor}x-{r}"), str(cores))
                        for r in range(repeats)]
    largest = runs[factors[-1]][0]["clean_root"]
    dedup = {impl: in_fresh_process("dedup", largest, str(out / f"dedup-{impl}"), str(cores), impl)
             for impl in ("stage", "baseline")}
    return summarise(runs, dedup, base_docs)


def summarise(runs: dict[int, list[dict]], dedup: dict, base_docs: int) -> dict:
    def median(factor: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[factor])

    rows = {factor: {"documents": runs[factor][0]["documents"],
                     "seconds": median(factor, "total_seconds"),
                     "seconds_per_1k_docs": 1000 * median(factor, "total_seconds") / runs[factor][0]["documents"],
                     "stages": {s: statistics.median(r["seconds"][s] for r in runs[factor]) for s in runs[factor][0]["seconds"]},
                     "driver_peak_rss_mb": median(factor, "driver_peak_rss") / 2**20,
                     "worker_peak_rss_mb": max(r["worker_peak_rss"] for r in runs[factor]) / 2**20,
                     "dedup_lost_pct": 100 * runs[factor][0]["dedup_rejected"] / max(1, runs[factor][0]["dedup_docs_in"])}
            for factor in runs}
    small, large = rows[min(rows)], rows[max(rows)]
    return {"base_docs": base_docs, "repeats": len(next(iter(runs.values()))), "sizes": rows,
            "seconds_per_doc_growth": large["seconds_per_1k_docs"] / small["seconds_per_1k_docs"],
            "driver_rss_growth": large["driver_peak_rss_mb"] / small["driver_peak_rss_mb"],
            "dedup_alone": dedup, "dedup_speedup_vs_baseline": dedup["baseline"]["seconds"] / dedup["stage"]["seconds"]}
