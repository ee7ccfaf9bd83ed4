"""Conversation metrics: talk time, silences and holds, overlaps and interruptions, speech
rate, first response and loudness.

Speech activity
---------------
Whisper's word timestamps say what was said and roughly when; the audio says sharply when
someone was speaking. Each channel is cut into 20 ms frames and a frame is *active* when its
level is clearly above that channel's own noise floor (speechqa/audio.py). Active frames form
runs (short gaps bridged, blips dropped), and a run counts as speech only when it overlaps a
transcribed turn on the same channel, or when it is long and as loud as that channel's talk
(speech Whisper skipped): a cough or a door during a hold is not speech, and a phrase Whisper
hallucinated over silence has no energy behind it. Each kept run belongs to the role of the
turn it overlaps most (or the nearest one). When no audio is given, the turns' own spans are
used instead.

Definitions (all times in seconds of call time)
-----------------------------------------------
- **talk_s_<role>**: total length of that role's speech runs; **speech_s**: their union;
  **nontalk_s** = duration - speech_s; **talk_ratio_agent** = agent / (agent + customer).
- **silence**: a gap in everyone's speech of at least ``silence_min_s``, between the first and
  the last speech of the call (ringing before the greeting is the first-response latency, not
  a silence). Redacted spans count as speech. A silence of at least ``hold_min_s`` is a
  **hold** instead: nobody on either channel spoke. Each is one event.
- **overlap**: a run that starts while another role's run is going on and overlaps it by at
  least ``interruption_min_overlap_s``. It is an **interruption** by the later starter unless
  that turn is a backchannel (嗯, 对, 好的 … or any turn no longer than
  ``backchannel_max_s``). The event runs from the interrupter's start to the end of the
  overlap; ``detail`` names the interrupted role. Roles must be known: stereo channels, or a
  mono call's two voices separated by the speaker model (speechqa/diarize.py), whose own
  turns stand for the speech runs there, overlaps included.
- **rate_cpm_<role>**: characters (Han, letters, digits) per minute of that role's talk.
- **agent_first_response_s**: when the agent first spoke, from the start of the recording.
  **agent_response_latency_s**: the mean gap between the end of a customer turn and the
  start of the agent turn answering it (gaps that are holds excluded).
- **loudness_dbfs** per turn: the RMS level of the turn's active frames on its channel.
  A turn is **shouting** when it is ``shout_db`` or more above the median of its speaker's
  turns (speakers with at least three turns).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from speechqa import text
from speechqa.audio import (  # the energy detector lives with the audio; metrics reads it
    activity,
    frame_levels,
    frames_of,
    sounds_like_talk,
)
from speechqa.calls import Event, Turn
from speechqa.config import MetricsSettings

TURN_SLACK_S = 0.3  # a run may start or end this far outside the turn it belongs to
HOLD_GAP_REPLY_S = 10.0  # a customer→agent gap longer than this is not a response latency

_COUNTED = re.compile(r"[\u3400-\u9fff\uf900-\ufaffA-Za-z0-9]")

# Every metric a call gets: the columns of ``calls`` and what scorecard rules can test.
CONVERSATION_METRICS: tuple[str, ...] = (  # what analyse() measures, in its order
    "talk_s_agent", "talk_s_customer", "talk_s_unknown", "speech_s", "nontalk_s", "talk_ratio_agent",
    "n_silences", "longest_silence_s", "silence_s", "n_holds", "hold_s", "n_overlaps", "overlap_s",
    "n_interruptions_agent", "n_interruptions_customer", "rate_cpm_agent", "rate_cpm_customer",
    "rate_cpm_unknown", "agent_first_response_s", "agent_response_latency_s",
    "loudness_dbfs_agent", "loudness_dbfs_customer", "n_shouting_turns_agent",
    "n_shouting_turns_customer",
)
# speechqa/coverage.py's, on the audio: the share of detected speech with words, and echoes
COVERAGE_METRICS: tuple[str, ...] = ("coverage", "coverage_agent", "coverage_customer", "n_prompt_echo_turns")
METRIC_NAMES: tuple[str, ...] = CONVERSATION_METRICS + COVERAGE_METRICS  # a call's metrics, in calls' order

Span = tuple[float, float]
Metrics = tuple[tuple[str, float | int | None], ...]


# -- frames and runs --------------------------------------------------------------------


def union(spans: Sequence[Span]) -> list[Span]:
    out: list[Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def total(spans: Sequence[Span]) -> float:
    return float(sum(e - s for s, e in union(spans)))


def _overlap(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


@dataclasses.dataclass(frozen=True)
class Run:
    """A stretch of speech on one channel, owned by the turn it overlaps most."""

    start: float
    end: float
    role: str
    turn_index: int


def speech_runs(turns: Sequence[Turn], channels: Sequence[np.ndarray] | None, sample_rate: int,
                channel_levels: Sequence[np.ndarray] | None = None,
                ) -> tuple[list[Run], dict[int, np.ndarray], dict[int, float]]:
    """Speech runs of the call (see the module docstring), with each channel's frame levels
    and activity threshold for the loudness measures. ``channel_levels``: the channels'
    frame levels when the caller has them already (audio.frame_levels of ``channels``)."""
    levels: dict[int, np.ndarray] = {}
    thresholds: dict[int, float] = {}
    runs: list[Run] = []
    if channel_levels is None and channels is not None:
        channel_levels = [frame_levels(samples, sample_rate) for samples in channels]
    if channel_levels is None:
        runs = [Run(t.start, t.end, t.role, i) for i, t in enumerate(turns)]
        return sorted(runs, key=lambda r: r.start), levels, thresholds
    by_channel: dict[int, list[int]] = {}
    for i, t in enumerate(turns):
        by_channel.setdefault(t.channel, []).append(i)
    for ch, lv in enumerate(channel_levels):
        levels[ch] = lv
        owners = by_channel.get(ch, [])
        act = activity(lv, [(turns[i].start, turns[i].end) for i in owners])
        thresholds[ch], talking = act.threshold, act.talking
        if not owners:
            continue
        for span in act.runs:
            best, best_overlap = -1, 0.0
            for i in owners:
                t = turns[i]
                ov = _overlap(span, (t.start - TURN_SLACK_S, t.end + TURN_SLACK_S))
                if ov > best_overlap:
                    best, best_overlap = i, ov
            if best < 0:
                # Speech Whisper skipped is counted for the nearest turn's speaker.
                if not sounds_like_talk(lv, span, talking):
                    continue
                best = min(owners, key=lambda i: min(abs(turns[i].start - span[1]),
                                                     abs(turns[i].end - span[0])))
            runs.append(Run(span[0], span[1], turns[best].role, best))
    return sorted(runs, key=lambda r: r.start), levels, thresholds


# -- the measures ------------------------------------------------------------------------


def voice_runs(turns: Sequence[Turn], voices: Sequence[tuple[float, float, str]]) -> list[Run]:
    """Speech runs of a diarised mono call: the speaker model's turns (start, end, role), which
    overlap where both talk. Each belongs to the turn of its role it overlaps most; one that
    no turn of its role overlaps (speech Whisper did not transcribe, such as a 嗯 under the other
    voice) belongs to no turn (``turn_index`` -1)."""
    runs = []
    for start, end, role in voices:
        best, best_overlap = -1, 0.0
        for i, t in enumerate(turns):
            if t.role != role:
                continue
            ov = _overlap((start, end), (t.start - TURN_SLACK_S, t.end + TURN_SLACK_S))
            if ov > best_overlap:
                best, best_overlap = i, ov
        runs.append(Run(start, end, role, best))
    return sorted(runs, key=lambda r: r.start)


def turn_loudness(turns: Sequence[Turn], levels: dict[int, np.ndarray],
                  thresholds: dict[int, float], shout_db: float) -> tuple[Turn, ...]:
    """Copies of the turns with ``loudness_dbfs`` and ``shouting`` set."""
    loud: list[float | None] = []
    for t in turns:
        lv = levels.get(t.channel)
        if lv is None:
            loud.append(None)
            continue
        frames = lv[frames_of((t.start, t.end))]
        if frames.size == 0:
            loud.append(None)
            continue
        active = frames[frames > thresholds[t.channel]]
        use = active if active.size else frames
        loud.append(round(float(10 * np.log10(np.mean(10 ** (use / 10)))), 2))
    medians: dict[str, float] = {}
    for role in {t.role for t in turns}:
        values = [v for t, v in zip(turns, loud, strict=True) if t.role == role and v is not None]
        if len(values) >= 3:
            medians[role] = float(np.median(values))
    out = []
    for t, v in zip(turns, loud, strict=True):
        shouting = v is not None and t.role in medians and v - medians[t.role] >= shout_db
        out.append(dataclasses.replace(t, loudness_dbfs=v, shouting=shouting))
    return tuple(out)


def is_backchannel(turn: Turn, max_s: float) -> bool:
    """A short acknowledgement (嗯, 对, 好的 …) that does not take the floor."""
    return turn.duration <= max_s or (turn.duration <= 2 * max_s and text.is_backchannel(turn.text))


def silences(runs: Sequence[Run], muted: Sequence[Span], call_id: str,
             settings: MetricsSettings) -> list[Event]:
    """Silence and hold events: gaps in everyone's speech inside the conversation."""
    speech = union([(r.start, r.end) for r in runs] + list(muted))
    events = []
    for (_, prev_end), (next_start, _) in zip(speech, speech[1:], strict=False):
        gap = next_start - prev_end
        if gap >= settings.silence_min_s:
            kind = "hold" if gap >= settings.hold_min_s else "silence"
            events.append(Event(call_id, kind, "both", round(prev_end, 3), round(next_start, 3)))
    return events


