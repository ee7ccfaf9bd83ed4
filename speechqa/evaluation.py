"""Scoring helpers shared by the benchmarks and the end-to-end tests.

The convention is the CER dev set's: both sides in Simplified characters, punctuation and
spaces dropped, Latin letters lower-cased, then character error rate over the whole set.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from speechqa.asr import convert_script


def normalize_for_cer(text: str) -> str:
    text = convert_script(unicodedata.normalize("NFKC", text), "simplified").lower()
    return "".join(ch for ch in text if ch.isalnum())


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER (total edits / total reference characters) after normalisation."""
    from rapidfuzz.distance import Levenshtein

    refs = [normalize_for_cer(r) for r in references]
    hyps = [normalize_for_cer(h) for h in hypotheses]
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("references are empty after normalisation")
    return sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps, strict=True)) / total


def has_traditional(text: str) -> bool:
    """True when converting to Simplified would change ``text``."""
    return convert_script(text, "simplified") != text
