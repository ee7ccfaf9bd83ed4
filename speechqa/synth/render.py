"""Render scripted calls into telephone-quality G.711 µ-law WAVs plus ground-truth JSON.

The pipeline per call: TTS each line (24 kHz) -> trim -> anti-aliased decimation to 8 kHz
-> level per party/mood -> place on a timeline (gaps, barge-ins, holds) -> telephone
band-pass per leg -> faint line noise -> stereo (one leg per channel) or mono sum -> µ-law.
Everything random comes from one generator seeded by (seed, call_id), so a render is
reproducible.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import tomllib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .tts import SAMPLE_RATE as TTS_RATE
from .tts import VoiceSpec

OUT_RATE = 8000
ROLES = ("agent", "customer")
SCRIPT_TAGS = ("greeting", "self_id", "verify", "apology", "hold_notice", "closing_offer", "thanks")
EVENT_TAGS = (
    "complaint_threat",
    "regulator_threat",
    "media_threat",
    "lawyer_threat",
    "supervisor_request",
    "cancel_threat",
)
# Customer tags that make an apology/empathy statement applicable.
COMPLAINT_TAGS = ("complaint", *EVENT_TAGS)
PII_TYPES = ("phone", "id", "bank")
CSV_COLUMNS = (
    "call_id",
    "file",
    "agent_id",
    "agent_name",
    "team",
    "agent_hire_date",
    "customer_tier",
    "started_at",
    "direction",
    "queue",
)

# Kokoro has no emotion control, so mood is performed with speaking rate and loudness.
# (speed factor, gain dB)
MOOD_STYLE: dict[str, tuple[float, float]] = {
    "neutral": (1.0, 0.0),
    "polite": (0.97, 0.0),
    "calm": (0.95, -1.0),
    "relieved": (0.95, -0.5),
    "anxious": (1.1, 1.5),
    "impatient": (1.1, 2.5),
    "angry": (1.12, 5.0),
    "rude": (1.08, 2.5),
    "bored": (0.92, -2.0),
}

SPEECH_RMS_DBFS = -22.0  # typical active-speech level on a telephone leg
SILENCE_EVENT_S = 5.0  # every quiet gap at least this long is reported
LONG_SILENCE_S = 10.0  # a gap this long needs a hold announcement


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Line:
    role: str
    text: str
    mood: str = "neutral"
    rate: float | None = None  # Kokoro speed; None -> speaker's rate x mood
    gap_s: float | None = None  # silence before the line; negative = barge-in overlap
    overlap_s: float | None = None  # alternative spelling of a barge-in (gap = -overlap)
    tags: tuple[str, ...] = ()
    hold_s: float = 0.0  # line noise only for this long after the line (a hold)
    volume_db: float = 0.0  # e.g. +6 for a shouting customer
    noise_db: float | None = None  # background noise (dBFS) under this line on its leg
    say: str | None = None  # what the TTS reads if it must differ from the script text


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    team: str
    hire_date: str


@dataclass(frozen=True)
class Scenario:
    id: str
    call_id: str
    business: str
    company: str
    layout: str
    agent_quality: str
    mood_arc: str
    agent_voice: VoiceSpec
    customer_voice: VoiceSpec
    lines: tuple[Line, ...]
    agent_channel: int = 0
    agent_rate: float = 1.0
    customer_rate: float = 1.0
    agent_gain_db: float = 0.0
    customer_gain_db: float = -3.0
    line_noise_db: float | None = None  # None -> drawn per call
    agent_id: str = ""
    customer_tier: str = "normal"
    started_at: str = ""
    direction: str = "inbound"
    queue: str = ""


@dataclass(frozen=True)
class ScenarioFile:
    agents: tuple[Agent, ...]
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True)
class RenderedTurn:
    index: int
    line: Line
    mood: str
    rate: float
    start: float  # seconds, tight speech extent
    end: float


@dataclass(frozen=True)
class Timeline:
    turns: tuple[RenderedTurn, ...]
    holds: tuple[tuple[float, float, bool], ...]  # (start, end, announced)
    duration: float


@dataclass(frozen=True)
class RenderedCall:
    scenario: Scenario
    audio: np.ndarray = field(repr=False)  # (channels, samples) float at OUT_RATE
    truth: dict[str, Any] = field(repr=False)


# ------------------------------------------------------------------ scenario file


def _voice(raw: dict[str, Any], role: str) -> VoiceSpec:
    blend = raw.get(f"{role}_blend")
    if blend:
        return VoiceSpec(raw[f"{role}_voice"], blend["voice"], float(blend["weight"]))
    return VoiceSpec(raw[f"{role}_voice"])


def _line(raw: dict[str, Any], where: str) -> Line:
    allowed = set(Line.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown line keys {sorted(unknown)}")
    if raw.get("role") not in ROLES:
        raise ValueError(f"{where}: role must be one of {ROLES}")
    return Line(**{**raw, "tags": tuple(raw.get("tags", ()))})


def parse_scenarios(text: str) -> ScenarioFile:
    """Parse and validate a scenario TOML document."""
    doc = tomllib.loads(text)
    agents = tuple(Agent(**a) for a in doc.get("agents", []))
    scenarios = []
    for raw in doc.get("scenario", []):
        sid = raw["id"]
        lines = tuple(_line(ln, f"{sid} line {i}") for i, ln in enumerate(raw["lines"]))
        keys = {k: v for k, v in raw.items() if k in Scenario.__dataclass_fields__}
        keys.update(
            lines=lines,
            agent_voice=_voice(raw, "agent"),
            customer_voice=_voice(raw, "customer"),
        )
        sc = Scenario(**keys)
        if sc.layout not in ("stereo", "mono"):
            raise ValueError(f"{sid}: layout must be stereo or mono")
        if sc.agent_channel not in (0, 1):
            raise ValueError(f"{sid}: agent_channel must be 0 or 1")
        for i, ln in enumerate(lines):
            for tag in ln.tags:
                if tag.startswith("pii:"):
                    extract_pii(ln.text, tag[4:])  # raises on a malformed synthetic number
                elif tag.startswith("forbidden:") and tag[10:] not in ln.text:
                    raise ValueError(
                        f"{sid} line {i}: forbidden phrase {tag[10:]!r} not in the text"
                    )
                elif not (
                    tag in SCRIPT_TAGS or tag in COMPLAINT_TAGS or tag.startswith("forbidden:")
                ):
                    raise ValueError(f"{sid} line {i}: unknown tag {tag!r}")
        scenarios.append(sc)
    ids = [s.call_id for s in scenarios]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate call_id in scenario file")
    return ScenarioFile(agents=agents, scenarios=tuple(scenarios))


def load_scenarios(path: Path) -> ScenarioFile:
    return parse_scenarios(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- PII

_CN_DIGIT = dict(zip("零〇一幺二两三四五六七八九叉", "0011223456789X", strict=True))
_PII_PATTERN = {
    "phone": r"(?<![\dX])1[3-9]\d{9}(?![\dX])",
    "id": r"(?<![\dX])\d{17}[\dX](?![\dX])",
    "bank": r"(?<![\dX])\d{16,19}(?![\dX])",
}


def id_checksum_ok(value: str) -> bool:
    """GB 11643 check character of an 18-digit resident ID."""
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(value[:17], weights, strict=True))
    return "10X98765432"[total % 11] == value[17]


def luhn_ok(value: str) -> bool:
    digits = [int(d) for d in value][::-1]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
    )
    return value.isdigit() and total % 10 == 0


def normalize_digits(text: str) -> str:
    """Chinese digit characters -> Arabic, and join digit groups split by spaces/dashes."""
    s = "".join(_CN_DIGIT.get(c, c) for c in text).replace("x", "X")
    return re.sub(r"(?<=\d)[\s-]+(?=[\dX])", "", s)


def extract_pii(text: str, kind: str) -> str:
    """The synthetic number of this kind in a line (Arabic or Chinese digits), validated."""
    if kind not in PII_TYPES:
        raise ValueError(f"unknown pii type {kind!r}")
    m = re.search(_PII_PATTERN[kind], normalize_digits(text))
    if not m:
        raise ValueError(f"no {kind} number in {text!r}")
    value = m.group(0)
    valid = {"phone": lambda v: True, "id": id_checksum_ok, "bank": luhn_ok}[kind]
    if not valid(value):
        raise ValueError(f"{kind} number {value} fails its checksum")
    return value


# ------------------------------------------------------------------------- DSP


def lowpass_fir(cutoff_hz: float, sr: int, taps: int = 121, beta: float = 8.0) -> np.ndarray:
    """Kaiser-windowed sinc low-pass, unity DC gain."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff_hz / sr * np.sinc(2 * cutoff_hz / sr * n) * np.kaiser(taps, beta)
    return h / h.sum()


