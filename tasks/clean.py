"""Clean: repair and normalise text, compute quality signals, filter with named rules.

Signals are stored as columns beside the text so that a threshold change can re-filter
without recomputing them. Each rule answers one question and names its reason.
"""

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import ftfy
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.parallel import map_shards
from tasks.shards import merge_stats, rejected_table, shard_paths, shard_stats, write_parquet_atomic
from tasks.stage import Manifest, fingerprint, run_stage

VERSION = "1"


class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fix_text: bool = Field(True, description="repair mojibake and broken unicode with ftfy")
    min_chars: int = Field(200, ge=0, description="reject documents shorter than this after normalisation")
    max_chars: int = Field(2_000_000, ge=1, description="reject documents longer than this")
    min_alpha_ratio: float = Field(0.6, ge=0, le=1, description="minimum share of letters among non-space characters")

    @model_validator(mode="after")
    def _check_bounds(self):
        if self.min_chars >= self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must be below max_chars ({self.max_chars})")
        return self


# Control characters except tab and newline, which carry layout.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INLINE_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = (_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def repair(text: str, cfg: CleanConfig) -> str:
    if cfg.fix_text:
        # conservative: no quote/ligature rewriting, just repair of broken encodings
        text = ftfy.fix_text(text, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
    return normalize_whitespace(unicodedata.normalize("NFC", text))


def signals(text: str) -> dict:
    non_space = sum(1 for ch in text if not ch.isspace())
    letters = sum(1 for ch in text if ch.isalpha())
    return {"num_chars": len(text), "alpha_ratio": letters / non_space if non_space else 0.0}


Rule = Callable[[dict, CleanConfig], str | None]


def too_short(s: dict, cfg: CleanConfig) -> str | None:
    return f"{s['num_chars']} chars < min_chars {cfg.min_chars}" if s["num_chars"] < cfg.min_chars else None


def too_long(s: dict, cfg: CleanConfig) -> str | None:
    return f"{s['num_chars']} chars > max_chars {cfg.max_chars}" if s["num_chars"] > cfg.max_chars else None


def low_alpha_ratio(s: dict, cfg: CleanConfig) -> str | None:
    ratio = s["alpha_ratio"]
    return f"alpha_ratio {ratio:.2f} < {cfg.min_alpha_ratio}" if ratio < cfg.min_alpha_ratio else None


RULES: dict[str, Rule] = {"too_short": too_short, "too_long": too_long, "low_alpha_ratio": low_alpha_ratio}


def first_failure(s: dict, cfg: CleanConfig) -> tuple[str, str] | None:
    """(rule name, detail) of the first rule that rejects, or None to keep."""
    for name, rule in RULES.items():
        detail = rule(s, cfg)
        if detail:
            return name, detail
    return None


def clean_shard(item: tuple[int, str], out_dir: str, cfg: CleanConfig) -> dict:
    index, path = item
    docs = pq.read_table(path).to_pylist()
    kept, rejected, reasons = [], [], Counter()
    for doc in docs:
        text = repair(doc["text"], cfg)
        s = signals(text)
        failure = first_failure(s, cfg)
        if failure:
            reasons[failure[0]] += 1
            rejected.append({"id": doc["id"], "text": text, "source": doc["source"], "reason": failure[0], "detail": failure[1]})
        else:
            kept.append({**doc, "text": text, **s})
    name = f"shard-{index:05d}"
    write_parquet_atomic(pa.Table.from_pylist(kept, schema=CLEAN_SCHEMA), Path(out_dir) / f"{name}.parquet")
    write_parquet_atomic(rejected_table(rejected), Path(out_dir) / f"rejected-{index:05d}.parquet")
    return shard_stats(name, len(docs), len(kept), reasons, bytes=sum(len(d["text"].encode()) for d in kept))


CLEAN_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string()),
                          ("num_chars", pa.int64()), ("alpha_ratio", pa.float64())])


def clean(ingested: Manifest, cfg: CleanConfig, workdir: Path) -> Manifest:
    fp = fingerprint("clean", VERSION, cfg.model_dump(mode="json"), [ingested.fingerprint])

    def build(folder: Path) -> dict:
        shards = [str(p) for p in shard_paths(ingested.path)]
        per_shard = map_shards(clean_shard, list(enumerate(shards)), "clean", out_dir=str(folder), cfg=cfg)
        counts, stats = merge_stats(per_shard)
        return {"counts": counts, "stats": stats}

    return run_stage(workdir, "clean", fp, build)


@task(name="clean", retries=1)
def clean_task(ingested: Manifest, cfg: CleanConfig, workdir: Path) -> Manifest:
    return clean(ingested, cfg, workdir)
