"""Training clips: good and bad examples cut from the night's calls, for trainers.

Candidates come from the scorecard's evidence, the call's events and sentiment turnarounds:

- from the scorecard: each item's ``[sections.items.clips]`` table names the tag of the clip its
  result makes. ``pass = "greeting"``: a passed item is a good clip of its evidence turn; items
  sharing a pass tag must all pass and make one clip (the shipped ``closing_offer`` and
  ``thanks``, tag ``closing``). ``fail = "forbidden_phrase"``: a failed item is a bad clip of
  its evidence (an unannounced hold's evidence is the hold);
- de-escalation (good): an agent's apology after which the customer's sentiment rose clearly
  within a few turns; apologies are the evidence of the item marked ``apology = true`` and any
  agent turn saying one of that item's phrases;
- an agent interruption (bad): an ``interruption`` event of the agent.

So a site scorecard with other item ids gets clips as soon as its items carry clip tags.

A clip is its evidence padded by ``pad_s`` on each side, grown to ``min_s``, widened so that it
never cuts a word of either speaker, clamped to the call and capped at ``max_s``.
``candidates`` is a pure function of a CallResult and ``clips_frame`` builds the
``training_clips`` table from them. ``export_clips`` cuts the chosen clips' audio with PyAV
(API calls, no shell), mutes masked PII spans by default and writes ``clips.csv`` and
``clips.jsonl`` beside the files, every file atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd

from speechqa.calls import CallResult, Turn, Word
from speechqa.compliance.schema import Item, Phrases, Scorecard, load_scorecard, walk
from speechqa.config import ClipSettings
from speechqa.errors import AudioError, SpeechQAError
from speechqa.files import write_atomic, write_text_atomic
from speechqa.vocab import alternation

MUTE_PAD_S = 0.1  # masked PII is muted this much wider on each side: word timestamps are approximate
DEESCALATION_RISE = 0.25  # the customer's sentiment after an apology minus before it
DEESCALATION_TURNS = 4  # ... within this many turns after the apology
FORMATS = {"wav": "pcm_s16le", "mp3": "libmp3lame"}
COLUMNS = ["clip_id", "label", "tags", "role", "start", "end", "duration", "excerpt", "call_id", "item_id",
           "agent_id", "agent_name", "team", "started_at", "night", "audio_path"]


_SCORECARDS: dict[str, Scorecard] = {}  # sha256 -> the scorecards this process scored calls with


def use_scorecard(scorecard: Scorecard) -> None:
    """Make ``scorecard``'s clip tags the ones used for calls it scored (by its sha256)."""
    _SCORECARDS[scorecard.sha256] = scorecard


@lru_cache(maxsize=1)
def _shipped_scorecard() -> Scorecard:
    return load_scorecard()


def _scorecard_for(result: CallResult, scorecard: Scorecard | None) -> Scorecard:
    """The scorecard given, else the one that scored the call, else the shipped one."""
    if scorecard is not None:
        return scorecard
    sha = result.compliance.scorecard_sha256 if result.compliance else ""
    return _SCORECARDS.get(sha) or _shipped_scorecard()


@lru_cache(maxsize=8)
def _apology_phrases(item: Item) -> tuple[str, ...]:
    """The phrases of an apology item's pass condition, as match text without spaces."""
    from speechqa.text import normalize

    found = [normalize(p).replace(" ", "") for cond in walk(item.passes) if isinstance(cond, Phrases)
             and cond.scope.role != "customer" for group in cond.groups for p in group]
    return tuple(dict.fromkeys(p for p in found if p))


@lru_cache(maxsize=32)
def _apology_pattern(items: tuple[Item, ...]) -> re.Pattern[str]:
    """One pattern for the apology phrases of ``items``: it finds a match exactly when some
    phrase is in the text (cached, instead of a test per phrase per turn)."""
    phrases = tuple(p for item in items for p in _apology_phrases(item))
    return re.compile(alternation(phrases))