def decimate(audio: np.ndarray, factor: int, sr_in: int) -> np.ndarray:
    """Anti-aliased integer-factor downsampling (24 kHz -> 8 kHz is factor 3)."""
    if factor == 1:
        return np.asarray(audio, dtype=np.float64)
    # Cut at 92% of the new Nyquist so nothing above 4 kHz folds back into the band.
    h = lowpass_fir(0.46 * sr_in / factor, sr_in)
    return np.convolve(audio, h, mode="same")[::factor]


def band_mask(n: int, sr: int, lo: float, hi: float, edge: float = 150.0) -> np.ndarray:
    """rfft-domain gain: 1 inside [lo, hi], raised-cosine roll-off `edge` Hz wide outside."""
    f = np.fft.rfftfreq(n, 1 / sr)
    g = np.ones_like(f)
    below = f < lo
    g[below] = 0.5 * (1 + np.cos(np.pi * np.clip((lo - f[below]) / edge, 0, 1)))
    above = f > hi
    g[above] = 0.5 * (1 + np.cos(np.pi * np.clip((f[above] - hi) / edge, 0, 1)))
    return g


def telephone_band(
    audio: np.ndarray, sr: int = OUT_RATE, lo: float = 300.0, hi: float = 3400.0
) -> np.ndarray:
    """Zero-phase 300-3400 Hz band-pass of a whole track (the handset/line response)."""
    if audio.size == 0:
        return audio
    return np.fft.irfft(np.fft.rfft(audio) * band_mask(audio.size, sr, lo, hi), n=audio.size)


