"""Evaluate a scorecard on a call: every item pass, fail or N/A, with evidence.

A scorecard is compiled once: every phrase of every item (normalised like the turns' match
text, spaces dropped) goes into one pattern, so a call's turns are scanned once for all of
them, whatever the number of items. Conditions then look their phrases up in that table and
filter by scope. Only a phrase that was not found exactly is searched by sound (pinyin, see
speechqa/phonetic.py), within its item's scope and at its item's ``fuzzy`` threshold.

Agent- and customer-scoped conditions read the ``unknown`` turns of a mono call, which has
no roles yet: on mono calls a customer saying 谢谢 can pass an agent's ``thanks``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from speechqa.calls import CallResult, Compliance, Event, RuleResult, Turn, Word, is_unheard
from speechqa.compliance.schema import (
    OPS,
    All,
    Any_,
    Before,
    Condition,
    Context,
    EventCond,
    Item,
    Metric,
    Not,
    Phrases,
    Regex,
    Scope,
    Scorecard,
    Similar,
    uses_roles,
    walk,
)
from speechqa.phonetic import (
    SAME_INITIAL_COST,
    SoundBank,
    SoundMatch,
    aligned_starts,
    find_sounds,
    fuzzy,
    phrase_sounds,
    pinyin,
    split_syllable,
    syllable_mask,
)
from speechqa.text import cut, is_backchannel, is_common_word, normalize


@dataclass(frozen=True)
class Hit:
    turn: int  # index in the call's turns; -1 for an event with no turn
    start: float
    end: float
    text: str
    score: float = 1.0


@dataclass(frozen=True)
class Outcome:
    ok: bool
    hits: tuple[Hit, ...] = ()
    reason: str = ""


_SCOPE_ROLES = {"agent": ("agent",), "customer": ("customer",), "any": ("agent", "customer", "unknown")}


def _compact(text: str) -> str:
    return normalize(text).replace(" ", "")


@dataclass
class Compiled:
    """A scorecard ready to run: its phrases in one pattern, and their prefixes."""

    scorecard: Scorecard
    pattern: re.Pattern[str] | None
    prefixes: dict[str, tuple[str, ...]]  # phrase -> the shorter phrases it starts with
    key: dict[str, str] = field(default_factory=dict)  # phrase as written -> compact form
    # the phrases' first two characters -> the lengths of the phrases they start (longest
    # first): the scan that stands for ``pattern`` (the same hits, without trying every
    # alternative of a pattern of thousands at every offset)
    heads: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    # group of synonyms -> (compact key -> its places in the group), built on first use
    groups: dict[tuple[str, ...], dict[str, tuple[int, ...]]] = field(
        default_factory=dict, compare=False, repr=False)
    # wordings searched by sound -> their compact keys and sound bank
    sound_plans: dict[tuple[str, ...], tuple[tuple[str, ...], SoundBank]] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.heads:
            lengths: dict[str, set[int]] = {}
            for p in self.prefixes:
                if len(p) >= 2:
                    lengths.setdefault(p[:2], set()).add(len(p))
            self.heads = {h: tuple(sorted(ls, reverse=True)) for h, ls in lengths.items()}

    def group_keys(self, group: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
        """Each compact key of ``group``'s wordings -> its places in the group (cached)."""
        places = self.groups.get(group)
        if places is None:
            found: dict[str, list[int]] = {}
            for n, phrase in enumerate(group):
                found.setdefault(self.key.get(phrase) or _compact(phrase), []).append(n)
            places = self.groups[group] = {k: tuple(v) for k, v in found.items()}
        return places

    def sound_plan(self, wordings: tuple[str, ...]) -> tuple[tuple[str, ...], SoundBank]:
        """The compact keys of the wordings worth a sound-alike search (two characters or
        more, all with pinyin), and their sound bank: ``min_same_syllables`` in line (cached)."""
        plan = self.sound_plans.get(wordings)
        if plan is None:
            heard = {k: want for k in dict.fromkeys(self.key.get(w) or _compact(w) for w in wordings)
                     if len(k) >= 2 and (want := phrase_sounds(k)) is not None}
            plan = self.sound_plans[wordings] = (
                tuple(heard), SoundBank.of(list(heard.values()), [min_same_syllables(len(k)) for k in heard]))
        return plan


