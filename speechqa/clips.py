"""Training clips: good and bad examples cut from the night's calls, for trainers.

Candidates come from the scorecard's evidence and from sentiment turnarounds:

- good: a full greeting (``greeting`` passed), a clean verification (``verify``), a proper
  closing (``closing_offer`` and ``thanks``), and de-escalation (an agent's apology followed
  by customer turns clearly happier than before it);
- bad: a forbidden phrase (``no_forbidden`` failed), an agent interruption, an unannounced
  hold (``hold_notice`` failed), a missed verification (``verify`` failed).

A clip is padded by ``pad_s`` on each side and then widened so that it never cuts a word in
half, clamped to the call. ``candidates`` is a pure function of a CallResult; the pipeline
writes the ``training_clips`` table and ``export_clips`` cuts the audio (PyAV, no shell),
muting masked PII spans by default.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from speechqa.calls import CallResult, Turn
from speechqa.errors import SpeechQAError
from speechqa.files import write_atomic, write_text_atomic

PAD_S = 1.0
MIN_S = 2.0
MAX_S = 60.0
MUTE_PAD_S = 0.1
DEESCALATION_RISE = 0.25  # customer sentiment after the apology minus before it
COLUMNS = ["clip_id", "label", "tags", "role", "start", "end", "duration", "excerpt", "call_id", "item_id",
           "agent_id", "agent_name", "team", "started_at", "audio_path"]

# (item_id, outcome) -> (label, tag, role)
RULE_CLIPS = {
    ("greeting", "pass"): ("good", "greeting", "agent"),
    ("verify", "pass"): ("good", "verification", "agent"),
    ("closing_offer", "pass"): ("good", "closing", "agent"),
    ("thanks", "pass"): ("good", "closing", "agent"),
    ("no_forbidden", "fail"): ("bad", "forbidden_phrase", "agent"),
    ("hold_notice", "fail"): ("bad", "unannounced_hold", "agent"),
    ("verify", "fail"): ("bad", "missed_verification", "agent"),
}
_APOLOGY = re.compile(r"抱歉|对不起|不好意思|理解您|别着急|添麻烦|带来不便|请您放心|深表歉意")


@dataclass(frozen=True)
class Clip:
    clip_id: str
    label: str  # good | bad
    tags: str  # ';'-joined
    role: str
    start: float
    end: float
    excerpt: str
    call_id: str
    item_id: str
    agent_id: str
    agent_name: str
    team: str
    started_at: str
    audio_path: str

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 3)


def widen(start: float, end: float, turns: Sequence[Turn], duration: float, pad_s: float = PAD_S,
          min_s: float = MIN_S, max_s: float = MAX_S) -> tuple[float, float]:
    """Pad a span, never cutting a word of any speaker, within [0, duration]."""
    start, end = start - pad_s, end + pad_s
    if end - start < min_s:
        grow = (min_s - (end - start)) / 2
        start, end = start - grow, end + grow
    words = [w for t in turns for w in t.words if w.word.strip()]
    for _ in range(3):  # widening for one word can land inside another
        for w in words:
            if w.start < start < w.end:
                start = w.start
            if w.start < end < w.end:
                end = w.end
    start, end = max(0.0, start), min(duration, end)
    if end - start > max_s:
        end = start + max_s
    return round(start, 3), round(end, 3)


def _excerpt(turns: Sequence[Turn], start: float, end: float) -> str:
    return " / ".join(f"{t.role}: {t.text}" for t in turns if t.end > start and t.start < end)


def _customer_scored(t: Turn) -> bool:
    return t.role == "customer" and t.sentiment is not None


def _deescalations(result: CallResult) -> list[tuple[float, float]]:
    """Agent apologies after which the customer's sentiment rose clearly."""
    turns = result.turns
    found = []
    for i, t in enumerate(turns):
        if t.role != "agent" or not _APOLOGY.search(t.match_text or t.text):
            continue
        before = [u.sentiment for u in turns[max(0, i - 3):i] if _customer_scored(u)]
        after = [u.sentiment for u in turns[i + 1:i + 5] if _customer_scored(u)]
        if before and after and max(after) - min(before) >= DEESCALATION_RISE:
            last = next(u for u in turns[i + 1:i + 5] if u.role == "customer" and u.sentiment == max(after))
            found.append((t.start, last.end))
    return found


