"""Scoring helpers shared by the benchmarks, the training script and the tests.

The convention is the CER dev set's: both sides in Simplified characters, punctuation and
spaces dropped, Latin letters lower-cased, then character error rate over the whole set.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from speechqa.asr import convert_script
from speechqa.text import fold, squash


def normalize_for_cer(text: str) -> str:
    """Simplified characters, letters and digits only, lower case (text.fold, then text.squash)."""
    return squash(convert_script(fold(text), "simplified"))


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER (total edits / total reference characters) after normalisation."""
    from rapidfuzz.distance import Levenshtein

    refs = [normalize_for_cer(r) for r in references]
    hyps = [normalize_for_cer(h) for h in hypotheses]
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("references are empty after normalisation")
    return sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps, strict=True)) / total


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (total word edits / total reference words), for languages written with
    spaces: case folded, punctuation dropped (text.fold, then word characters only)."""
    import re

    from rapidfuzz.distance import Levenshtein

    def words(text: str) -> list[str]:
        return re.findall(r"[\w']+", fold(text))

    refs = [words(r) for r in references]
    hyps = [words(h) for h in hypotheses]
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("references are empty after normalisation")
    return sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps, strict=True)) / total


def has_traditional(text: str) -> bool:
    """True when converting to Simplified would change ``text``."""
    return convert_script(text, "simplified") != text


# -- the labelled sentiment dev data (../shared/data/sentiment-zh-dev; never shipped) -----------

SENTIMENT_FILES = ("conversation", "waimai", "shopping")
SentimentRow = tuple[int, str]  # (label, text): 1 positive, 0 negative


def sentiment_data_dir() -> Path:
    """$SPEECHQA_SENTIMENT_DATA, else ../shared/data/sentiment-zh-dev beside the repository."""
    env = os.environ.get("SPEECHQA_SENTIMENT_DATA", "")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment-zh-dev"


def read_sentiment_rows(path: Path) -> list[SentimentRow]:
    """``label<TAB>text`` lines; anything else is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        label, sep, text = line.partition("\t")
        if sep and text.strip() and label in ("0", "1"):
            rows.append((int(label), text))
    return rows


def is_sentiment_eval(text: str) -> bool:
    """The fixed 20% eval split, never trained on: by content, so duplicates fall on one side."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) % 5 == 0


Split = tuple[list[SentimentRow], list[SentimentRow]]


def sentiment_dev_split(directory: Path | None = None) -> dict[str, Split]:
    """File name -> (train rows, eval rows)."""
    directory = directory or sentiment_data_dir()
    out = {}
    for name in SENTIMENT_FILES:
        rows = read_sentiment_rows(directory / f"{name}.tsv")
        evaluate = [is_sentiment_eval(text) for _, text in rows]
        out[name] = ([r for r, e in zip(rows, evaluate, strict=True) if not e],
                     [r for r, e in zip(rows, evaluate, strict=True) if e])
    return out