def _phrase_conditions(cond: Condition | None) -> list[Phrases]:
    return [c for c in walk(cond) if isinstance(c, Phrases)]


def compile_scorecard(scorecard: Scorecard) -> Compiled:
    key = {}
    for item in scorecard.items:
        for cond in _phrase_conditions(item.passes) + _phrase_conditions(item.na):
            for group in cond.groups:
                for phrase in group:
                    key[phrase] = _compact(phrase)
    compact = sorted({k for k in key.values() if k}, key=lambda p: (-len(p), p))
    pattern = re.compile("(?=(" + "|".join(re.escape(p) for p in compact) + "))") if compact else None
    known = set(compact)
    prefixes = {p: tuple(p[:k] for k in range(len(p) - 1, 0, -1) if p[:k] in known) for p in compact}
    return Compiled(scorecard, pattern, prefixes, key)


class CallView:
    """One call as the conditions see it, with its phrase hits found once."""

    def __init__(self, result: CallResult, compiled: Compiled):
        self.result = result
        self.turns: Sequence[Turn] = result.turns
        self.duration = result.duration_s
        self.compiled = compiled
        self.mono = not any(t.role in ("agent", "customer") for t in self.turns)
        self.texts = [(t.match_text or normalize(t.text)).replace(" ", "") for t in self.turns]
        self.index = {t.turn_id: i for i, t in enumerate(self.turns)}
        self.values: dict[str, float | None] = dict(result.metrics) | result.sentiment.columns()
        self.values.update(duration_s=result.duration_s, n_turns=len(self.turns),
                           n_redactions=sum(len(t.redactions) for t in self.turns))
        self.exact: dict[str, list[tuple[int, int]]] = {}  # compact phrase -> (turn, offset)
        if compiled.pattern is not None:
            # what ``pattern.finditer`` finds: at each offset the longest phrase there, then
            # the shorter ones it starts with
            heads, known = compiled.heads, compiled.prefixes
            for i, text in enumerate(self.texts):
                n = len(text)
                for pos in range(n):
                    found = None
                    lens = heads.get(text[pos:pos + 2])
                    if lens:
                        for size in lens:
                            if pos + size <= n and text[pos:pos + size] in known:
                                found = text[pos:pos + size]
                                break
                    if found is None:
                        if text[pos] not in known:
                            continue
                        found = text[pos]
                    for phrase in (found, *known[found]):
                        self.exact.setdefault(phrase, []).append((i, pos))
        self._sounds: dict[int, tuple[str | None, ...]] = {}
        self._index: dict[tuple[int, ...], _Syllables] = {}
        self._fuzzies: dict[int, tuple[str | None, ...]] = {}
        self._cuts: dict[int, frozenset[int]] = {}
        self._masks: dict[tuple[int, ...], list[int]] = {}
        self._clock: dict[int, tuple[list[Word], list[int]]] = {}
        self._matches: dict[tuple[str, float, tuple[int, ...]], dict[int, SoundMatch]] = {}

    def in_scope(self, scope: Scope) -> list[int]:
        roles = _SCOPE_ROLES[scope.role]
        if self.mono:
            roles = (*roles, "unknown")
        # a prompt echo is not what was said: never evidence (speechqa/coverage.py)
        chosen = [i for i, t in enumerate(self.turns) if t.role in roles and not is_unheard(t)]
        if scope.first_turns is not None:
            chosen = chosen[: scope.first_turns]
        if scope.last_turns is not None:
            chosen = chosen[-scope.last_turns:]
        lo, hi = self.window(scope)
        return [i for i in chosen if self.turns[i].start < hi and self.turns[i].end > lo]

    def window(self, scope: Scope) -> tuple[float, float]:
        """The time span a scope allows; a hit must start inside it."""
        lo, hi = 0.0, self.duration + 1.0
        if scope.first_s is not None:
            hi = min(hi, scope.first_s)
        if scope.first_pct is not None:
            hi = min(hi, self.duration * scope.first_pct / 100)
        if scope.last_s is not None:
            lo = max(lo, self.duration - scope.last_s)
        if scope.last_pct is not None:
            lo = max(lo, self.duration * (1 - scope.last_pct / 100))
        return lo, hi

    def sounds(self, i: int) -> tuple[str | None, ...]:
        if i not in self._sounds:
            self._sounds[i] = pinyin(self.texts[i])
        return self._sounds[i]

    def sound_matches(self, phrase: str, want: tuple[str, ...], min_same: int, threshold: float,
                      turns: tuple[int, ...]) -> dict[int, SoundMatch]:
        """The best span per turn of ``turns`` that sounds like ``phrase`` (its fuzzy
        syllables ``want``, of which ``min_same`` must be the same) at ``threshold``, found
        through an index of those turns' syllables (cached per phrase and turns)."""
        key = (phrase, threshold, turns)
        found = self._matches.get(key)
        if found is not None:
            return found
        found = {}
        self._matches[key] = found
        heard = self.syllable_index(turns)
        starts: dict[int, list[int]] = {}
        for g in aligned_starts(want, min_same, heard.where):
            starts.setdefault(heard.turn_of[g], []).append(heard.offset_of[g])
        if not starts:
            return found
        # a match must cost less than (1 - threshold) per syllable: at 0.75, a four-syllable
        # phrase may not have two syllables that each keep only their final (帮您核查 /
        # 帮您的吗), while a lost nasal and a new initial (欢迎 / 华宁) still pass at 0.7
        max_cost = (1 - threshold) * len(phrase) - 1e-9
        for i, positions in starts.items():
            matches = find_sounds(self.texts[i], phrase, max_cost, self.sounds(i),
                                  min_same=min_same, max_step=SAME_INITIAL_COST, starts=positions)
            if matches and len(phrase) <= SHORT_SOUND_ALIKE:
                # a short sound-alike must not cut through a common word the turn holds: 象麻烦
                # out of 现象麻烦您稍等 is not 添麻烦 (ASR's garbles make rare words: 声分/证号码)
                cuts = self.common_word_cuts(i)
                matches = [m for m in matches if m.start not in cuts and m.end not in cuts]
            if matches:
                found[i] = matches[0]
        return found

    def common_word_cuts(self, i: int) -> frozenset[int]:
        """Offsets inside an everyday word (text.is_common_word) of turn ``i``'s match text: a
        span starting or ending there splits that word (cached)."""
        cuts = self._cuts.get(i)
        if cuts is None:
            inside: set[int] = set()
            pos = 0
            for token in cut(self.texts[i]):
                if len(token) > 1 and is_common_word(token):
                    inside.update(range(pos + 1, pos + len(token)))
                pos += len(token)
            cuts = self._cuts[i] = frozenset(inside)
        return cuts

    def fuzzies(self, i: int) -> tuple[str | None, ...]:
        """Turn ``i``'s fuzzy syllables, one per character of its match text (cached)."""
        found = self._fuzzies.get(i)
        if found is None:
            found = self._fuzzies[i] = tuple(None if s is None else fuzzy(s) for s in self.sounds(i))
        return found

    def scope_masks(self, turns: tuple[int, ...]) -> list[int]:
        """Each turn's syllable mask (phonetic.syllable_mask), for a scope's turns (cached)."""
        masks = self._masks.get(turns)
        if masks is None:
            masks = [syllable_mask(f for f in self.fuzzies(i) if f is not None) for i in turns]
            self._masks[turns] = masks
        return masks

    def syllable_index(self, turns: tuple[int, ...]) -> _Syllables:
        """The fuzzy syllables of some turns' match texts, indexed (built once per list of
        turns: a scope's, when one of its phrases may be heard there)."""
        index = self._index.get(turns)
        if index is None:
            index = self._index[turns] = _Syllables({}, [], [])
            n = 0
            for i in turns:
                fz = self.fuzzies(i)
                for p, f in enumerate(fz):
                    if f is not None:
                        index.where.setdefault(f, []).append(n + p)
                n += len(fz) + 1  # a gap between two turns: no span crosses it
                index.turn_of.extend([i] * (len(fz) + 1))
                index.offset_of.extend(range(len(fz) + 1))
        return index

    def hit(self, i: int, text: str, score: float = 1.0, offset: int | None = None) -> Hit:
        """A hit in turn ``i``; with its character ``offset`` in the match text, timed from the
        turn's words (proportionally: the match text is not the display text), else the turn."""
        t = self.turns[i]
        if offset is None or not self.texts[i]:
            return Hit(i, t.start, t.end, text, round(score, 3))
        start = self.time_at(i, offset / len(self.texts[i]))
        end = max(start, self.time_at(i, (offset + len(text)) / len(self.texts[i])))
        return Hit(i, start, end, text, round(score, 3))

    def time_at(self, i: int, fraction: float) -> float:
        """The time a fraction of the way through turn ``i``'s characters was spoken."""
        t = self.turns[i]
        if i not in self._clock:
            words = [w for w in t.words if w.word.strip()]
            ends = list(itertools.accumulate(len(w.word.strip()) for w in words))
            self._clock[i] = (words, ends)
        words, ends = self._clock[i]
        if not words:
            return round(t.start + fraction * t.duration, 3)
        target = fraction * ends[-1]
        k = min(bisect.bisect_left(ends, target), len(words) - 1)
        w = words[k]
        before = ends[k - 1] if k else 0
        n = ends[k] - before
        inside = (target - before) / n if n else 0.0
        return round(w.start + min(max(inside, 0.0), 1.0) * (w.end - w.start), 3)


