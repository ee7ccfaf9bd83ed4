"""Repair domain terms that Whisper heard as homophones (车险 → 车显, 投保 → 投宝).

whisper-base knows the sound of a call-centre term better than its characters. A span of
the transcript whose pinyin matches a lexicon term, but whose characters differ, is
replaced by the term when all of these hold:

- the span sits on word boundaries of jieba's segmentation of the transcript, so a correct
  word is never cut in half (基础性 must not become 基出行);
- the span is not itself a common word (考验 stays, even though it sounds like 考研);
- at most ``max_fuzzy`` syllables differ by a fuzzy pair (zh/z, ch/c, sh/s, n/l,
  -eng/-en, -ing/-in, -ang/-an), the usual confusions of accented Mandarin and of ASR, and
  a fuzzy match shares at least one character with the term; tones are ignored, since
  whisper-base drops them freely.

Replacements keep the text's length, so word timestamps stay aligned. The built-in list
(``speechqa/data/terms_zh.txt``) covers common lines of business; a site adds its product
and company names in config.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from speechqa.config import LexiconSettings
from speechqa.errors import ConfigError
from speechqa.phonetic import FUZZY_PAIR_COST, fuzzy, syllable_cost
from speechqa.phonetic import char_pinyin as _char_pinyin
from speechqa.phonetic import is_han as _is_han
from speechqa.text import token_bounds, word_frequency


@dataclass(frozen=True)
class Term:
    text: str
    pinyin: tuple[str, ...]  # toneless, one syllable per character


@dataclass(frozen=True)
class Lexicon:
    terms: tuple[Term, ...]
    by_first: dict[str, tuple[Term, ...]]  # fuzzy first syllable -> terms, longest first
    max_fuzzy: int
    common_word_freq: int


LEXICON_LANGUAGES = frozenset({"zh"})  # the repair hears terms by Mandarin pinyin


@dataclass(frozen=True)
class Correction:
    start: int  # character offset in the text
    heard: str
    term: str


def read_terms(path: Path) -> list[str]:
    """Terms from a file: one per line, ``#`` comments, blank lines ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: terms file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: terms file is not UTF-8") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def builtin_terms() -> list[str]:
    return read_terms(Path(str(resources.files("speechqa") / "data" / "terms_zh.txt")))


@lru_cache(maxsize=8)
def build_lexicon(terms: tuple[str, ...], max_fuzzy: int = 1, common_word_freq: int = 50) -> Lexicon:
    """Index ``terms`` by their fuzzy first syllable. Only all-Han terms of 2+ characters."""
    from pypinyin import lazy_pinyin

    built = {}
    for text in terms:
        if len(text) >= 2 and all(_is_han(ch) for ch in text):
            built[text] = Term(text, tuple(lazy_pinyin(text)))
    by_first: dict[str, list[Term]] = {}
    for term in built.values():
        by_first.setdefault(fuzzy(term.pinyin[0]), []).append(term)
    return Lexicon(
        terms=tuple(built.values()),
        by_first={k: tuple(sorted(v, key=lambda t: -len(t.text))) for k, v in by_first.items()},
        max_fuzzy=max_fuzzy,
        common_word_freq=common_word_freq,
    )


def _matches(span: str, term: Term, lexicon: Lexicon) -> bool:
    """Whether ``span`` sounds like ``term`` by the shared pinyin model (speechqa/phonetic.py):
    every syllable the same or a fuzzy pair (cost 0.25 at most), at most ``max_fuzzy`` of them
    fuzzy."""
    n_fuzzy = 0
    for ch, want in zip(span, term.pinyin, strict=True):
        got = _char_pinyin(ch)
        if got is None:
            return False
        cost = syllable_cost(got, want)
        if cost > FUZZY_PAIR_COST:
            return False
        n_fuzzy += cost > 0
    if n_fuzzy == 0:
        return True
    # A fuzzy sound match alone is weak evidence (星辰 heard as 新称 must not become 行程):
    # it also needs a character in common with the term.
    return n_fuzzy <= lexicon.max_fuzzy and any(a == b for a, b in zip(span, term.text, strict=True))


def find_corrections(text: str, lexicon: Lexicon) -> tuple[Correction, ...]:
    """Homophone spans of ``text`` to replace with lexicon terms, left to right."""
    if not lexicon.terms or not any(_is_han(ch) for ch in text):
        return ()
    bounds: frozenset[int] | None = None
    found = []
    i = 0
    while i < len(text):
        first = _char_pinyin(text[i])
        step = 1
        for term in lexicon.by_first.get(fuzzy(first), ()) if first else ():
            span = text[i : i + len(term.text)]
            if len(span) < len(term.text):
                continue
            if span == term.text:  # already right: skip past it
                step = len(span)
                break
            if not _matches(span, term, lexicon):
                continue
            if word_frequency(span) > lexicon.common_word_freq:
                continue
            bounds = token_bounds(text) if bounds is None else bounds
            if i not in bounds or i + len(span) not in bounds:
                continue
            found.append(Correction(i, span, term.text))
            step = len(span)
            break
        i += step
    return tuple(found)


def lexicon_for(settings: LexiconSettings) -> Lexicon | None:
    """The lexicon the settings ask for (None when disabled); raises ConfigError for a bad
    terms file."""
    if not settings.enabled:
        return None
    terms = builtin_terms() if settings.builtin else []
    if settings.terms_file:
        terms += read_terms(Path(settings.terms_file))
    terms += list(settings.extra_terms)
    return build_lexicon(tuple(dict.fromkeys(terms)), settings.max_fuzzy, settings.common_word_freq)


def apply_corrections(text: str, corrections: tuple[Correction, ...]) -> str:
    chars = list(text)
    for c in corrections:
        chars[c.start : c.start + len(c.term)] = c.term
    return "".join(chars)
