"""Turn and call sentiment, and escalation events, for Mandarin call-centre dialogue.

The model
---------
A turn's score is ``sigmoid(z)`` in [0, 1]; 0.5 and above means positive. ``z`` has two linear
parts over the same sparse binary features of the text (see :func:`text_features`):

* jieba words from speechqa's private tokenizer (no snownlp segmenter: it costs ~4.5 ms a
  sentence), with negation marking: the two words after 不 / 没 / 别 / 没有 / 不是 / 并不 ... in
  the same clause also fire ``n:<word>``, so "不满意" is not "满意";
* character 1-, 2- and 3-grams of each clause, which carry ASR homophone errors and words that
  jieba splits differently.

The first part is snownlp's own classifier (``snownlp.classification.bayes.Bayes``, add-one
Naive Bayes) retrained on these features; it enters as its log-odds, ``nb_weight`` times. The
second part is an L2-regularised logistic regression over the same features scaled to unit
length. ``scripts/train_sentiment.py`` trains both on the labelled dev data (conversation
utterances and delivery / shopping reviews) and writes them to
``speechqa/data/sentiment/model.json.gz``: feature strings and float weights, no pickle.

The call cues
-------------
The dev data has almost no call-centre speech, so three hand-made cues sit on top of the model.
Their phrases are data, not code: ``speechqa/data/escalation_zh.toml`` (the escalation kinds,
shared with :func:`escalations`) and ``speechqa/data/sentiment_cues_zh.toml`` (cue lists and
weights, negators, formulas), each replaceable by a site (``[sentiment] escalation_file`` /
``cues_file``) and validated when loaded:

* escalation (complaint, regulator, media, lawyer, supervisor, cancellation) and other
  complaint phrases (什么态度, 太差, 乱扣费 ...) subtract from ``z``; thanks and "问题解决了"
  add to it. A cue right after a negator (不用投诉, 没解决) does not count as itself.
* formulaic agent phrases (greetings, 请稍等, 工号…为您服务, 感谢您的来电, apologies ...) are cut
  out before the model sees the text and vote :data:`NEUTRAL` in proportion to the characters
  they cover, so "您好，欢迎致电…请问有什么可以帮您" stays near 0.55 instead of the 0.0 that
  snownlp's review model gives it, and an apology stays neutral-ish.
* text with nothing left to score (empty, punctuation, PII masks such as ``[手机号]``) is 0.5.

Everything here is a plain function; the model loads once per process (``lru_cache``) and is
read-only afterwards, so the functions are safe to call from several threads.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from speechqa.calls import CallSentiment, Event, RoleSentiment, Turn, is_unheard
from speechqa.config import SentimentSettings
from speechqa.phonetic import (
    NASAL_CODA_COST,
    SAME_FINAL_COST,
    SAME_INITIAL_COST,
    SoundBank,
    phrase_sounds,
    pinyin,
    sounds_like,
    syllable_mask,
    syllable_positions,
)
from speechqa.text import CLAUSE_BREAKS, PUNCT_RUN, _replaced, clause_text, is_backchannel, is_common_word
from speechqa.vocab import Checker, alternation, any_of, read_toml

MODEL_PATH = Path(__file__).resolve().parent / "data" / "sentiment" / "model.json.gz"
LANGUAGES = frozenset({"zh"})  # what the model and the cue files are written for; other calls get none
MODEL_FORMAT = "speechqa-sentiment/1"

NEUTRAL = 0.55  # what formulaic agent phrases score: polite, not an opinion
EMPTY = 0.5  # what text with nothing to score gets
NEGATION_SPAN = 2  # words after a negator that are marked ``n:``
CHAR_NGRAMS = (1, 2, 3)

ESCALATION_KINDS: tuple[str, ...] = ("complaint", "regulator", "media", "lawyer", "supervisor", "cancellation")
CUE_KINDS = ("negative", "positive")  # sentiment cues that are not events
ESCALATION_FILE = "escalation_zh.toml"  # [sentiment] escalation_file overrides it
CUES_FILE = "sentiment_cues_zh.toml"  # [sentiment] cues_file overrides it
_NEGATED_SIGN: dict[str, float] = {"positive": -1.0}  # 没解决 is negative; 不用投诉 is just not a threat
_BREAK = CLAUSE_BREAKS
_PUNCT = PUNCT_RUN
_NOT_BREAK = "[^" + "".join(sorted(CLAUSE_BREAKS)) + "]"


@dataclass(frozen=True, eq=False)
class Escalation:
    """The escalation lexicon (speechqa/data/escalation_zh.toml or a site's file)."""

    source: str
    kinds: tuple[tuple[str, tuple[str, ...]], ...]  # (kind, regex alternatives), in file order
    sounds: tuple[tuple[str, str], ...]  # (kind, canonical phrase) matched by sound
    boss_nouns: tuple[str, ...] = ()
    boss_requests: tuple[str, ...] = ()
    boss_before: tuple[str, ...] = ()
    boss_after: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Cues:
    """The sentiment cues (speechqa/data/sentiment_cues_zh.toml or a site's file)."""

    source: str
    weights: dict[str, float]  # logit change per distinct cue kind in a turn
    kinds: tuple[tuple[str, tuple[str, ...]], ...]  # negative / positive regex alternatives
    negators: frozenset[str]  # words whose next NEGATION_SPAN words are marked n: (model features)
    threat_negator: re.Pattern[str]  # negates an escalation cue right after it
    cue_negator: re.Pattern[str]  # negates a negative / positive cue right after it
    formulas: tuple[str, ...]  # neutral agent phrases


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Everything sentiment and escalation match: the two files, loaded."""

    escalation: Escalation
    cues: Cues


@lru_cache(maxsize=8)
def load_escalation(path: str = "") -> Escalation:
    """The escalation file at ``path`` (empty: the shipped one), read and validated once.

    Raises ConfigError naming the file and the key (``kind "media": pattern '(' is not a valid
    regular expression``).
    """
    data, source = read_toml(path, ESCALATION_FILE, "[sentiment] escalation_file")
    c = Checker(source)
    c.table(data, "", ("kinds", "supervisor_sounds"), ("kinds",))
    kinds_table = c.table(data["kinds"], "[kinds]")
    for kind in kinds_table:
        if kind not in ESCALATION_KINDS:
            raise c.fail(f"kind {kind!r}", f"unknown kind; known: {', '.join(ESCALATION_KINDS)}")
    kinds, sounds = [], []
    for kind in kinds_table:
        where = f'kind "{kind}"'
        table = c.table(kinds_table[kind], where, ("patterns", "sounds"), ("patterns",))
        kinds.append((kind, c.strings(table["patterns"], where, "patterns", regex=True)))
        for phrase in c.strings(table.get("sounds", []), where, "sounds", allow_empty=True):
            if sum(1 for ch in phrase if "\u4e00" <= ch <= "\u9fff") < 3 or not all(
                    "\u4e00" <= ch <= "\u9fff" for ch in phrase):
                raise c.fail(where, f"sound {phrase!r} must be three or more Chinese characters "
                                    "(shorter ones sound like too many words)")
            sounds.append((kind, phrase))
    missing = [k for k in ESCALATION_KINDS if k not in kinds_table]
    if missing:
        raise c.fail("[kinds]", f"kind {missing[0]!r} is missing (every kind needs patterns)")
    boss: dict[str, tuple[str, ...]] = {}
    if "supervisor_sounds" in data:
        where = "[supervisor_sounds]"
        keys = ("nouns", "requests", "before", "after")
        table = c.table(data["supervisor_sounds"], where, keys, keys)
        boss = {k: c.strings(table[k], where, k) for k in keys}
    return Escalation(source, tuple(kinds), tuple(sounds), boss.get("nouns", ()), boss.get("requests", ()),
                      boss.get("before", ()), boss.get("after", ()))


def _negator(c: Checker, table: Any, key: str) -> re.Pattern[str]:
    words = c.strings(table[key], "[negation]", key, regex=True)
    reach = table[f"{key}_reach"]
    if isinstance(reach, bool) or not isinstance(reach, int) or reach < 0:
        raise c.fail("[negation]", f"{key}_reach must be an integer >= 0, got {reach!r}")
    return re.compile(f"(?:{'|'.join(words)}){_NOT_BREAK}{{0,{reach}}}$")


@lru_cache(maxsize=8)
def load_cues(path: str = "") -> Cues:
    """The sentiment cue file at ``path`` (empty: the shipped one), read and validated once."""
    data, source = read_toml(path, CUES_FILE, "[sentiment] cues_file")
    c = Checker(source)
    c.table(data, "", ("weights", "cues", "negation", "formulas"), ("weights", "cues", "negation", "formulas"))
    known = (*ESCALATION_KINDS, *CUE_KINDS)
    weights_table = c.table(data["weights"], "[weights]", known, known)
    weights = {k: c.number(weights_table[k], "[weights]", k) for k in known}
    cues_table = c.table(data["cues"], "[cues]", CUE_KINDS, CUE_KINDS)
    kinds = tuple((k, c.strings(cues_table[k], "[cues]", k, regex=True)) for k in CUE_KINDS)
    neg_keys = ("words", "threat", "threat_reach", "cue", "cue_reach")
    negation = c.table(data["negation"], "[negation]", neg_keys, neg_keys)
    words = frozenset(c.strings(negation["words"], "[negation]", "words"))
    formulas = c.table(data["formulas"], "[formulas]", ("patterns",), ("patterns",))
    return Cues(source, weights, kinds, words, _negator(c, negation, "threat"), _negator(c, negation, "cue"),
                c.strings(formulas["patterns"], "[formulas]", "patterns", regex=True))


_site: dict[str, str] = {}  # the run's [sentiment] files, set once by use_vocabulary


def use_vocabulary(settings: SentimentSettings) -> Vocabulary:
    """Load and validate the files ``settings`` name and make them this process's default
    vocabulary (``pipeline.make_context`` calls it, through vocab.preload, before any call)."""
    found = vocabulary(settings)
    _site.update(escalation=settings.escalation_file, cues=settings.cues_file)
    return found


def vocabulary(settings: SentimentSettings | None = None) -> Vocabulary:
    """The vocabulary of ``settings`` (None: the one chosen by :func:`use_vocabulary`, else the
    shipped files)."""
    if settings is None:
        return _vocabulary(_site.get("escalation", ""), _site.get("cues", ""))
    return _vocabulary(settings.escalation_file, settings.cues_file)


@lru_cache(maxsize=8)
def _vocabulary(escalation_file: str, cues_file: str) -> Vocabulary:
    return Vocabulary(load_escalation(escalation_file), load_cues(cues_file))


@lru_cache(maxsize=8)
def _cue_regex(vocab: Vocabulary) -> re.Pattern[str]:
    """One alternation over escalation kinds and sentiment cues, a named group per kind. The
    escalation kinds come first: where a match could be two kinds, the first listed wins."""
    kinds = (*vocab.escalation.kinds, *vocab.cues.kinds)
    return re.compile("|".join(f"(?P<{kind}>{'|'.join(alts)})" for kind, alts in kinds))


@lru_cache(maxsize=8)
def _formula_regex(vocab: Vocabulary) -> re.Pattern[str]:
    return re.compile(any_of(vocab.cues.formulas))


# Sentiment's text form is text.clause_text: folded, clause breaks kept. The model was trained
# on it (scripts/train_sentiment.py imports this name).
normalize = clause_text


def cues(text: str, vocab: Vocabulary | None = None) -> list[tuple[str, bool, int, int]]:
    """Lexicon hits in normalised ``text``: (kind, negated, start, end), in text order.

    A negated hit's span starts at its negator, so that "不用投诉" can be cut out as a whole.
    """
    vocab = vocab or vocabulary()
    out = []
    for m in _cue_regex(vocab).finditer(text):
        kind = m.lastgroup or ""
        clause_start = max((i + 1 for i in range(m.start() - 1, -1, -1) if text[i] in _BREAK), default=0)
        negator = vocab.cues.cue_negator if kind in CUE_KINDS else vocab.cues.threat_negator
        neg = negator.search(text, clause_start, m.start())
        out.append((kind, neg is not None, neg.start() if neg else m.start(), m.end()))
    return out


def text_features(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """The model's features of already-normalised text (see the module docstring); may repeat."""
    from speechqa.text import cut

    negators = (vocab or vocabulary()).cues.negators
    out: list[str] = []
    flip = 0
    for word in cut(text):
        if _PUNCT.fullmatch(word):
            if "!" in word or "?" in word:
                out.append("p:" + ("!" if "!" in word else "?"))
            flip = 0
            continue
        out.append("w:" + word)
        if flip:
            out.append("n:" + word)
            flip -= 1
        if word in negators:
            flip = NEGATION_SPAN
    for chunk in _PUNCT.split(text):
        for n in CHAR_NGRAMS:
            out += ["c:" + chunk[i : i + n] for i in range(len(chunk) - n + 1)]
    return out


@dataclass(frozen=True, eq=False)
class Model:
    """Feature weights of the Naive Bayes and logistic-regression parts (read-only)."""

    index: dict[str, int]  # feature -> row of the weight arrays
    nb: np.ndarray  # log P(f | pos) - log P(f | neg), snownlp Bayes with add-one smoothing
    lr: np.ndarray  # logistic-regression weight of the feature (features scaled to unit length)
    nb_prior: float
    lr_bias: float
    nb_weight: float
    temperature: float  # logits are divided by this (fitted on out-of-fold predictions)
    meta: dict[str, object]

    def logits(self, feature_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """``z`` for each feature list; an empty list (nothing known) gives 0."""
        rows: list[int] = []
        owner: list[int] = []
        get = self.index.get
        for i, feats in enumerate(feature_lists):
            known = set(map(get, feats))
            known.discard(None)
            rows.extend(known)  # type: ignore[arg-type]
            owner.extend([i] * len(known))
        n = len(feature_lists)
        idx = np.asarray(rows, dtype=np.int64)
        who = np.asarray(owner, dtype=np.int64)
        count = np.bincount(who, minlength=n).astype(np.float64)
        nb = np.bincount(who, weights=self.nb[idx], minlength=n) + self.nb_prior
        lr = (
            np.bincount(who, weights=self.lr[idx], minlength=n) / np.sqrt(np.maximum(count, 1.0)) + self.lr_bias
        )
        return np.where(count > 0, (lr + self.nb_weight * nb) / self.temperature, 0.0)


def model_to_json(model: Model) -> dict[str, object]:
    """The file form of a model: features in index order and rounded weights."""
    features = sorted(model.index, key=model.index.__getitem__)
    return {
        "format": MODEL_FORMAT,
        "meta": model.meta,
        "nb_prior": round(float(model.nb_prior), 6),
        "lr_bias": round(float(model.lr_bias), 6),
        "nb_weight": model.nb_weight,
        "temperature": model.temperature,
        "features": features,
        "nb": [round(float(x), 4) for x in model.nb],
        "lr": [round(float(x), 4) for x in model.lr],
    }


def save_model(model: Model, path: str | Path) -> None:
    """Write ``model`` as gzip'd JSON; the same model always gives the same bytes."""
    raw = json.dumps(model_to_json(model), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    with (
        open(path, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw.encode("utf-8"))


@lru_cache(maxsize=4)
def load_model(path: str = "") -> Model:
    """The model at ``path`` (empty: the one shipped in the package), loaded once per process.

    Raises ConfigError naming the file when it is missing or not a speechqa sentiment model.
    """
    from speechqa.errors import ConfigError

    where = path or MODEL_PATH
    try:
        with gzip.open(where, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where}: sentiment model not found ([sentiment] model)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{where}: not a gzip'd JSON sentiment model ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{where}: not a {MODEL_FORMAT} model")
    features = data["features"]
    return Model(
        index={f: i for i, f in enumerate(features)},
        nb=np.asarray(data["nb"], dtype=np.float64),
        lr=np.asarray(data["lr"], dtype=np.float64),
        nb_prior=float(data["nb_prior"]),
        lr_bias=float(data["lr_bias"]),
        nb_weight=float(data["nb_weight"]),
        temperature=float(data["temperature"]),
        meta=dict(data.get("meta", {})),
    )


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


_NEUTRAL_Z = math.log(NEUTRAL / (1 - NEUTRAL))


def score_texts(texts: Sequence[str], *, model: Model | None = None, use_cues: bool = True,
                vocab: Vocabulary | None = None) -> list[float]:
    """Sentiment in [0, 1] of each text (0.5 and above is positive); 0.5 for nothing to score.

    ``use_cues=False`` gives the bare model (no lexicon, no formula band), for evaluation.
    ``vocab`` defaults to :func:`vocabulary`.
    """
    model = model or load_model()
    vocab = vocab or vocabulary()
    features: list[list[str]] = []
    plan: list[tuple[float, float, bool, bool] | None] = []  # (share of text scored, cue z, formula, neg cue)
    for raw in texts:
        text = normalize(raw)
        n_chars = len(_PUNCT.sub("", text))
        if not n_chars:
            features.append([])
            plan.append(None)
            continue
        if not use_cues:
            features.append(text_features(text, vocab))
            plan.append((1.0, 0.0, False, False))
            continue
        if is_backchannel(text):  # a whole turn of 嗯 / 好的 is neutral, not an opinion
            features.append([])
            plan.append((0.0, 0.0, True, False))
            continue
        rest = _formula_regex(vocab).sub("，", text)
        cue_z = 0.0
        seen: set[tuple[str, bool]] = set()
        negative = False
        reassured: list[tuple[int, int]] = []
        for kind, negated, start, end in cues(rest, vocab):
            if negated and kind in ESCALATION_KINDS:
                reassured.append((start, end))  # "不用投诉" is no threat and no complaint either
            if (kind, negated) in seen:
                continue
            seen.add((kind, negated))
            weight = vocab.cues.weights[kind] * (_NEGATED_SIGN.get(kind, 0.0) if negated else 1.0)
            cue_z += weight
            negative = negative or weight < 0
        for start, end in reversed(reassured):
            rest = rest[:start] + "，" + rest[end:]
        rest_chars = len(_PUNCT.sub("", rest))
        features.append(text_features(rest, vocab) if rest_chars else [])
        plan.append((rest_chars / n_chars, cue_z, rest_chars < n_chars, negative))
    z = model.logits(features)
    out: list[float] = []
    for zi, p in zip(z.tolist(), plan, strict=True):
        if p is None:
            out.append(EMPTY)
            continue
        share, cue_z, formula, negative = p
        # Formula characters vote neutral; what is left votes with the model; cues come on top.
        score = _sigmoid(share * zi + (1.0 - share) * _NEUTRAL_Z + cue_z)
        if formula and share <= 0.5 and not negative:
            score = max(score, 0.45)  # mostly formula: an odd company name must not make it negative
        out.append(score)
    return out


def score_turns(turns: Sequence[Turn], model: Model | None = None,
                vocab: Vocabulary | None = None) -> tuple[Turn, ...]:
    """Copies of ``turns`` with ``sentiment`` set, scored from ``match_text`` (else ``text``),
    to ``TURN_DIGITS`` decimals like the turn's other measures: the outputs carry no float
    noise (0.0022130757492762384 holds six digits of somebody's phone number)."""
    heard = [t for t in turns if not is_unheard(t)]  # a prompt echo says nothing of anyone's mood
    scores = iter(score_texts([t.match_text or t.text for t in heard], model=model, vocab=vocab))
    return tuple(t if is_unheard(t) else _replaced(t, sentiment=round(next(scores), TURN_DIGITS))
                 for t in turns)


TURN_DIGITS = 4


def _content_chars(turn: Turn) -> int:
    return len(_PUNCT.sub("", clause_text(turn.match_text or turn.text)))


def role_sentiment(turns: Sequence[Turn], edge_turns: int) -> RoleSentiment:
    """Start / end (plain mean of the first / last ``edge_turns`` turns), min, and mean.

    The mean is weighted by each turn's characters, so a one-word 嗯 / 好的 counts less than a
    long complaint. Turns without a score and turns of one character or less are ignored.
    """
    scored = [(t.sentiment, _content_chars(t)) for t in turns if t.sentiment is not None]
    scored = [(s, n) for s, n in scored if n > 1]
    if not scored:
        return RoleSentiment()
    values = [s for s, _ in scored]
    k = max(1, edge_turns)
    weights = sum(n for _, n in scored)
    return RoleSentiment(
        start=sum(values[:k]) / len(values[:k]),
        end=sum(values[-k:]) / len(values[-k:]),
        min=min(values),
        mean=sum(s * n for s, n in scored) / weights,
    )


def call_sentiment(turns: Sequence[Turn], settings: SentimentSettings) -> CallSentiment:
    """Per-role sentiment of a scored call, and the customer's trajectory.

    On mono calls (no customer turns) the trajectory comes from the ``unknown``-role turns.
    """
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    by_role = {role: [t for t in ordered if t.role == role] for role in ("customer", "agent", "unknown")}
    customer = role_sentiment(by_role["customer"], settings.edge_turns)
    agent = role_sentiment(by_role["agent"], settings.edge_turns)
    basis = customer if customer.start is not None else role_sentiment(by_role["unknown"], settings.edge_turns)
    trajectory = "unknown"
    if basis.start is not None and basis.end is not None:
        delta = basis.end - basis.start
        if delta > settings.trajectory_delta:
            trajectory = "improved"
        elif delta < -settings.trajectory_delta:
            trajectory = "worsened"
        else:
            trajectory = "flat"
    return CallSentiment(customer=customer, agent=agent, trajectory=trajectory)


# Escalation phrases are also matched by sound (speechqa/phonetic.py), so that the canonical
# phrases of the escalation file find what whisper-base writes as homophones (贡献部 for 工信部,
# 些后转往 for 携号转网, 银刀 for 领导). Only phrases of three or more syllables are safe alone;
# the two-syllable names of a boss count only in a request for one (叫你们X来接电话, 找你们X).
SOUND_MAX_COST = 0.6  # one syllable sharing only its initial or final, or two fuzzy pairs
_BOSS_REACH = 6  # characters after the request verb where the boss may be named
@lru_cache(maxsize=8)
def _request_regex(escalation: Escalation) -> re.Pattern[str]:
    return re.compile(alternation(escalation.boss_requests))


# A sound-alike within SOUND_MAX_COST has at most this many syllables other than the same or a
# fuzzy pair: each such syllable costs at least NASAL_CODA_COST.
_SOUND_MISSES = math.floor(SOUND_MAX_COST / min(NASAL_CODA_COST, SAME_FINAL_COST, SAME_INITIAL_COST) + 1e-6)


@lru_cache(maxsize=8)
def _sound_plan(escalation: Escalation) -> tuple[tuple[tuple[str, str], ...], SoundBank]:
    """The escalation sound cues that can be heard by sound (every character has pinyin), as
    (kind, phrase), and their sound bank: all but ``_SOUND_MISSES`` syllables in line."""
    cues = [(kind, phrase) for kind, phrase in escalation.sounds if phrase_sounds(phrase) is not None]
    wants = [phrase_sounds(phrase) for _, phrase in cues]
    return tuple(cues), SoundBank.of(wants, [len(w) - _SOUND_MISSES for w in wants])  # type: ignore[misc, arg-type]


def _sound_cues(text: str, vocab: Vocabulary) -> list[tuple[str, bool, int, int]]:
    """Escalation cues found by sound: (kind, negated, start, end), like :func:`cues`."""
    esc = vocab.escalation
    sounds = pinyin(text)
    where = syllable_positions(sounds)
    hits: list[tuple[str, int, int]] = []
    plan, bank = _sound_plan(esc)
    for j in bank.candidates([syllable_mask(where)]):
        kind, phrase = plan[j]
        hits.extend((kind, m.start, m.end)
                    for m in sounds_like(text, phrase, bank.needs[j], SOUND_MAX_COST, sounds, where)[:1])
    for req in _request_regex(esc).finditer(text):
        for noun in esc.boss_nouns:
            want = phrase_sounds(noun)
            if want is None:
                continue
            for m in sounds_like(text, noun, len(want) - _SOUND_MISSES, SOUND_MAX_COST, sounds, where,
                                 req.end(), req.end() + _BOSS_REACH):
                heard = text[m.start:m.end]
                asked = text[:m.start].endswith(esc.boss_before) or text.startswith(esc.boss_after, m.end)
                if asked and (heard == noun or not is_common_word(heard)):
                    hits.append(("supervisor", m.start, m.end))
    out = []
    for kind, start, end in hits:
        clause_start = max((i + 1 for i in range(start - 1, -1, -1) if text[i] in _BREAK), default=0)
        out.append((kind, vocab.cues.threat_negator.search(text, clause_start, start) is not None, start, end))
    return out


def escalation_kinds(text: str, vocab: Vocabulary | None = None) -> tuple[str, ...]:
    """The escalation kinds threatened in ``text`` (negated mentions skipped), in lexicon order.

    Spelled cues first; phrases heard as homophones are matched by sound only for the kinds
    the spelling did not find.
    """
    vocab = vocab or vocabulary()
    text = normalize(text)
    found = {kind for kind, negated, _, _ in cues(text, vocab) if kind in ESCALATION_KINDS and not negated}
    if len(found) < len(ESCALATION_KINDS) and any("\u4e00" <= ch <= "\u9fff" for ch in text):
        found |= {kind for kind, negated, _, _ in _sound_cues(text, vocab) if not negated}
    return tuple(kind for kind in ESCALATION_KINDS if kind in found)


def escalations(turns: Sequence[Turn], vocab: Vocabulary | None = None) -> tuple[Event, ...]:
    """One ``escalation`` event per (customer or unknown-role turn, kind); agents never threaten."""
    vocab = vocab or vocabulary()
    events = []
    for turn in turns:
        if turn.role == "agent" or is_unheard(turn):
            continue
        for kind in escalation_kinds(turn.match_text or turn.text, vocab):
            events.append(
                Event(
                    call_id=turn.call_id,
                    type="escalation",
                    role=turn.role,
                    start=turn.start,
                    end=turn.end,
                    detail=kind,
                    turn_id=turn.turn_id,
                )
            )
    return tuple(events)