@dataclass(frozen=True)
class _Syllables:
    """Some turns' fuzzy syllables in a row, a gap between turns: syllable -> positions, and
    each position's turn and offset."""

    where: dict[str, list[int]]
    turn_of: list[int]
    offset_of: list[int]


def min_same_syllables(n: int) -> int:
    """How many of a phrase's ``n`` syllables must be the same or a fuzzy pair for a
    sound-alike: all of a two-syllable phrase, two of three, and from four syllables on all
    but two, so that a whole two-syllable word misheard (欢迎致电 as 华宁致电, each syllable
    sharing its initial or final) still matches while the rest of the phrase is heard right."""
    return n if n <= 2 else (2 if n == 3 else n - 2)


SHORT_SOUND_ALIKE = 3  # syllables: a sound-alike this short must not split an everyday word


# -- conditions ----------------------------------------------------------------------------


def _group_hits(view: CallView, group: tuple[str, ...], turns: list[int], fuzzy: float,
                window: tuple[float, float], cores: tuple[str, ...] = ()) -> list[Hit]:
    """Hits of one group of synonyms: exact ones, else (``fuzzy`` < 1) sound-alikes of its
    core wordings."""
    hits: list[Hit] = []
    places = view.compiled.group_keys(group)  # exact hits in the order of the group's wordings
    shared = places.keys() & view.exact.keys()
    if shared:
        allowed = set(turns)
        for _, key in sorted((n, k) for k in shared for n in places[k]):
            hits.extend(view.hit(i, key, 1.0, pos) for i, pos in view.exact[key] if i in allowed)
    if hits or fuzzy >= 1:
        return hits
    scope = tuple(turns)
    keys, bank = view.compiled.sound_plan(cores or group)
    for j in bank.candidates(view.scope_masks(scope)):  # enough of its syllables in one turn
        for i, found in view.sound_matches(keys[j], bank.wants[j], bank.needs[j], fuzzy, scope).items():
            hits.append(view.hit(i, view.texts[i][found.start:found.end], found.score, found.start))
    return sorted((h for h in hits if window[0] <= h.start < window[1]), key=lambda h: (h.start, -h.score))