@dataclass(frozen=True)
class Clip:
    """One training example: a span of one call, labelled good or bad, with its context."""

    clip_id: str  # {call_id}-{tag}-{n:02d}
    label: str  # good | bad
    tags: str  # ';'-joined
    role: str  # whose behaviour the clip shows
    start: float
    end: float
    excerpt: str  # "agent: … / customer: …", PII-masked like the turns
    call_id: str
    item_id: str  # the scorecard item(s) it comes from, ';'-joined; empty for events
    agent_id: str
    agent_name: str
    team: str
    started_at: str
    night: str  # YYYY-MM-DD: the manifest's night, else the date of started_at
    audio_path: str

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 3)


class _Span(NamedTuple):
    label: str
    tag: str
    role: str
    item_id: str
    start: float
    end: float


# -- boundaries ------------------------------------------------------------------------------


def _floor_ms(t: float) -> float:
    """``t`` rounded down to the millisecond (2.0 written as 1.9999999999999996 is 2.0), never
    above ``t``: a clip must still hold the evidence it was cut for."""
    v = math.floor(t * 1000 + 1e-6) / 1000
    return v if v <= t else round(v - 0.001, 3)


def _ceil_ms(t: float) -> float:
    """``t`` rounded up to the millisecond, never below ``t``."""
    v = math.ceil(t * 1000 - 1e-6) / 1000
    return v if v >= t else round(v + 0.001, 3)


def widen(start: float, end: float, words: Sequence[Word], duration: float,
          settings: ClipSettings | None = None) -> tuple[float, float]:
    """A clip's bounds for the span ``start``-``end``: padded, at least ``min_s`` long, never
    inside a word of ``words``, within [0, duration] and at most ``max_s`` long."""
    s = settings or ClipSettings()
    lo, hi = start - s.pad_s, max(start, end) + s.pad_s
    if hi - lo < s.min_s:
        grow = (s.min_s - (hi - lo)) / 2
        lo, hi = lo - grow, hi + grow
    if lo < 0:  # keep the length where the call allows, by moving the window inside it
        lo, hi = 0.0, min(duration, hi - lo)
    if hi > duration:
        lo, hi = max(0.0, lo - (hi - duration)), duration
    spoken = sorted((w for w in words if w.end > w.start), key=lambda w: w.start)
    changed = True
    while changed:  # widening for one word can land inside another (overlapping speakers)
        changed = False
        for w in spoken:
            if w.start < lo < w.end:
                lo, changed = w.start, True
            if w.start < hi < w.end:
                hi, changed = w.end, True
    lo, hi = max(0.0, lo), min(duration, hi)
    if hi - lo > s.max_s:
        hi = lo + s.max_s
        while cut := [w.start for w in spoken if lo < w.start < hi < w.end]:
            hi = min(cut)  # end before the word rather than in it
    return _floor_ms(lo), _ceil_ms(hi)


def _excerpt(turns: Sequence[Turn], start: float, end: float) -> str:
    return " / ".join(f"{t.role}: {t.text}" for t in turns if t.end > start and t.start < end)


# -- candidates ------------------------------------------------------------------------------


def _evidence(result: CallResult, item_id: str, outcome: str) -> list[tuple[float, float, Turn | None]]:
    """Evidence spans of one item's results: the matched span, else the evidence turn."""
    by_id = {t.turn_id: t for t in result.turns}
    found = []
    for rr in result.compliance.results if result.compliance else ():
        if rr.item_id != item_id or rr.outcome != outcome:
            continue
        turn = by_id.get(rr.evidence_turn_id)
        if rr.evidence_start is not None and rr.evidence_end is not None:
            found.append((rr.evidence_start, max(rr.evidence_start, rr.evidence_end), turn))
        elif turn is not None:
            found.append((turn.start, turn.end, turn))
    return found


def _rule_spans(result: CallResult, card: Scorecard) -> list[_Span]:
    """Clips from the items' clip tags: one good clip per pass tag whose items all passed
    (their first evidence turns, together), one bad clip per failed item's evidence."""
    spans = []
    by_tag: dict[str, list[str]] = {}
    for item in card.items:
        if item.clips.pass_tag:
            by_tag.setdefault(item.clips.pass_tag, []).append(item.id)
    for tag, item_ids in by_tag.items():
        parts = [_evidence(result, item_id, "pass") for item_id in item_ids]
        if not all(parts):
            continue
        ends = [(min(s, t.start) if t else s, max(e, t.end) if t else e) for p in parts for s, e, t in p[:1]]
        spans.append(_Span("good", tag, "agent", ";".join(item_ids), min(s for s, _ in ends),
                           max(e for _, e in ends)))
    for item in card.items:
        if item.clips.fail_tag:
            spans.extend(_Span("bad", item.clips.fail_tag, "agent", item.id, start, end)
                         for start, end, _ in _evidence(result, item.id, "fail"))
    return spans


