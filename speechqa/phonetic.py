"""Sound-alike matching of Chinese phrases, for text that ASR wrote as homophones.

whisper-base often gets the sound of a phrase right and the characters wrong: 工信部 comes
out as 贡献部, 携号转网 as 些后转往, 领导 as 银刀. Comparing pinyin syllables (tones ignored,
because whisper-base drops them freely) finds these.

Each syllable pair has a cost: 0 when equal; 0.25 when they differ only by a pair that
accents and ASR confuse (zh/z, ch/c, sh/s, n/l, -eng/-en, -ing/-in, -ang/-an); 0.35 when
only a nasal coda is lost or gained (huan / hua); 0.5 when they share the final; 0.6 when
they share only the initial; 1 otherwise. A phrase matches a span of the same
length when the summed cost is at most the caller's ``max_cost``. Callers choose it by
how much a false hit would cost: two-syllable phrases collide with everyday words
(媒体 / 没提, 主管 / 主观), so they need context or a cost of 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"))
_FUZZY_FINALS = (("eng", "en"), ("ing", "in"), ("ang", "an"))
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
             "r", "z", "c", "s", "y", "w")


def is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


@lru_cache(maxsize=4096)
def fuzzy(syllable: str) -> str:
    """Collapse the sound pairs that accents and ASR confuse (cached: a few hundred syllables)."""
    for a, b in _FUZZY_INITIALS:
        if syllable.startswith(a):
            syllable = b + syllable[len(a):]
            break
    if syllable.startswith("n"):
        syllable = "l" + syllable[1:]
    for a, b in _FUZZY_FINALS:
        if syllable.endswith(a):
            syllable = syllable[: -len(a)] + b
            break
    return syllable


def split_syllable(syllable: str) -> tuple[str, str]:
    """(initial, final) of a toneless pinyin syllable; the initial may be empty."""
    for initial in _INITIALS:
        if syllable.startswith(initial) and len(syllable) > len(initial):
            return initial, syllable[len(initial):]
    return "", syllable


def load() -> None:
    """Import pypinyin and its dictionaries now (once per process), not on a call's first turn."""
    char_pinyin("中")


@lru_cache(maxsize=16384)
def char_pinyin(ch: str) -> str | None:
    """Toneless pinyin of one Han character (its most common reading), None for anything else."""
    from pypinyin import lazy_pinyin

    return lazy_pinyin(ch)[0] if is_han(ch) else None


@lru_cache(maxsize=65536)
def pinyin(text: str) -> tuple[str | None, ...]:
    """:func:`char_pinyin` of each character (cached per text: PII, sentiment and the
    compliance engine each ask for a turn's syllables)."""
    return tuple(map(char_pinyin, text))


@lru_cache(maxsize=4096)
def phrase_pinyin(phrase: str) -> tuple[str | None, ...]:
    """:func:`pinyin` of a phrase that is matched again and again (cached)."""
    return pinyin(phrase)


@lru_cache(maxsize=8192)
def phrase_sounds(phrase: str) -> tuple[str, ...] | None:
    """The fuzzy syllables of a phrase that is matched again and again; None when a character
    has no pinyin (such a phrase cannot be heard by sound). Cached."""
    want = phrase_pinyin(phrase)
    return tuple(fuzzy(w) for w in want) if all(want) else None  # type: ignore[arg-type]


FUZZY_PAIR_COST = 0.25  # two syllables that differ only by a pair accents and ASR confuse
NASAL_CODA_COST = 0.35  # the same initial and vowel, a nasal coda lost or gained (huan / hua)
SAME_FINAL_COST = 0.5  # the same final, another initial (ying / ning)
SAME_INITIAL_COST = 0.6  # only the initial in common (dui / deng)


@lru_cache(maxsize=65536)
def syllable_cost(a: str, b: str) -> float:
    """How far apart two toneless syllables sound: 0, 0.25 (fuzzy pair), 0.5 (same initial
    or final) or 1. The one sound model of speechqa: the lexicon repair, the scorecard's
    sound-alikes and similar condition, the escalation cues and digits heard by sound all
    use it."""
    if a == b:
        return 0.0
    fa, fb = fuzzy(a), fuzzy(b)
    if fa == fb:
        return FUZZY_PAIR_COST
    (ia, ra), (ib, rb) = split_syllable(fa), split_syllable(fb)
    if ra == rb:
        return SAME_FINAL_COST
    if ia == ib:
        # the vowel kept and only the nasal coda lost or gained (欢 huan / 华 hua) is closer
        # than a syllable that keeps nothing but its initial (对 dui / 登 deng)
        nasal = ra.rstrip("gn") == rb.rstrip("gn") and ra.rstrip("gn") != ""
        return NASAL_CODA_COST if nasal else SAME_INITIAL_COST
    return 1.0


def syllable_positions(sounds: Sequence[str | None]) -> dict[str, list[int]]:
    """Fuzzy syllable -> the offsets where it is heard (``sounds``: :func:`pinyin` of a text)."""
    where: dict[str, list[int]] = {}
    for p, s in enumerate(sounds):
        if s is not None:
            where.setdefault(fuzzy(s), []).append(p)
    return where


