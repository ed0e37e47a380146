"""Clean-signals throughput (docs/benchmarks.md, "Clean signals"): documents a second of the clean_signals
step's per-document code beside the frozen copy of the code it replaced (tasks/bench/clean_baseline.py),
in one process, on the bench corpus and on the same texts cut into short documents.

The two take turns, a chunk of documents at a time, so that whatever else runs on the machine slows both
alike; the ratio of their medians over the rounds is the figure to read. CPU seconds (time.process_time) give documents a second per core.
Every document's text and signals are compared as well: a speed-up that changed a signal is no speed-up.
"""

import math
import random
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tasks.bench import clean_baseline
from tasks.data.clean import SIGNAL_SCHEMA, CleanConfig, clean_document

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpus.parquet"
Clean = Callable[[str, CleanConfig], tuple[str, dict[str, Any]]]
IMPLEMENTATIONS: dict[str, Clean] = {"frozen": clean_baseline.clean_document, "current": clean_document}
# a sentence or a line with the space after it: cut points that keep short documents readable
_PIECE = re.compile(r"[^.!?\n]*(?:[.!?]+|\n|$)\s*")


def bench_documents(path: Path = CORPUS) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def short_documents(texts: list[str], low: int = 200, high: int = 1000, seed: int = 0) -> list[str]:
    """The texts cut at sentence or line ends into documents of `low` to `high` characters, each one's length
    drawn evenly from that range (a sentence longer than `low` is cut at spaces first); leftovers shorter
    than `low` at a text's end are dropped."""
    draw, docs = random.Random(seed), []
    for text in texts:
        chunk, target = "", draw.randint(low, high)
        for piece in _pieces(text, low):
            if len(chunk) + len(piece) > target and len(chunk.strip()) >= low:
                docs.append(chunk.strip())
                chunk, target = "", draw.randint(low, high)
            chunk += piece
        if len(chunk.strip()) >= low:
            docs.append(chunk.strip())
    return docs


def _pieces(text: str, longest: int) -> list[str]:
    pieces = []
    for piece in filter(None, _PIECE.findall(text)):
        while len(piece) > longest:
            cut = piece.rfind(" ", 0, longest) + 1 or longest
            pieces.append(piece[:cut])
            piece = piece[cut:]
        pieces.append(piece)
    return pieces


def signal_differences(old: tuple[str, dict], new: tuple[str, dict]) -> list[str]:
    """What differs between two clean_document results, in words: the text, or a signal by more than 1e-9
    (floats) or at all (counts, language codes)."""
    problems = [] if new[0] == old[0] else ["cleaned text"]
    for name in SIGNAL_SCHEMA.names:
        before, after = old[1][name], new[1][name]
        same = math.isclose(before, after, rel_tol=0, abs_tol=1e-9) if isinstance(before, float) else before == after
        if not same or type(before) is not type(after):
            problems.append(f"{name}: {before!r} -> {after!r}")
    return problems


def time_pass(clean: Clean, docs: list[str], cfg: CleanConfig) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to clean every document once."""
    wall, cpu = time.perf_counter(), time.process_time()
    for raw in docs:
        clean(raw, cfg)
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(docs: list[str], cfg: CleanConfig, rounds: int, chunk: int = 200) -> dict[str, Any]:
    """Both implementations over the same documents for `rounds` rounds; medians and ratios. Within a round
    they take turns chunk by chunk (`chunk` documents), so that a neighbour's burst on the cores lands on both."""
    mismatched = [i for i, raw in enumerate(docs)
                  if signal_differences(clean_baseline.clean_document(raw, cfg), clean_document(raw, cfg))]
    passes: dict[str, list[tuple[float, float]]] = {name: [] for name in IMPLEMENTATIONS}
    for turn in range(rounds):
        spent = dict.fromkeys(IMPLEMENTATIONS, (0.0, 0.0))
        for start in range(0, len(docs), chunk):
            order = list(IMPLEMENTATIONS) if (turn + start // chunk) % 2 == 0 else list(reversed(IMPLEMENTATIONS))
            for name in order:
                wall, cpu = time_pass(IMPLEMENTATIONS[name], docs[start : start + chunk], cfg)
                spent[name] = (spent[name][0] + wall, spent[name][1] + cpu)
        for name, times in spent.items():
            passes[name].append(times)
    result: dict[str, Any] = {"documents": len(docs), "characters": sum(map(len, docs)), "rounds": rounds,
                              "mismatched_documents": len(mismatched)}
    for name, times in passes.items():
        wall, cpu = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        result[name] = {"docs_per_s": len(docs) / wall, "docs_per_s_per_core": len(docs) / cpu,
                        "wall_s": [round(t[0], 3) for t in times], "cpu_s": [round(t[1], 3) for t in times]}
    result["ratio"] = result["current"]["docs_per_s"] / result["frozen"]["docs_per_s"]
    result["ratio_per_core"] = result["current"]["docs_per_s_per_core"] / result["frozen"]["docs_per_s_per_core"]
    return result


def run(rounds: int = 3, short_limit: int | None = 20_000, seed: int = 0, path: Path = CORPUS) -> dict[str, Any]:
    """The bench corpus and its short documents (a seeded sample of `short_limit` of them), default settings."""
    cfg, texts = CleanConfig(), bench_documents(path)
    short = available = short_documents(texts)
    if short_limit is not None and short_limit < len(available):
        short = random.Random(seed).sample(available, short_limit)
    for raw in texts[:2]:  # load the language model and fill lazy caches before anything is timed
        clean_document(raw, cfg), clean_baseline.clean_document(raw, cfg)
    return {"bench corpus": compare(texts, cfg, rounds), "short documents": compare(short, cfg, rounds),
            "short_documents_available": len(available)}


def markdown(results: dict[str, Any]) -> str:
    rows = [("| corpus | documents | mean chars | frozen docs/s | current docs/s | **ratio** "
             "| frozen docs/s/core | current docs/s/core | ratio per core | mismatched |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("bench corpus", "short documents"):
        r = results[name]
        rows.append(f"| {name} | {r['documents']:,} | {r['characters'] / r['documents']:,.0f} "
                    f"| {r['frozen']['docs_per_s']:,.1f} | {r['current']['docs_per_s']:,.1f} | **{r['ratio']:.2f}×** "
                    f"| {r['frozen']['docs_per_s_per_core']:,.1f} | {r['current']['docs_per_s_per_core']:,.1f} "
                    f"| {r['ratio_per_core']:.2f}× | {r['mismatched_documents']} |")
    return "\n".join(rows)