def band_noise(
    rng: np.random.Generator,
    n: int,
    level_dbfs: float,
    sr: int = OUT_RATE,
    lo: float = 300.0,
    hi: float = 3400.0,
    tilt: float = 0.0,
) -> np.ndarray:
    """Gaussian noise shaped to a band at an RMS level; tilt > 0 darkens it (street/room)."""
    if n == 0:
        return np.zeros(0)
    spec = np.fft.rfft(rng.standard_normal(n)) * band_mask(n, sr, lo, hi)
    if tilt:
        f = np.maximum(np.fft.rfftfreq(n, 1 / sr), lo)
        spec *= (lo / f) ** tilt
    x = np.fft.irfft(spec, n=n)
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    return x * (10 ** (level_dbfs / 20) / rms)


def active_rms(audio: np.ndarray, sr: int = OUT_RATE) -> float:
    """RMS over the louder 20 ms frames only, so pauses inside a turn don't skew levels."""
    hop = int(0.02 * sr)
    nfr = audio.size // hop
    if nfr == 0:
        return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    e = np.mean(audio[: nfr * hop].reshape(nfr, hop) ** 2, axis=1)
    act = e[e > e.max() * 1e-3]
    return float(np.sqrt(np.mean(act)))


def level_to(audio: np.ndarray, dbfs: float) -> np.ndarray:
    rms = active_rms(audio)
    return audio if rms == 0 else audio * (10 ** (dbfs / 20) / rms)


def mix_at(track: np.ndarray, clip: np.ndarray, start: int) -> None:
    """Add clip into track starting at sample `start` (in place, clipped to the track)."""
    end = min(track.size, start + clip.size)
    if start < end:
        track[start:end] += clip[: end - start]


def to_mono(tracks: Sequence[np.ndarray]) -> np.ndarray:
    """Sum legs into one channel with headroom so overlapping speech does not clip."""
    return np.sum(np.stack(tracks), axis=0) * 0.8


def fit_peak(audio: np.ndarray, peak: float = 0.97) -> np.ndarray:
    m = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (peak / m) if m > peak else audio


# -------------------------------------------------------------------- timeline


def resolve_style(line: Line, speaker_rate: float) -> tuple[str, float, float]:
    """(mood, speed, extra gain dB) for a line: explicit rate wins over the mood default."""
    mood = line.mood or "neutral"
    speed, gain = MOOD_STYLE.get(mood, (1.0, 0.0))
    rate = line.rate if line.rate is not None else speaker_rate * speed
    return mood, round(float(rate), 3), gain + line.volume_db