def aligned_starts(want: Sequence[str], need: int, where: dict[str, list[int]],
                   lo: int = 0, hi: int | None = None) -> list[int]:
    """Start offsets in [lo, hi) where at least ``need`` of a phrase's fuzzy syllables
    ``want`` are heard in line (``where``: :func:`syllable_positions`), in order: the only
    starts where a sound-alike with at most len(want) - need other syllables can be. A
    start's span may run past the end of the text, or of a turn: the search drops those."""
    if sum(map(where.__contains__, want)) < need:
        return []
    votes: dict[int, int] = {}
    get = votes.get
    for k, w in enumerate(want):
        for g in where.get(w, ()):
            votes[g - k] = get(g - k, 0) + 1
    top = hi if hi is not None else 1 << 62
    return sorted(g for g, v in votes.items() if v >= need and lo <= g < top)


_BITS: dict[str, int] = {}  # fuzzy syllable -> its bit in a syllable mask (for the process)


def syllable_mask(syllables: Iterable[str]) -> int:
    """The set of some fuzzy syllables as one integer, a bit per syllable: two sets meet in
    ``a & b`` and ``(a & b).bit_count()`` counts the syllables they share."""
    mask = 0
    for s in syllables:
        bit = _BITS.get(s)
        if bit is None:
            bit = _BITS[s] = 1 << len(_BITS)
        mask |= bit
    return mask


@dataclass(frozen=True)
class SoundBank:
    """Phrases to be heard by sound, each as fuzzy syllables of which ``need`` must be heard
    in line: which of many phrases a text may sound like is found from syllable masks, a
    few integer operations per phrase, before any phrase is searched for."""

    wants: tuple[tuple[str, ...], ...]
    needs: tuple[int, ...]
    masks: tuple[int, ...]  # each phrase's distinct syllables
    distinct_needs: tuple[int, ...]  # of those, how many a text must have at the least

    @classmethod
    def of(cls, wants: Sequence[tuple[str, ...]], needs: Sequence[int]) -> SoundBank:
        # a phrase heard with ``need`` of its syllables has at least need - (its repeats) of
        # its distinct ones (谢谢: one distinct syllable, said twice)
        return cls(tuple(wants), tuple(needs), tuple(syllable_mask(w) for w in wants),
                   tuple(need - (len(w) - len(set(w))) for w, need in zip(wants, needs, strict=True)))

    def candidates(self, masks: Sequence[int]) -> list[int]:
        """The phrases (indices, in order) that one of the texts whose syllable ``masks``
        are given may sound like: those with enough of their syllables in one text."""
        if not masks:
            return []
        union = 0
        for m in masks:
            union |= m
        out = []
        for j, (pm, need) in enumerate(zip(self.masks, self.distinct_needs, strict=True)):
            if (union & pm).bit_count() >= need and any((m & pm).bit_count() >= need for m in masks):
                out.append(j)
        return out


@dataclass(frozen=True)
class SoundMatch:
    start: int  # character offsets in the text
    end: int
    cost: float

    @property
    def score(self) -> float:
        """1.0 for the same sounds, falling with the cost per syllable."""
        return max(0.0, 1.0 - self.cost / max(self.end - self.start, 1))


def find_sounds(
    text: str, phrase: str, max_cost: float, sounds: tuple[str | None, ...] | None = None,
    lo: int = 0, hi: int | None = None, min_same: int = 0, max_step: float = 1.0,
    starts: Iterable[int] | None = None,
) -> list[SoundMatch]:
    """Spans of ``text`` (within [lo, hi)) that sound like ``phrase``, best first.

    ``min_same``: at least this many syllables must be the same or a fuzzy pair, so that a
    span of near-misses everywhere (的登艺纸 for 核对一致) does not pass; ``max_step``: the
    most one syllable may cost (0.5: none may be wholly different). Pass ``sounds``
    (``pinyin(text)``) when matching many phrases against one text, and ``starts`` to try
    only some start offsets (the compliance engine finds them from a syllable index).
    """
    want = phrase_pinyin(phrase)
    if not want or any(s is None for s in want):
        return []
    sounds = pinyin(text) if sounds is None else sounds
    hi = len(text) if hi is None else min(hi, len(text))
    n = len(want)
    found = []
    positions = range(lo, hi - n + 1) if starts is None else (i for i in starts if lo <= i <= hi - n)
    for i in positions:
        cost = 0.0
        same = 0
        for got, w in zip(sounds[i:i + n], want, strict=True):
            step = 9.0 if got is None else syllable_cost(got, w)  # type: ignore[arg-type]
            cost += step
            same += step <= 0.25
            if cost > max_cost or step > max_step:
                cost = math.inf
                break
        if cost <= max_cost and same >= min_same:
            found.append(SoundMatch(i, i + n, cost))
    return sorted(found, key=lambda m: (m.cost, m.start))


def sounds_like(text: str, phrase: str, need: int, max_cost: float, sounds: tuple[str | None, ...],
                where: dict[str, list[int]], lo: int = 0, hi: int | None = None,
                **search: Any) -> list[SoundMatch]:
    """:func:`find_sounds` tried only at the starts where ``need`` of the phrase's syllables
    line up (:func:`aligned_starts` on ``where``, the :func:`syllable_positions` of ``sounds``):
    one phrase among many looked for in a text; ``search`` goes on to :func:`find_sounds`."""
    want = phrase_sounds(phrase)
    starts = aligned_starts(want, need, where, lo, hi) if want else []
    return find_sounds(text, phrase, max_cost, sounds, lo, hi, starts=starts, **search) if starts else []
