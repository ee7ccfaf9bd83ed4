"""Chinese text helpers shared by the stages: the jieba segmenter.

jieba's module-level ``cut`` is bound to a process-global Tokenizer, and importing it logs
to stderr. We keep a private ``jieba.Tokenizer`` with its own cache file instead, built
lazily once per process.
"""

from __future__ import annotations

import logging
import tempfile
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def tokenizer():
    """speechqa's own jieba Tokenizer (default dictionary), initialised on first use."""
    import jieba

    logging.getLogger("jieba").setLevel(logging.ERROR)
    tok = jieba.Tokenizer()
    tok.cache_file = str(Path(tempfile.gettempdir()) / "speechqa-jieba.cache")
    tok.initialize()
    return tok


def word_frequency(word: str) -> int:
    """How common ``word`` is as one word in jieba's dictionary (0 when it is not one)."""
    return int(tokenizer().FREQ.get(word, 0))


def token_bounds(text: str) -> frozenset[int]:
    """Character offsets where jieba's segmentation puts a word boundary."""
    bounds = {0}
    pos = 0
    for token in tokenizer().cut(text, HMM=False):
        pos += len(token)
        bounds.add(pos)
    return frozenset(bounds)