def _phrases(cond: Phrases, view: CallView) -> Outcome:
    turns = view.in_scope(cond.scope)
    window = view.window(cond.scope)
    per_group = [_group_hits(view, g, turns, 1.0, window) for g in cond.groups]
    exact_enough = (cond.match == "any" and sum(map(len, per_group)) >= cond.min_hits) or all(per_group)
    if cond.fuzzy < 1 and not exact_enough:  # sound-alikes only where the exact text fell short
        per_group = [hs or _group_hits(view, g, turns, cond.fuzzy, window, c)
                     for g, c, hs in zip(cond.groups, cond.sound_groups(), per_group, strict=True)]
    if cond.exclude is not None:  # 我们管不了，不过我可以…: the sentence goes on to what can be done
        exclude = cond.exclude
        per_group = [[h for h in hs if not exclude.search(_sentence(view, h.turn))] for hs in per_group]
    hits = tuple(sorted((h for hs in per_group for h in hs), key=lambda h: h.start))
    where = cond.scope.describe()
    labels = cond.labels or tuple(g[0] for g in cond.groups)
    names = " / ".join(labels[:4]) + (" …" if len(labels) > 4 else "")
    if cond.match == "none":
        if hits:
            return Outcome(False, hits, f"said {hits[0].text!r} {where}".strip())
        return Outcome(True, (), "")
    if cond.match == "all":
        missing = [label for label, hs in zip(labels, per_group, strict=True) if not hs]
        if missing:
            return Outcome(False, hits, f"missing {' / '.join(missing)} {where}".strip())
    if len(hits) < cond.min_hits:
        return Outcome(False, hits, f"no {names} {where}".strip() if not hits
                       else f"{len(hits)} of {cond.min_hits} hits of {names} {where}".strip())
    return Outcome(True, hits)