def candidates(result: CallResult, pad_s: float = PAD_S, min_s: float = MIN_S, max_s: float = MAX_S
               ) -> tuple[Clip, ...]:
    """The call's training clips, in time order, with deterministic ids."""
    meta = result.recording.meta_dict
    spans: list[tuple[str, str, str, str, float, float]] = []  # label, tag, role, item, start, end
    for rr in result.compliance.results if result.compliance else ():
        kind = RULE_CLIPS.get((rr.item_id, rr.outcome))
        if kind and rr.evidence_start is not None and rr.evidence_end is not None:
            spans.append((kind[0], kind[1], kind[2], rr.item_id, rr.evidence_start, rr.evidence_end))
    for e in result.events:
        if e.type == "interruption" and e.role == "agent":
            spans.append(("bad", "agent_interruption", "agent", "", e.start, e.end))
    for start, end in _deescalations(result):
        spans.append(("good", "de_escalation", "agent", "apology", start, end))
    merged: dict[tuple[str, float, float], list] = {}
    for label, tag, role, item, start, end in spans:
        lo, hi = widen(start, end, result.turns, result.duration_s, pad_s, min_s, max_s)
        key = (label, lo, hi)
        if key in merged:  # the same stretch for two reasons (closing_offer and thanks): one clip
            merged[key][0].append(tag)
            continue
        merged[key] = [[tag], role, item]
    clips = []
    counts: dict[str, int] = {}
    for (label, lo, hi), (tags, role, item) in sorted(merged.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        tag = tags[0]
        counts[tag] = counts.get(tag, 0) + 1
        clips.append(Clip(
            clip_id=f"{result.recording.call_id}-{tag}-{counts[tag]:02d}", label=label,
            tags=";".join(dict.fromkeys(tags)), role=role, start=lo, end=hi,
            excerpt=_excerpt(result.turns, lo, hi), call_id=result.recording.call_id, item_id=item,
            agent_id=meta.get("agent_id", ""), agent_name=meta.get("agent_name", ""), team=meta.get("team", ""),
            started_at=meta.get("started_at", ""), audio_path=str(result.recording.path),
        ))
    return tuple(clips)


def clips_frame(results: Iterable[CallResult], pad_s: float = PAD_S) -> pd.DataFrame:
    rows = [asdict(c) | {"duration": c.duration} for r in results for c in candidates(r, pad_s)]
    df = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("start", "end", "duration"):
        df[column] = df[column].astype("float64")
    return df


def safe_name(clip_id: str) -> str:
    """An ASCII file name for a clip: unsafe characters dropped, a short hash keeps it unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._-")[:80] or "clip"
    return f"{stem}-{hashlib.sha1(clip_id.encode('utf-8')).hexdigest()[:8]}"


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Samples (channels, frames) as float32 at the file's own rate."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            layout = "stereo" if stream.codec_context.channels == 2 else "mono"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            chunks = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise SpeechQAError(f"{path}: cannot read the recording for clips ({exc})") from None
    return np.concatenate(chunks, axis=1).astype(np.float32), rate


def _write(path: Path, samples: np.ndarray, rate: int, fmt: str) -> None:
    import av

    codec = {"wav": "pcm_s16le", "mp3": "libmp3lame"}[fmt]
    layout = "stereo" if samples.shape[0] == 2 else "mono"

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format=fmt) as out:
            try:
                stream = out.add_stream(codec, rate=rate, layout=layout)
            except (ValueError, av.error.FFmpegError) as exc:
                raise SpeechQAError(f"{fmt}: no {codec} encoder in this FFmpeg ({exc})") from None
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)

    write_atomic(path, encode)


def export_clips(index: pd.DataFrame, events: pd.DataFrame, dest: Path, *, tag: str | None = None,
                 label: str | None = None, team: str | None = None, since: str | None = None,
                 mute_pii: bool = True, fmt: str = "wav") -> pd.DataFrame:
    """Cut the chosen clips into ``dest`` with ``clips.csv`` and ``clips.jsonl`` beside them."""
    if fmt not in ("wav", "mp3"):
        raise SpeechQAError(f"format must be wav or mp3, got {fmt!r}")
    chosen = index
    if tag:
        chosen = chosen[chosen.tags.fillna("").str.split(";").apply(lambda tags: tag in tags)]
    if label:
        chosen = chosen[chosen.label == label]
    if team:
        chosen = chosen[chosen.team == team]
    if since:
        chosen = chosen[chosen.started_at.fillna("").str[:10] >= since]
    dest.mkdir(parents=True, exist_ok=True)
    masked = events[events.type == "redaction"] if len(events) else events
    rows = []
    cache: dict[str, tuple[np.ndarray, int]] = {}
    for clip in chosen.itertuples(index=False):
        if clip.audio_path not in cache:
            cache = {clip.audio_path: _read(Path(clip.audio_path))}
        audio, rate = cache[clip.audio_path]
        piece = audio[:, int(clip.start * rate): int(clip.end * rate)].copy()
        muted = 0
        if mute_pii and len(masked):
            for e in masked[masked.call_id == clip.call_id].itertuples():
                lo = max(0, int((e.start - MUTE_PAD_S - clip.start) * rate))
                hi = min(piece.shape[1], int((e.end + MUTE_PAD_S - clip.start) * rate))
                if hi > lo:
                    piece[:, lo:hi] = 0.0
                    muted += 1
        name = f"{safe_name(clip.clip_id)}.{fmt}"
        _write(dest / name, piece, rate, fmt)
        rows.append(clip._asdict() | {"file": name, "muted_spans": muted})
    out = pd.DataFrame(rows, columns=[*index.columns, "file", "muted_spans"])
    write_atomic(dest / "clips.csv", lambda p: out.to_csv(p, index=False, encoding="utf-8-sig"))
    write_text_atomic(dest / "clips.jsonl", "".join(
        json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in out.to_dict("records")))
    return out