def overlaps(runs: Sequence[Run], turns: Sequence[Turn], call_id: str,
             settings: MetricsSettings) -> list[Event]:
    """Interruption and overlap events between known roles (agent and customer)."""
    known = [r for r in runs if r.role in ("agent", "customer")]
    events = []
    for b in known:
        for a in known:
            if a.role == b.role or not (a.start < b.start < a.end):
                continue
            overlap = min(a.end, b.end) - b.start
            if overlap < settings.interruption_min_overlap_s:
                continue
            turn = turns[b.turn_index] if b.turn_index >= 0 else None
            if turn is not None:
                backchannel = is_backchannel(turn, settings.backchannel_max_s)
            else:  # untranscribed speech under the other voice: its length says
                backchannel = b.end - b.start <= settings.backchannel_max_s
            events.append(Event(
                call_id, "overlap" if backchannel else "interruption", b.role,
                round(b.start, 3), round(b.start + overlap, 3),
                f"backchannel:{a.role}" if backchannel else a.role, turn.turn_id if turn else "",
            ))
    return events


def _chars(text: str) -> int:
    return len(_COUNTED.findall(text))


def analyse(
    turns: Sequence[Turn],
    channels: Sequence[np.ndarray] | None,
    sample_rate: int,
    duration_s: float,
    settings: MetricsSettings,
    muted: Sequence[Span] = (),
    levels: Sequence[np.ndarray] | None = None,
    voices: Sequence[tuple[float, float, str]] | None = None,
) -> tuple[tuple[Turn, ...], Metrics, tuple[Event, ...]]:
    """The metrics stage for one call.

    ``channels`` are the decoded channels, or ``levels`` their frame levels when already
    measured (the pipeline measures them piece by piece, audio.LevelMeter); with neither, the
    turn spans stand for the speech. ``muted`` are spans that hold speech even if it was
    masked (redactions). ``voices``: a diarised mono call's speaker turns with their roles
    (:func:`voice_runs`), which stand for the speech, overlaps included. Returns the turns
    with loudness, the call's
    metrics as (name, value) pairs, and its silence/hold/overlap events.
    """
    call_id = turns[0].call_id if turns else ""
    runs, levels_by_channel, thresholds = speech_runs(turns, channels, sample_rate, levels)
    if voices is not None:
        runs = voice_runs(turns, voices)
    if levels_by_channel:
        turns = turn_loudness(turns, levels_by_channel, thresholds, settings.shout_db)
    events = silences(runs, muted, call_id, settings) + overlaps(runs, turns, call_id, settings)
    events.sort(key=lambda e: (e.start, e.type))

    talk = {role: total([(r.start, r.end) for r in runs if r.role == role])
            for role in ("agent", "customer", "unknown")}
    speech_s = total([(r.start, r.end) for r in runs] + list(muted))
    stereo = talk["agent"] > 0 or talk["customer"] > 0
    pair = talk["agent"] + talk["customer"]
    gaps = [e for e in events if e.type in ("silence", "hold")]
    holds = [e for e in gaps if e.type == "hold"]
    inter = [e for e in events if e.type == "interruption"]

    agent_turns = [t for t in turns if t.role == "agent"]
    latencies = []
    for prev, nxt in zip(turns, turns[1:], strict=False):
        if prev.role == "customer" and nxt.role == "agent":
            gap = nxt.start - prev.end
            if 0 <= gap < HOLD_GAP_REPLY_S:
                latencies.append(gap)

    def rate(role: str) -> float | None:
        seconds = talk[role]
        chars = sum(_chars(t.text) for t in turns if t.role == role)
        return round(chars / (seconds / 60.0), 1) if seconds > 0 and chars else None

    def median_loudness(role: str) -> float | None:
        values = [t.loudness_dbfs for t in turns if t.role == role and t.loudness_dbfs is not None]
        return round(float(np.median(values)), 2) if values else None

    metrics: list[tuple[str, float | int | None]] = [
        ("talk_s_agent", round(talk["agent"], 2)),
        ("talk_s_customer", round(talk["customer"], 2)),
        ("talk_s_unknown", round(talk["unknown"], 2)),
        ("speech_s", round(speech_s, 2)),
        ("nontalk_s", round(max(0.0, duration_s - speech_s), 2)),
        ("talk_ratio_agent", round(talk["agent"] / pair, 3) if pair > 0 else None),
        ("n_silences", len(gaps)),
        ("longest_silence_s", round(max((e.duration for e in gaps), default=0.0), 2)),
        ("silence_s", round(sum(e.duration for e in gaps), 2)),
        ("n_holds", len(holds)),
        ("hold_s", round(sum(e.duration for e in holds), 2)),
        ("n_overlaps", sum(1 for e in events if e.type in ("overlap", "interruption")) if stereo else None),
        ("overlap_s", round(sum(e.duration for e in events if e.type in ("overlap", "interruption")), 2)
         if stereo else None),
        ("n_interruptions_agent", sum(1 for e in inter if e.role == "agent") if stereo else None),
        ("n_interruptions_customer", sum(1 for e in inter if e.role == "customer") if stereo else None),
        ("rate_cpm_agent", rate("agent")),
        ("rate_cpm_customer", rate("customer")),
        ("rate_cpm_unknown", rate("unknown")),
        ("agent_first_response_s", round(agent_turns[0].start, 2) if agent_turns else None),
        ("agent_response_latency_s", round(float(np.mean(latencies)), 2) if latencies else None),
        ("loudness_dbfs_agent", median_loudness("agent")),
        ("loudness_dbfs_customer", median_loudness("customer")),
        ("n_shouting_turns_agent", sum(1 for t in turns if t.role == "agent" and t.shouting)),
        ("n_shouting_turns_customer", sum(1 for t in turns if t.role in ("customer", "unknown")
                                          and t.shouting)),
    ]
    return tuple(turns), tuple(metrics), tuple(events)