@lru_cache(maxsize=65536)
def _sound_units(text: str) -> str:
    """Initials and finals of the fuzzy syllables (a misheard syllable often keeps one of
    them: 欢 huan / 华 hua), each written as one private-use character so that the alignment
    runs on a plain string; characters without pinyin stand for themselves. Cached per text:
    the examples are the same on every call and every turn."""
    out: list[str] = []
    for ch, syllable in zip(text, pinyin(text), strict=True):
        out.append(ch if syllable is None else _syllable_units(syllable))
    return "".join(out)


_UNITS: dict[str, str] = {}  # an initial or final -> its private-use character


@lru_cache(maxsize=4096)
def _syllable_units(syllable: str) -> str:
    """The (initial, final) of a syllable's fuzzy form as two private-use characters (cached)."""
    initial, final = split_syllable(fuzzy(syllable))
    return "".join(_UNITS.setdefault(u, chr(0xE000 + len(_UNITS))) for u in (initial + "-", final))


def similarity(example: str, text: str) -> float:
    """How closely some stretch of ``text`` says ``example`` (both compact match texts), 0-1.

    The best local alignment of the example inside the text (rapidfuzz's partial ratio, an
    edit-distance measure), taken on the characters and on the initials and finals of the
    fuzzy syllables (the pinyin model of speechqa/phonetic.py), whichever is higher: a
    homophone costs nothing by sound.
    """
    from rapidfuzz import fuzz

    if not example or not text:
        return 0.0
    by_chars = fuzz.partial_ratio(example, text)
    by_sound = fuzz.partial_ratio(_sound_units(example), _sound_units(text))
    return max(by_chars, by_sound) / 100.0


def _similar(cond: Similar, view: CallView) -> Outcome:
    hits = []
    lo, hi = view.window(cond.scope)
    examples = [_compact(e) for e in cond.examples]
    for i in view.in_scope(cond.scope):
        text = view.texts[i]
        if not text or not (lo <= view.turns[i].start < hi):
            continue
        score, example = max((similarity(e, text), e) for e in examples)
        if score >= cond.threshold:
            hits.append(Hit(i, view.turns[i].start, view.turns[i].end, text[:40], round(score, 3)))
    if hits:
        return Outcome(True, tuple(hits))
    where = cond.scope.describe()
    return Outcome(False, (), f"nothing like {cond.examples[0]!r} {where}".strip())