def _interruptions(result: CallResult) -> list[_Span]:
    return [_Span("bad", "agent_interruption", "agent", "", e.start, e.end)
            for e in result.events if e.type == "interruption" and e.role == "agent"]


def _deescalations(result: CallResult, card: Scorecard) -> list[_Span]:
    """Agent apologies after which the customer's sentiment rose clearly within a few turns.

    "Before" is the customer's last scored turn before the apology, and it must be negative;
    the clip runs from the apology to the end of the first customer turn at least
    DEESCALATION_RISE happier.
    """
    items = [item for item in card.items if item.clips.apology]
    if not items:
        return []
    turns = sorted(result.turns, key=lambda t: (t.start, t.end))
    ids = {item.id for item in items}
    apology_turns = {rr.evidence_turn_id: rr.item_id
                     for rr in (result.compliance.results if result.compliance else ())
                     if rr.item_id in ids and rr.outcome == "pass" and rr.evidence_turn_id}
    says_apology = _apology_pattern(tuple(items)).search  # any of the phrases in the text
    spans: list[_Span] = []
    for i, t in enumerate(turns):
        from_rule = apology_turns.get(t.turn_id, "")
        said = (t.match_text or t.text).replace(" ", "")
        if t.role != "agent" or not (from_rule or says_apology(said)):
            continue
        if spans and t.start < spans[-1].end:  # a second apology inside the same turnaround
            continue
        before = [u.sentiment for u in turns[:i] if u.role == "customer" and u.sentiment is not None]
        if not before or before[-1] >= 0.5:
            continue
        happier = [u for u in turns[i + 1:i + 1 + DEESCALATION_TURNS] if u.role == "customer"
                   and u.sentiment is not None and u.sentiment - before[-1] >= DEESCALATION_RISE]
        if happier:
            spans.append(_Span("good", "de_escalation", "agent", from_rule, t.start, happier[0].end))
    return spans


def _night(meta: dict[str, str]) -> str:
    for text in (meta.get("night", ""), meta.get("started_at", "")[:10]):
        try:
            return date.fromisoformat(text.strip()).isoformat()
        except ValueError:
            continue
    return ""


def candidates(result: CallResult, settings: ClipSettings | None = None,
               scorecard: Scorecard | None = None) -> tuple[Clip, ...]:
    """The call's training clips in time order, with deterministic ids.

    Two reasons for the same stretch with the same label (a clip that is both a greeting
    and a verification) make one clip with both tags. ``scorecard`` (default: the one that
    scored the call, see :func:`use_scorecard`, else the shipped one) gives the clip tags.
    """
    s = settings or ClipSettings()
    card = _scorecard_for(result, scorecard)
    rec, meta = result.recording, result.recording.meta_dict
    words = [w for t in result.turns for w in t.words]
    turns = sorted(result.turns, key=lambda t: (t.start, t.end))
    merged: dict[tuple[str, float, float], tuple[list[str], str, list[str]]] = {}
    for span in [*_rule_spans(result, card), *_interruptions(result), *_deescalations(result, card)]:
        lo, hi = widen(span.start, span.end, words, result.duration_s, s)
        if hi <= lo:
            continue
        tags, _, items = merged.setdefault((span.label, lo, hi), ([], span.role, []))
        tags.append(span.tag)
        if span.item_id:
            items.append(span.item_id)
    clips = []
    counts: dict[str, int] = {}
    for (label, lo, hi), (tags, role, items) in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                                        kv[0][0], kv[1][0])):
        counts[tags[0]] = counts.get(tags[0], 0) + 1
        clips.append(Clip(
            clip_id=f"{rec.call_id}-{tags[0]}-{counts[tags[0]]:02d}", label=label,
            tags=";".join(dict.fromkeys(tags)), role=role, start=lo, end=hi, excerpt=_excerpt(turns, lo, hi),
            call_id=rec.call_id, item_id=";".join(dict.fromkeys(items)), agent_id=meta.get("agent_id", ""),
            agent_name=meta.get("agent_name", ""), team=meta.get("team", ""),
            started_at=meta.get("started_at", ""), night=_night(meta), audio_path=str(rec.path),
        ))
    return tuple(clips)


