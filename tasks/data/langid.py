"""Language identification with lingua, offline: its models ship inside the wheel.

The detector is built once per worker process and setting (a module-level cache), and it
reads only a prefix of each document: a few thousand characters settle the language of a
book chapter as well as the whole chapter does, at a fraction of the cost.
"""

import re
from functools import cache
from typing import Any

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

UNDETERMINED = "und"  # ISO 639-2 for "no language": a text with no letters, say
# Lingua passes text to Rust as UTF-8, which has no room for lone surrogates.
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class LanguageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="reject documents outside `languages` (reason `language`)")
    languages: list[str] = Field(["en"], min_length=1, description="ISO 639-1 codes of the languages to keep")
    min_lang_score: float = Field(0.65, ge=0, le=1, description="lowest detector confidence a kept document may have")
    # Rivals for the allow-list: the most common languages of the web after English, so that a German
    # page is called German rather than forced onto English. Few: the cost grows with each one
    # (measured on the SpamAssassin mails: 3.5 ms a document with 11 candidates, 1.2 ms with 5).
    candidates: list[str] = Field(["en", "de", "fr", "es", "ru"], min_length=2,
                                  description="languages the detector chooses among (the allow-list is added)")
    prefix_chars: int = Field(1000, ge=100, description="classify only this many leading characters")
    low_accuracy: bool = Field(True, description="trigram models only: 50 MB and 0.1 s to load instead of "
                                                 "280 MB and 4 s; as accurate on texts over ~120 characters")

    @field_validator("languages", "candidates")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        unknown = [code for code in codes if not _is_supported(code)]
        if unknown:
            raise ValueError(f"not ISO 639-1 codes that lingua knows: {unknown}")
        return [code.lower() for code in codes]

    @model_validator(mode="after")
    def _candidates_cover_languages(self):
        # the detector can only name a language it may choose, so the allow-list is always a candidate
        self.candidates = sorted(set(self.candidates) | set(self.languages))
        return self

    def detector_settings(self) -> dict[str, Any]:
        """The settings that change `lang` and `lang_score`; the rest only decide what to keep."""
        return {"candidates": self.candidates, "prefix_chars": self.prefix_chars, "low_accuracy": self.low_accuracy}


def _is_supported(code: str) -> bool:
    try:
        Language.from_iso_code_639_1(IsoCode639_1.from_str(code.lower()))
    except ValueError:
        return False
    return True


@cache
def detector(candidates: tuple[str, ...], low_accuracy: bool) -> LanguageDetector:
    """One detector per worker process and setting: loading the models is the slow part."""
    languages = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in candidates]
    builder = LanguageDetectorBuilder.from_languages(*languages)
    return (builder.with_low_accuracy_mode() if low_accuracy else builder).build()


def detect_language(text: str, cfg: LanguageConfig) -> tuple[str, float]:
    """(ISO 639-1 code, confidence) of the text's most likely language; ("und", 0.0) when there is none."""
    prefix = _SURROGATES.sub("", text[: cfg.prefix_chars])
    values = detector(tuple(cfg.candidates), cfg.low_accuracy).compute_language_confidence_values(prefix)
    if not values or values[0].value <= 0:  # no letters: every language scores zero
        return UNDETERMINED, 0.0
    return values[0].language.iso_code_639_1.name.lower(), float(values[0].value)


def language_failure(lang: str, score: float, cfg: LanguageConfig) -> str | None:
    """Why a document with this detected language fails the language rule, or None."""
    if lang not in cfg.languages:
        return f"lang {lang} (score {score:.2f}) not in languages {cfg.languages}"
    if score < cfg.min_lang_score:
        return f"lang_score {score:.2f} < min_lang_score {cfg.min_lang_score}"
    return None