_CONTINUES_S = 1.5  # a turn of the same speaker starting this soon after one ends goes on with it


def _going_on(view: CallView, i: int) -> list[int]:
    """Turn ``i`` and the turns that go on with its sentence: ASR cuts sentences at pauses, so
    each next turn in the call by the same speaker, within ``_CONTINUES_S`` of the last."""
    turns, chain = view.turns, [i]
    while chain[-1] + 1 < len(turns):
        t, nxt = turns[chain[-1]], turns[chain[-1] + 1]
        if nxt.channel != t.channel or nxt.role != t.role or nxt.start - t.end > _CONTINUES_S:
            break
        chain.append(chain[-1] + 1)
    return chain


def _sentence(view: CallView, i: int) -> str:
    """The match text of turn ``i``'s whole sentence (:func:`_going_on`): an exclusion
    (没办法直接改，不过…) must see how the sentence goes on."""
    return " ".join(view.turns[k].match_text or normalize(view.turns[k].text) for k in _going_on(view, i))


def _regex(cond: Regex, view: CallView) -> Outcome:
    hits = []
    for i in view.in_scope(cond.scope):
        text = view.turns[i].match_text or normalize(view.turns[i].text)
        if cond.exclude is not None and cond.exclude.search(_sentence(view, i)):
            continue
        m = cond.pattern.search(text)
        if m:
            compact_offset = len(text[: m.start()].replace(" ", ""))
            hit = view.hit(i, m.group(0), 1.0, compact_offset)
            lo, hi = view.window(cond.scope)
            if lo <= hit.start < hi:
                hits.append(hit)
    if hits:
        return Outcome(True, tuple(hits))
    return Outcome(False, (), f"no match {cond.scope.describe()}".strip())


def _events(cond: EventCond, view: CallView) -> Outcome:
    chosen = [
        e for e in view.result.events
        if e.type == cond.type and (not cond.detail or e.detail in cond.detail)
        and (cond.role == "any" or e.role == cond.role) and e.duration >= cond.min_duration_s
    ]
    hits = tuple(_event_hit(view, e) for e in chosen)
    if len(hits) >= cond.min_count:
        return Outcome(True, hits)
    return Outcome(False, hits, f"{len(hits)} {cond.type} event(s), {cond.min_count} needed")


def _event_hit(view: CallView, e: Event) -> Hit:
    i = view.index.get(e.turn_id, -1)
    if i < 0:  # a silence or hold: the turn just before it
        i = max((k for k, t in enumerate(view.turns) if t.start <= e.start), default=-1)
    return Hit(i, e.start, e.end, f"{e.type} {e.detail} {e.duration:.1f}s".replace("  ", " "))


def _metric(cond: Metric, view: CallView) -> Outcome:
    value = view.values.get(cond.name)
    if value is None:
        return Outcome(False, (), f"{cond.name} is not available for this call")
    ok = getattr(operator, OPS[cond.op])(value, cond.value)
    return Outcome(bool(ok), (), f"{cond.name} = {value:g} {'' if ok else 'not '}{cond.op} {cond.value:g}")


def _before(cond: Before, view: CallView) -> Outcome:
    first, then = evaluate(cond.first, view), evaluate(cond.then, view)
    if not first.ok or not first.hits:
        return Outcome(False, first.hits, first.reason or "the first step never happened")
    a = min(first.hits, key=lambda h: h.start)
    later = [h for h in then.hits if h.start < a.start]
    if then.ok and later:
        b = min(later, key=lambda h: h.start)
        return Outcome(False, (b,), f"{b.text!r} at {b.start:.1f}s came before {a.text!r} at {a.start:.1f}s")
    return Outcome(True, (a,))