def clips_frame(results: Iterable[CallResult], settings: ClipSettings | None = None,
                scorecard: Scorecard | None = None) -> pd.DataFrame:
    """The ``training_clips`` table: every call's candidates, one row per clip."""
    values = operator.attrgetter(*COLUMNS)  # a Clip's fields are plain values: no asdict deep copy
    rows = [values(c) for r in results for c in candidates(r, settings, scorecard)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("start", "end", "duration"):
        df[column] = df[column].astype("float64")
    return df


# -- export ----------------------------------------------------------------------------------


def safe_name(clip_id: str) -> str:
    """An ASCII file stem for a clip: only ``[A-Za-z0-9._-]``, no leading dot, and a short hash
    of the full id so that ids that sanitise alike never share a file."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._-")[:80] or "clip"
    return f"{stem}-{hashlib.sha1(clip_id.encode('utf-8')).hexdigest()[:8]}"


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A text column, empty where the index (an older one) lacks it."""
    if name not in df.columns:
        return pd.Series("", index=df.index)
    return df[name].fillna("").astype(str)


def select_clips(index: pd.DataFrame, *, tag: str | None = None, label: str | None = None,
                 team: str | None = None, since: str | None = None) -> pd.DataFrame:
    """The rows of a ``training_clips`` table that pass the filters (all of them when none)."""
    if label and label not in ("good", "bad"):
        raise SpeechQAError(f"label must be good or bad, got {label!r}")
    chosen = index
    if tag:
        chosen = chosen[_column(chosen, "tags").str.split(";").apply(lambda tags: tag in tags)]
    if label:
        chosen = chosen[_column(chosen, "label") == label]
    if team:
        chosen = chosen[_column(chosen, "team") == team]
    if since:
        try:
            day = date.fromisoformat(since).isoformat()
        except ValueError:
            raise SpeechQAError(f"since must be a date YYYY-MM-DD, got {since!r}") from None
        started = _column(chosen, "started_at").str[:10]
        chosen = chosen[started.where(started != "", _column(chosen, "night")) >= day]
    return chosen


def _redactions(events: pd.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """Masked PII spans per call, from the ``events`` table."""
    if events.empty:
        return {}
    missing = {"call_id", "type", "start", "end"} - set(events.columns)
    if missing:
        raise SpeechQAError(f"events table lacks {', '.join(sorted(missing))}: cannot mute masked PII")
    spans: dict[str, list[tuple[float, float]]] = {}
    for e in events[events["type"] == "redaction"].itertuples(index=False):
        if pd.notna(e.start) and pd.notna(e.end):
            spans.setdefault(str(e.call_id), []).append((float(e.start), float(e.end)))
    return spans


def _check_encoder(fmt: str) -> None:
    import av

    if fmt not in FORMATS:
        raise SpeechQAError(f"format must be {' or '.join(FORMATS)}, got {fmt!r}")
    if FORMATS[fmt] not in av.codecs_available:
        raise SpeechQAError(f"format {fmt}: this FFmpeg (PyAV) has no {FORMATS[fmt]} encoder; use --format wav")


class _Source(NamedTuple):
    samples: np.ndarray  # (channels, frames) float32 at the recording's own rate
    rate: int
    layout: str


def _decode_source(path: Path) -> _Source:
    """The whole recording at its own sample rate, every channel."""
    import av

    from speechqa.audio import decode

    if not path.is_file():
        raise AudioError(f"{path}: recording not found; export where the batch's audio paths resolve")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            ctx = container.streams.audio[0].codec_context
            rate, channels, layout = ctx.sample_rate, ctx.channels, ctx.layout.name
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise AudioError(f"{path}: cannot read the recording for clips ({exc})") from None
    audio = decode(path, rate)
    return _Source(audio.samples, rate, {1: "mono", 2: "stereo"}.get(channels, layout))


def _encode(path: Path, samples: np.ndarray, rate: int, layout: str, fmt: str) -> None:
    """Write ``samples`` (channels, frames) as ``fmt`` via a temp file renamed into place."""
    import av

    def write(tmp: Path) -> None:
        try:
            with av.open(str(tmp), mode="w", format=fmt) as out:
                added = out.add_stream(FORMATS[fmt], rate=rate, layout=layout)
                stream = cast("av.audio.stream.AudioStream", added)
                step = stream.codec_context.frame_size or 4096
                for at in range(0, samples.shape[1], step):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, at:at + step]),
                                                       format="fltp", layout=layout)
                    frame.sample_rate, frame.pts = rate, at
                    for packet in stream.encode(frame):
                        out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            raise SpeechQAError(f"{path.name}: cannot encode {fmt} at {rate} Hz, {layout} ({exc})") from None

    write_atomic(path, write)