def place_turns(
    lines: Sequence[Line],
    durations: Sequence[float],
    rng: np.random.Generator,
    rates: Sequence[float] | None = None,
    moods: Sequence[str] | None = None,
) -> Timeline:
    """Lay turns on a timeline.

    Gaps are measured from the moment the floor is free (the latest end so far). A
    negative gap (or overlap_s) starts the line that much before the floor is free:
    a barge-in. A line's hold_s replaces the next gap with a hold of that length.
    Unspecified gaps are drawn from 0.3-1.2 s, like natural turn-taking.
    """
    turns: list[RenderedTurn] = []
    holds: list[tuple[float, float, bool]] = []
    floor_free = float(rng.uniform(0.4, 0.9))  # lead-in before the first word
    last_end = {r: 0.0 for r in ROLES}
    pending_hold: tuple[float, bool] | None = None
    for i, (ln, dur) in enumerate(zip(lines, durations, strict=True)):
        if i == 0:
            start = floor_free
        elif pending_hold is not None:
            start = floor_free + pending_hold[0]
        elif ln.overlap_s is not None:
            start = floor_free - ln.overlap_s
        elif ln.gap_s is not None:
            start = floor_free + ln.gap_s
        else:
            start = floor_free + float(rng.uniform(0.3, 1.2))
        # A speaker cannot talk over themselves, and a barge-in needs the other side talking.
        start = max(start, last_end[ln.role] + 0.15)
        if turns:
            start = max(start, turns[-1].start + 0.3)
        start = round(start * OUT_RATE) / OUT_RATE  # land on a sample
        if pending_hold is not None:
            holds.append((floor_free, start, pending_hold[1]))
        end = start + dur
        mood = moods[i] if moods else ln.mood
        rate = rates[i] if rates else (ln.rate or 1.0)
        turns.append(RenderedTurn(i, ln, mood, rate, start, end))
        pending_hold = None
        last_end[ln.role] = end
        floor_free = max(floor_free, end)
        if ln.hold_s > 0:
            pending_hold = (ln.hold_s, "hold_notice" in ln.tags)
    tail = float(rng.uniform(0.5, 1.0))
    return Timeline(tuple(turns), tuple(holds), round((floor_free + tail) * OUT_RATE) / OUT_RATE)


# ------------------------------------------------------------------------ truth


def quiet_gaps(
    turns: Sequence[RenderedTurn], duration: float, min_s: float
) -> list[tuple[float, float]]:
    """Stretches of at least min_s where nobody speaks (from the union of turn extents)."""
    spans = sorted((t.start, t.end) for t in turns)
    gaps, cursor = [], 0.0
    for s, e in spans:
        if s - cursor >= min_s:
            gaps.append((cursor, s))
        cursor = max(cursor, e)
    if duration - cursor >= min_s:
        gaps.append((cursor, duration))
    return gaps


def _r(x: float) -> float:
    return round(float(x), 3)


