"""`tokenmill bench data --against datatrove`: our data stages and datatrove's (tasks/bench/datatrove_peer.py) on
the same JSONL, in the same run, each as a command in its own process.

Command to command: the wall time of `tokenmill run --until pack` on a generated recipe against that of
`python -m tasks.bench.datatrove_peer`; both include their start-up (Prefect and Ray on ours, the process pools on
datatrove's). Stage to stage: ours from the stage manifests' `seconds` (each stage's build: the content keys
computed before it and Ray's start count only in the command time); datatrove's from each executor's wall time,
the reader and the filters of the first executor split by their shares of the step time in its stats.json.
Same work on both sides, as far as the peer allows: the filters take our recipe's thresholds
(datatrove_peer.filter_arguments), and both tokenize with one tokenizer.json, trained once on the input before
either command runs (ours gets it as `tokenizer.path`, so neither command trains one). Our side still does more:
language ID (left out of the peer, see its docstring), every signal of every document (datatrove stops at a
document's first failed filter), and packing the tokens into training blocks.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from infra.stage import Manifest, latest_output
from tasks.data.shards import shard_paths

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install -e '.[bench-peer]'"
# our stage -> the datatrove steps it is timed against in the stage-to-stage table
PAIRS = {"ingest": "JsonlReader", "clean": "FTFY, PII, Gopher x2, C4, FineWeb",
         "dedup": "MinHash, 4 executors", "pack": "DocumentTokenizer"}
OURS_ONLY = {"tokenizer": "(given: trained once before both)"}  # ours loads and stores the given tokenizer.json
DEDUP_EXECUTORS = ("minhash-signatures", "minhash-buckets", "minhash-cluster", "minhash-filter")


def peer_missing() -> str | None:
    """Why the peer cannot run here (datatrove or spaCy not importable), naming the install command; None if it can."""
    import importlib.util

    missing = [name for name in ("datatrove", "spacy") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(missing)} not installed: {INSTALL}" if missing else None


def write_jsonl(records: Iterable[dict], folder: Path, num_files: int) -> list[Path]:
    """{"id", "text"} lines, dealt out in contiguous runs over `num_files` files: datatrove gives each task whole
    files, so one file per core keeps every task busy (our ingest reads the same files)."""
    rows = [{"id": r["id"], "text": r["text"]} for r in records]
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(rows) // num_files) or 1
    files = []
    for start in range(0, len(rows), per_file):
        files.append(folder / f"part-{len(files):05d}.jsonl")
        files[-1].write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[start:start + per_file]),
                             encoding="utf-8")
    return files


def shard_records(manifest: Manifest) -> Iterator[dict]:
    for path in shard_paths(manifest.root):
        yield from pq.read_table(path, columns=["id", "text"]).to_pylist()


def run_tokenmill(recipe: dict, folder: Path, until: str, overrides: Iterable[str] = ()) -> float:
    """`tokenmill run` on `recipe` in a fresh process, its workdir under `folder`; returns its wall seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    command = [sys.executable, "-m", "flows.cli", "run", "--config", str(path), "--until", until,
               *[item for o in overrides for item in ("--set", o)]]
    return timed_command(command, folder / f"{recipe['name']}.log")


def timed_command(command: list[str], log: Path, env: dict | None = None) -> float:
    """Wall seconds of `command` run from the repository root; its output goes to `log`, and its tail into the
    RuntimeError raised when it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:4])} failed (exit {done.returncode}); whole log: {log}\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return seconds


def recipe(name: str, paths: list[Path], workdir: Path, cores: int) -> dict:
    """Every stage's defaults; the recipe must name fine-tuning data although `--until pack` never reads it."""
    return {"name": name, "workdir": str(workdir.resolve()), "ray": {"num_cpus": cores},
            "ingest": {"paths": [str(p.resolve()) for p in paths]},
            "finetune": {"data": str(REPO / "data" / "sms_spam.parquet")}}


def bench_jsonl(paths: list[Path], scratch: Path, cores: int) -> tuple[Path, Path]:
    """The bench input both sides read: our ingest of `paths` (any format it reads) as JSONL, one file per core;
    and the tokenizer both sides use, trained by our pipeline on that input (not timed)."""
    prepare = scratch / "prepare"
    work = str((prepare / "work").resolve())
    run_tokenmill(recipe("prepare", paths, prepare / "work", cores), prepare, "tokenizer")
    write_jsonl(shard_records(latest_output(work, "ingest")), scratch / "input", cores)
    return scratch / "input", Path(latest_output(work, "tokenizer").local_file("tokenizer"))


def run_ours(jsonl: Path, scratch: Path, cores: int, tokenizer: Path, overrides: Iterable[str] = ()) -> dict:
    workdir = (scratch / "ours" / "work").resolve()
    seconds = run_tokenmill(recipe("ours", [jsonl], workdir, cores), scratch / "ours", "pack",
                            [f"tokenizer.path={tokenizer.resolve()}", *overrides])
    manifests = {stage: latest_output(str(workdir), stage) for stage in (*PAIRS, *OURS_ONLY, "clean_signals")}
    stages = {stage: m.seconds for stage, m in manifests.items() if stage != "clean_signals"}
    stages["clean"] += manifests["clean_signals"].seconds  # clean is two stages: measure the signals, then filter
    return {"command_seconds": seconds, "stages": stages,
            "documents_in": manifests["ingest"].counts["docs_in"], "after_clean": manifests["clean"].counts["kept"],
            "after_dedup": manifests["dedup"].counts["kept"]}