def _context(cond: Context, view: CallView) -> Outcome:
    anchors = evaluate(cond.each, view).hits
    has = evaluate(cond.has, view).hits
    found = []
    for a in anchors:
        if cond.within_turns is not None and a.turn >= 0:
            if cond.direction == "after":
                near = [h for h in has if a.turn < h.turn <= a.turn + cond.within_turns]
            else:
                near = [h for h in has if a.turn - cond.within_turns <= h.turn <= a.turn]
        else:
            span = cond.within_s or 0.0
            if cond.direction == "after":
                near = [h for h in has if a.start <= h.start <= a.end + span]
            else:
                near = [h for h in has if a.start - span <= h.end and h.start <= a.start]
        if cond.last_said and cond.direction == "before":
            near = [h for h in near if not _said_more(view, h, a.start)]
        if not near:
            window = f"{cond.within_turns} turns" if cond.within_turns is not None else f"{cond.within_s:g}s"
            return Outcome(False, (a,), f"nothing within {window} {cond.direction} {a.text} at {a.start:.1f}s")
        found.append(near[0])
    return Outcome(True, tuple(found))


def _said_more(view: CallView, hit: Hit, until: float) -> bool:
    """Whether the speaker of ``hit`` went on, after its sentence and before ``until``, to say
    more than an acknowledgement (好的, 嗯): then the hit no longer announces what comes at
    ``until`` (我核实一下 … 嗯，退货没问题。[silence])."""
    if hit.turn < 0 or view.turns[hit.turn].role == "unknown":
        return False  # no turn, or a mono call: who said the rest is not known
    said = view.turns[hit.turn]
    for t in view.turns[_going_on(view, hit.turn)[-1] + 1:]:
        if t.start >= until:
            break
        if t.role == said.role and t.channel == said.channel and not is_backchannel(t.text):
            return True
    return False


def evaluate(cond: Condition, view: CallView) -> Outcome:
    """Whether ``cond`` holds on the call, with its hits (evidence) and, when not, why."""
    if isinstance(cond, Phrases):
        return _phrases(cond, view)
    if isinstance(cond, Similar):
        return _similar(cond, view)
    if isinstance(cond, Regex):
        return _regex(cond, view)
    if isinstance(cond, EventCond):
        return _events(cond, view)
    if isinstance(cond, Metric):
        return _metric(cond, view)
    if isinstance(cond, Before):
        return _before(cond, view)
    if isinstance(cond, Context):
        return _context(cond, view)
    if isinstance(cond, All):
        outcomes = [evaluate(p, view) for p in cond.parts]
        failed = next((o for o in outcomes if not o.ok), None)
        if failed:
            return Outcome(False, failed.hits, failed.reason)
        return Outcome(True, tuple(h for o in outcomes for h in o.hits))
    if isinstance(cond, Any_):
        outcomes = [evaluate(p, view) for p in cond.parts]
        passed = [o for o in outcomes if o.ok]
        if passed:
            return Outcome(True, tuple(h for o in passed for h in o.hits))
        return Outcome(False, (), "; ".join(o.reason for o in outcomes if o.reason))
    if isinstance(cond, Not):
        inner = evaluate(cond.part, view)
        if not inner.ok:
            return Outcome(True, inner.hits)
        said = tuple(sorted(inner.hits, key=lambda h: h.start))  # the evidence is the first thing said
        first = said[0] if said else None
        reason = f"said {first.text!r} at {first.start:.1f}s" if first else "the condition held"
        return Outcome(False, said, reason)
    raise TypeError(f"unknown condition {cond!r}")


# -- items and calls -----------------------------------------------------------------------