def build_truth(sc: Scenario, tl: Timeline) -> dict[str, Any]:
    """The ground-truth document for one rendered call (see README for the shape)."""
    turns = tl.turns
    events: list[dict[str, Any]] = []
    for s, e, announced in tl.holds:
        # A short announced pause ("稍等") is not a hold; report holds like silences.
        if e - s >= SILENCE_EVENT_S:
            events.append({"type": "hold", "start": _r(s), "end": _r(e), "announced": announced})
    long_gaps: list[bool] = []  # per gap >= 10 s: was it an announced hold?
    for s, e in quiet_gaps(turns, tl.duration, SILENCE_EVENT_S):
        hold = next((h for h in tl.holds if h[0] < e and s < h[1]), None)
        if hold is None:
            events.append({"type": "silence", "start": _r(s), "end": _r(e)})
        if e - s >= LONG_SILENCE_S:
            long_gaps.append(bool(hold and hold[2]))
    floor_end, floor_role = 0.0, None
    for t in turns:
        if floor_role is not None and t.start < floor_end and t.line.role != floor_role:
            events.append(
                {
                    "type": "barge_in",
                    "role": t.line.role,
                    "start": _r(t.start),
                    "end": _r(min(floor_end, t.end)),
                    "interrupted_role": floor_role,
                }
            )
        if t.end > floor_end:
            floor_end, floor_role = t.end, t.line.role
    for t in turns:
        for tag in t.line.tags:
            if tag in EVENT_TAGS:
                events.append(
                    {
                        "type": tag,
                        "turn": t.index,
                        "start": _r(t.start),
                        "end": _r(t.end),
                        "text": t.line.text,
                    }
                )
    events.sort(key=lambda ev: (ev["start"], ev["type"]))

    agent_tags = [set(t.line.tags) for t in turns if t.line.role == "agent"]
    complaint_at = next(
        (
            t.index
            for t in turns
            if t.line.role == "customer" and any(g in COMPLAINT_TAGS for g in t.line.tags)
        ),
        None,
    )
    forbidden: list[str] = []
    for t in turns:
        for tag in t.line.tags:
            if tag.startswith("forbidden:") and tag[10:] not in forbidden:
                forbidden.append(tag[10:])
    script: dict[str, bool | None] = {k: any(k in t for t in agent_tags) for k in SCRIPT_TAGS}
    script["apology"] = (
        None
        if complaint_at is None
        else any(t.line.role == "agent" and "apology" in t.line.tags for t in turns[complaint_at:])
    )
    script["hold_notice"] = None if not long_gaps else all(long_gaps)
    script["no_forbidden"] = not forbidden

    pii = [
        {"type": tag[4:], "value": extract_pii(t.line.text, tag[4:]), "turn": t.index}
        for t in turns
        for tag in t.line.tags
        if tag.startswith("pii:")
    ]
    talk = {r: _r(sum(t.end - t.start for t in turns if t.line.role == r)) for r in ROLES}
    channels = None
    if sc.layout == "stereo":
        channels = {"agent": sc.agent_channel, "customer": 1 - sc.agent_channel}
    return {
        "call_id": sc.call_id,
        "file": f"{sc.call_id}.wav",
        "scenario": sc.id,
        "business": sc.business,
        "company": sc.company,
        "layout": sc.layout,
        "channels": channels,
        "sample_rate": OUT_RATE,
        "encoding": "pcm_mulaw",
        "duration_s": _r(tl.duration),
        "agent_quality": sc.agent_quality,
        "mood_arc": sc.mood_arc,
        "turns": [
            {
                "index": t.index,
                "role": t.line.role,
                "start": _r(t.start),
                "end": _r(t.end),
                "text": t.line.text,
                "mood": t.mood,
                "rate": t.rate,
                "tags": list(t.line.tags),
            }
            for t in turns
        ],
        "script_items": script,
        "forbidden_phrases": forbidden,
        "events": events,
        "pii": pii,
        "talk_time_s": talk,
    }


# ----------------------------------------------------------------------- render

Synth = Callable[[str, VoiceSpec, float], np.ndarray]


def call_rng(seed: int, call_id: str) -> np.random.Generator:
    """Per-call generator: the same seed gives the same call regardless of render order."""
    return np.random.default_rng([seed, zlib.crc32(call_id.encode())])


def render_call(sc: Scenario, *, seed: int = 0, synth: Synth | None = None) -> RenderedCall:
    """Render one scenario to (channels, samples) float audio at 8 kHz plus its truth.

    `synth` is injectable so the mixing can be tested with fake speech, without Kokoro.
    """
    if synth is None:
        from .tts import synthesize

        synth = synthesize
    rng = call_rng(seed, sc.call_id)
    # Slight per-call level differences between the parties (handsets, line loss).
    gain = {
        "agent": sc.agent_gain_db + float(rng.uniform(-1.5, 1.5)),
        "customer": sc.customer_gain_db + float(rng.uniform(-2.0, 2.0)),
    }
    voices = {"agent": sc.agent_voice, "customer": sc.customer_voice}
    speaker_rate = {"agent": sc.agent_rate, "customer": sc.customer_rate}
    clips, moods, rates = [], [], []
    for ln in sc.lines:
        mood, rate, extra_db = resolve_style(ln, speaker_rate[ln.role])
        speech = decimate(
            synth(ln.say or ln.text, voices[ln.role], rate), TTS_RATE // OUT_RATE, TTS_RATE
        )
        clips.append(level_to(speech, SPEECH_RMS_DBFS + gain[ln.role] + extra_db))
        moods.append(mood)
        rates.append(rate)
    tl = place_turns(sc.lines, [c.size / OUT_RATE for c in clips], rng, rates, moods)

    n = round(tl.duration * OUT_RATE)
    legs = {r: np.zeros(n) for r in ROLES}
    for t, clip in zip(tl.turns, clips, strict=True):
        start = round(t.start * OUT_RATE)
        mix_at(legs[t.line.role], clip, start)
        if t.line.noise_db is not None:
            # Background (street/office) under the speaker, a little wider than the turn.
            pad = int(0.4 * OUT_RATE)
            lo = max(0, start - pad)
            hi = min(n, start + clip.size + pad)
            fade = np.minimum(1.0, np.minimum(np.arange(hi - lo), np.arange(hi - lo)[::-1]) / pad)
            legs[t.line.role][lo:hi] += band_noise(rng, hi - lo, t.line.noise_db, tilt=1.0) * fade
    noise_db = (
        sc.line_noise_db if sc.line_noise_db is not None else float(rng.uniform(-56.0, -48.0))
    )
    if sc.layout == "stereo":
        chans = [np.zeros(n), np.zeros(n)]
        chans[sc.agent_channel] = legs["agent"]
        chans[1 - sc.agent_channel] = legs["customer"]
        out = [telephone_band(c) + band_noise(rng, n, noise_db) for c in chans]
    else:
        out = [
            telephone_band(to_mono([legs["agent"], legs["customer"]]))
            + band_noise(rng, n, noise_db)
        ]
    audio = fit_peak(np.stack(out))
    return RenderedCall(sc, audio, build_truth(sc, tl))