def _cut(source: _Source, clip: Any, masked: Sequence[tuple[float, float]]) -> tuple[np.ndarray, int]:
    """The clip's samples, masked spans zeroed on every channel, and how many spans were muted."""
    rate, n = source.rate, source.samples.shape[1]
    lo, hi = max(0, round(float(clip.start) * rate)), min(n, round(float(clip.end) * rate))
    if hi <= lo:
        raise AudioError(f"clip {clip.clip_id}: {clip.start}-{clip.end}s is outside its recording "
                         f"({n / rate:.2f}s); the index does not match the audio")
    piece = source.samples[:, lo:hi].copy()
    muted = 0
    for start, end in masked:
        a = max(0, math.floor((start - MUTE_PAD_S) * rate) - lo)
        b = min(piece.shape[1], math.ceil((end + MUTE_PAD_S) * rate) - lo)
        if b > a:
            piece[:, a:b] = 0.0
            muted += 1
    return piece, muted


def export_clips(index: pd.DataFrame, events: pd.DataFrame, dest: Path, *, tag: str | None = None,
                 label: str | None = None, team: str | None = None, since: str | None = None,
                 mute_pii: bool = True, fmt: str = "wav") -> pd.DataFrame:
    """Cut the chosen clips of a ``training_clips`` table into ``dest``.

    Each clip becomes ``dest/<safe name>.<fmt>`` at its recording's sample rate and channel
    count (WAV: 16-bit PCM). With ``mute_pii``, every masked PII span of the ``events`` table
    (type ``redaction``) is zeroed on all channels, MUTE_PAD_S wider on each side.
    ``clips.csv`` (UTF-8 with BOM) and ``clips.jsonl`` list the exported rows, with ``file``
    and ``muted_spans`` added; the same rows are returned.
    """
    _check_encoder(fmt)
    chosen = select_clips(index, tag=tag, label=label, team=team, since=since).reset_index(drop=True)
    masked = _redactions(events) if mute_pii else {}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    # Recording by recording, so that each is decoded once and only one is held in memory.
    for path, group in chosen.groupby(_column(chosen, "audio_path"), sort=False):
        source = _decode_source(Path(path))
        for clip in group.itertuples():
            piece, muted = _cut(source, clip, masked.get(str(clip.call_id), ()))
            name = f"{safe_name(str(clip.clip_id))}.{fmt}"
            _encode(dest / name, piece, source.rate, source.layout, fmt)
            row = {k: v for k, v in clip._asdict().items() if k != "Index"}
            rows.append(row | {"file": name, "muted_spans": muted, "_order": clip.Index})
    out = pd.DataFrame(sorted(rows, key=lambda r: r["_order"]), columns=[*index.columns, "file", "muted_spans"])
    write_atomic(dest / "clips.csv", lambda p: out.to_csv(p, index=False, encoding="utf-8-sig"))
    records = out.astype(object).where(out.notna(), None).to_dict("records")
    write_text_atomic(dest / "clips.jsonl", "".join(
        json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
    return out