def run_peer(jsonl: Path, scratch: Path, tokenizer: Path, cores: int) -> dict:
    from tasks.bench.datatrove_peer import filter_arguments
    from tasks.data.clean import CleanConfig

    out = scratch / "datatrove"
    out.mkdir(parents=True, exist_ok=True)
    filters = out / "filters.json"  # the generated recipe's clean settings are CleanConfig's defaults
    filters.write_text(json.dumps(filter_arguments(CleanConfig().model_dump())))
    command = [sys.executable, "-m", "tasks.bench.datatrove_peer", str(jsonl.resolve()), str(out.resolve()),
               "--tokenizer", str(tokenizer.resolve()), "--cores", str(cores), "--filters", str(filters)]
    seconds = timed_command(command, out / "datatrove.log", env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return {"command_seconds": seconds, **summarise_peer(json.loads((out / "peer.json").read_text()))}


def _count(step: dict, name: str) -> int:
    value = step["stats"].get(name, 0)
    return value["total"] if isinstance(value, dict) else value


def summarise_peer(peer: dict) -> dict:
    """Stage seconds and document counts from the peer's executors and their stats.json."""
    executors = peer["executors"]
    first = executors["filter"]
    step_seconds = [step["time_stats"]["total"] for step in first["stats"]]
    reader_share = step_seconds[0] / sum(step_seconds)
    stages = {"ingest": first["seconds"] * reader_share, "clean": first["seconds"] * (1 - reader_share),
              "dedup": sum(executors[name]["seconds"] for name in DEDUP_EXECUTORS),
              "pack": executors["tokenize"]["seconds"]}
    return {"stages": stages, "executor_seconds": {name: e["seconds"] for name, e in executors.items()},
            "documents_in": _count(first["stats"][0], "documents"),
            "after_clean": _count(first["stats"][-1], "total"),
            "after_dedup": _count(executors["minhash-filter"]["stats"][-1], "total"),
            "left_out": peer["left_out"], "filter_arguments": peer.get("filter_arguments")}


def ratios(ours: dict, peer: dict) -> dict:
    """datatrove seconds / our seconds, command to command and for each stage pair: above 1 means we are faster."""
    pairs = {stage: {"datatrove": PAIRS[stage], "ours_seconds": ours["stages"][stage],
                     "datatrove_seconds": peer["stages"][stage],
                     "ratio": peer["stages"][stage] / ours["stages"][stage]} for stage in PAIRS}
    return {"pairs": pairs, "command_ratio": peer["command_seconds"] / ours["command_seconds"]}


def compare_with_datatrove(jsonl: Path, tokenizer: Path, scratch: Path, cores: int,
                           overrides: Iterable[str] = (), repeats: int = 1) -> dict:
    """Both sides on the JSONL files in `jsonl`, each tokenizing with `tokenizer`, taking turns `repeats` times
    (each turn in fresh folders, so nothing is reused). The result is the turn with the median command ratio, and
    `runs`: every turn's command seconds and ratios."""
    turns = []
    for turn in range(repeats):
        folder = scratch if repeats == 1 else scratch / f"turn{turn + 1}"
        ours = run_ours(jsonl, folder, cores, tokenizer, overrides)
        peer = run_peer(jsonl, folder, tokenizer, cores)
        turns.append({"ours": ours, "datatrove": peer, **ratios(ours, peer)})
    median = sorted(turns, key=lambda t: t["command_ratio"])[len(turns) // 2]
    runs = [{"ours_seconds": t["ours"]["command_seconds"], "datatrove_seconds": t["datatrove"]["command_seconds"],
             "command_ratio": t["command_ratio"], "stage_ratios": {k: v["ratio"] for k, v in t["pairs"].items()}}
            for t in turns]
    return {"input": str(jsonl), "cores": cores, "ours_only": OURS_ONLY, **median, "runs": runs}


def bench_against_datatrove(paths: list[Path], workdir: Path, cores: int, synthetic_docs: int | None = None,
                            repeats: int = 1) -> dict:
    """The whole bench: a fresh scratch `workdir`, the JSONL made from `paths`, both sides; bench_data.json there.
    `synthetic_docs`: instead of `paths`, that many distinct short documents (6-14 sentences of the bundled corpus,
    ~1.2 kB; tasks/bench/scale.py), the kind of corpus the clean-speed issue measured at 50,000."""
    from tasks.bench.data_prep import fresh_scratch
    from tasks.bench.scale import write_corpus

    fresh_scratch(workdir)
    if synthetic_docs:
        paths = write_corpus(workdir / "synthetic", synthetic_docs)
    jsonl, tokenizer = bench_jsonl(paths, workdir, cores)
    result = {"inputs": [str(p) for p in paths], "input_mb": sum(f.stat().st_size for f in jsonl.glob("*.jsonl")) / 1e6,
              **compare_with_datatrove(jsonl, tokenizer, workdir, cores, repeats=repeats)}
    (workdir / "bench_data.json").write_text(json.dumps(result, indent=2))
    return result