def _result(view: CallView, item: Item, outcome: str, points: float, max_points: float, o: Outcome | None,
            reason: str) -> RuleResult:
    hit = None
    if o is not None and o.hits:
        hit = max(o.hits, key=lambda h: h.score) if outcome == "pass" else o.hits[0]
    turn_id = view.turns[hit.turn].turn_id if hit is not None and hit.turn >= 0 else ""
    return RuleResult(
        call_id=view.result.recording.call_id, item_id=item.id, outcome=outcome, points=points,
        max_points=max_points, evidence_turn_id=turn_id,
        evidence_start=None if hit is None else round(hit.start, 3),
        evidence_end=None if hit is None else round(hit.end, 3),
        evidence_text="" if hit is None else hit.text,
        match_score=None if hit is None else hit.score, reason=reason,
    )


def evaluate_item(item: Item, view: CallView) -> RuleResult:
    if "roles_uncertain" in view.result.flags and uses_roles(item.passes):
        decision = view.result.roles
        sure = f" (role confidence {decision.confidence:.2f})" if decision is not None and \
            decision.confidence is not None else ""
        return _result(view, item, "na", 0.0, 0.0, None,
                       f"not scored: agent and customer could not be told apart surely on this mono call{sure}")
    if item.na is not None:
        na = evaluate(item.na, view)
        if na.ok:
            return _result(view, item, "na", 0.0, 0.0, None, "not applicable")
    o = evaluate(item.passes, view)
    if o.ok:
        return _result(view, item, "pass", item.points, item.points, o, "")
    reason = o.reason or "condition not met"
    if "low_coverage" in view.result.flags:
        reason += f" ({_missing_speech(view)}: the words may be missing, not the script)"
    return _result(view, item, "fail", 0.0, item.points, o, reason)


def _missing_speech(view: CallView) -> str:
    """How much detected speech has no words, per role, for a low-coverage call's failures."""
    parts = [f"{role} {1 - v:.0%}" for role in ("agent", "customer")
             if isinstance(v := view.values.get(f"coverage_{role}"), float)]
    whole = view.values.get("coverage")
    if not parts and isinstance(whole, float):
        parts = [f"{1 - whole:.0%}"]
    return "speech without words: " + (", ".join(parts) or "some")


@lru_cache(maxsize=8)
def _compiled(scorecard: Scorecard) -> Compiled:
    return compile_scorecard(scorecard)


def scores_language(scorecard: Scorecard, language: str) -> bool:
    """Whether ``scorecard`` can score a call in ``language`` (an unknown language, or a
    scorecard that names none, is scored)."""
    return not (scorecard.language and language and language != scorecard.language)


def score_call(result: CallResult, scorecard: Scorecard) -> Compliance:
    """Every item of ``scorecard`` on one call, the 0-100 score and the auto-fail flag.

    A call in another language than the scorecard's is not scored: every item is N/A, saying
    why, and the score is NaN (its phrases cannot be said in that language: a failure would
    be the scorecard's, not the agent's). Nor is a call with no words at all: an empty line is
    no agent's failure."""
    label = f"{scorecard.name} {scorecard.version}".strip()
    reason = ""
    if not scores_language(scorecard, result.language):
        reason = (f"not scored: the call is in {result.language}, "
                  f"the scorecard is written for {scorecard.language}")
    elif all(is_unheard(t) for t in result.turns):
        reason = "not scored: no words were transcribed (silence, noise, music or a dropped line)"
    if reason:
        return Compliance(math.nan, False, tuple(
            RuleResult(call_id=result.recording.call_id, item_id=item.id, outcome="na", points=0.0,
                       max_points=0.0, reason=reason) for item in scorecard.items), label, scorecard.sha256)
    view = CallView(result, _compiled(scorecard))
    results = tuple(evaluate_item(item, view) for item in scorecard.items)
    by_id = {item.id: item for item in scorecard.items}
    auto_fail = any(r.outcome == "fail" and by_id[r.item_id].auto_fail for r in results)
    possible = sum(r.max_points for r in results)
    earned = sum(r.points for r in results)
    score = 0.0 if auto_fail else (round(100 * earned / possible, 2) if possible > 0 else 100.0)
    if possible == 0 and "roles_uncertain" in result.flags:
        score = math.nan  # every item needed the roles: no score beats a made-up 100
    return Compliance(score, auto_fail, results, label, scorecard.sha256)