# ------------------------------------------------------------------------ files


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file in the same folder, then os.replace: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are shared, committed files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_mulaw_wav(path: Path, audio: np.ndarray, sr: int = OUT_RATE) -> None:
    """Write (channels, samples) float [-1, 1] audio as a G.711 µ-law WAV."""
    import av

    audio = np.atleast_2d(audio)
    layout = {1: "mono", 2: "stereo"}[audio.shape[0]]
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype(np.int16)

    def write(tmp: Path) -> None:
        # bitexact: no encoder-version tag, so re-renders are byte-identical.
        with av.open(str(tmp), "w", format="wav", options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream("pcm_mulaw", rate=sr, layout=layout)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm.T).reshape(1, -1), format="s16", layout=layout
            )
            frame.sample_rate = sr
            frame.pts = 0
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)

    _atomic_write(Path(path), write)


def read_wav(path: Path) -> tuple[np.ndarray, int, str]:
    """Decode any WAV to ((channels, samples) float, sample_rate, codec name)."""
    import av

    with av.open(str(path)) as f:
        st = f.streams.audio[0]
        codec, rate, ch = st.codec_context.name, st.rate, st.channels
        frames = []
        for fr in f.decode(st):
            a = fr.to_ndarray()
            frames.append(a if fr.format.is_planar else a.reshape(-1, ch).T)
    pcm = np.concatenate(frames, axis=1).astype(np.float64)
    return pcm / 32768.0, rate, codec


def write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic_write(Path(path), write)


def truth_json(truth: dict[str, Any]) -> str:
    return json.dumps(truth, ensure_ascii=False, indent=1) + "\n"


def calls_csv(sf: ScenarioFile) -> str:
    agents = {a.id: a for a in sf.agents}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for sc in sf.scenarios:
        a = agents.get(sc.agent_id, Agent(sc.agent_id, "", "", ""))
        w.writerow(
            [
                sc.call_id,
                f"{sc.call_id}.wav",
                a.id,
                a.name,
                a.team,
                a.hire_date,
                sc.customer_tier,
                sc.started_at,
                sc.direction,
                sc.queue,
            ]
        )
    return buf.getvalue()


def render_scenarios(
    scenario_file: Path, out_dir: Path, *, seed: int = 0, only: list[str] | None = None
) -> list[Path]:
    """Render scenarios (all, or those whose id or call_id is in `only`) into out_dir.

    Writes <call_id>.wav, <call_id>.truth.json and calls.csv (always for every scenario
    in the file, since it is metadata only). Returns the written WAV paths.
    """
    sf = load_scenarios(Path(scenario_file))
    out_dir = Path(out_dir)
    wanted = set(only) if only else None
    if wanted:
        known = {s.id for s in sf.scenarios} | {s.call_id for s in sf.scenarios}
        missing = wanted - known
        if missing:
            raise ValueError(f"unknown scenarios: {sorted(missing)}")
    written = []
    for sc in sf.scenarios:
        if wanted and sc.id not in wanted and sc.call_id not in wanted:
            continue
        call = render_call(sc, seed=seed)
        wav = out_dir / f"{sc.call_id}.wav"
        write_mulaw_wav(wav, call.audio)
        write_text(out_dir / f"{sc.call_id}.truth.json", truth_json(call.truth))
        written.append(wav)
    write_text(out_dir / "calls.csv", calls_csv(sf))
    return written
