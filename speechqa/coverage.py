"""Whether the transcript holds what was said: how much of the speech it covers, and which
turns only echo Whisper's prompt. Runs after ASR, on the audio, before any analysis.

Detected speech
---------------
The audio says when someone talks, independently of Whisper: each channel's 20 ms frames that
are clearly above its own noise floor (speechqa/audio.py), in runs that either hold
transcribed words or sound like that channel's talk (long and about as loud: a click or a
cough is not speech).

Coverage
--------
The share of a channel's detected speech frames that fall inside its transcribed words (word
spans padded by ``audio.RUN_PAD_S`` and joined across pauses shorter than
``audio.FILL_GAP_S``, as the speech runs are). ``coverage`` pools all channels;
``coverage_agent`` and ``coverage_customer`` are per role (stereo). None where a channel has
under ``MIN_SPEECH_S`` of speech. A call below ``[guards] min_coverage`` on any role is flagged
``low_coverage``: its failed items may be words Whisper dropped, not script the agent skipped.

Prompt echoes
-------------
Whisper continues its prompt, and where the audio gives it little to hear it may write the
prompt itself (请问有什么可以帮您 dozens of times on an English call given a Mandarin prompt).
A turn is an echo candidate when at least half of its text, and ``asr.ECHO_MIN_CHARS`` characters
in a row, come from its channel's prompt or hotwords. A candidate is flagged ``prompt_echo``
when the audio does not support it:

- it is in the wrong script for its channel's language (Han characters on an English call);
- the speech under it is quiet: its loud end is ``audio.SKIPPED_WITHIN_DB`` below the
  channel's talking level;
- its text is far longer than the speech under it: more than ``ECHO_MAX_RATE`` characters (or
  Latin words) per second of active frames;
- or far shorter: the utterance it sits in has ``ECHO_LONG_S`` of speech or more, and less than
  ``ECHO_HEARD`` of it has words (the prompt written for a 27 s reading);
- or the same fragment is a candidate in ``ECHO_REPEATS`` turns or more of the channel: all
  but the first of them that the audio supports.

A flagged turn keeps its text in ``turns`` but is not what was said: it never serves as
compliance evidence, and sentiment and escalations do not read it (``calls.is_unheard``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from speechqa.asr import fits_language, prompt_fragment
from speechqa.audio import (
    FRAME_S,
    SKIPPED_WITHIN_DB,
    Activity,
    activity,
    frames_of,
    sounds_like_talk,
    span_mask,
    words_mask,
)
from speechqa.calls import Turn

MIN_SPEECH_S = 3.0  # a channel with less detected speech has no coverage figure
ECHO_MAX_RATE = 10.0  # characters (Han, or Latin words) per second of speech no one speaks faster than
ECHO_REPEATS = 3  # the same prompt fragment in this many turns of a channel is a loop, not speech
ECHO_LONG_S = 3.0  # an utterance this long of which ...
ECHO_HEARD = 0.5  # ... less than this share has words says more than a prompt fragment
UNIT = re.compile(r"[\u3400-\u9fff\u3040-\u30ff\uac00-\ud7af]|[A-Za-z0-9]+")  # a character, or a Latin word


@dataclass(frozen=True, eq=False)
class ChannelSpeech:
    """One channel's detected speech: its energy activity (audio.Activity), which frames are
    speech, and the runs of speech (seconds)."""

    activity: Activity
    speech: np.ndarray  # bool per frame
    runs: tuple[tuple[float, float], ...] = ()

    @property
    def levels(self) -> np.ndarray:
        return self.activity.levels


def _word_spans(turns: Sequence[Turn]) -> list[tuple[float, float]]:
    return [(w.start, w.end) for t in turns for w in t.words] or [(t.start, t.end) for t in turns]


def channel_speech(levels: Sequence[np.ndarray], turns: Sequence[Turn]) -> dict[int, ChannelSpeech]:
    """Each channel's detected speech (see the module docstring), from its frame levels."""
    out: dict[int, ChannelSpeech] = {}
    for ch, lv in enumerate(levels):
        spans = _word_spans([t for t in turns if t.channel == ch])
        act = activity(lv, spans)
        active = lv > act.threshold
        worded = span_mask(spans, len(lv))
        speech = np.zeros(len(lv), dtype=bool)
        runs = []
        for run in act.runs:
            part = frames_of(run)
            if worded[part].any() or sounds_like_talk(lv, run, act.talking):
                speech[part] = active[part]
                runs.append(run)
        out[ch] = ChannelSpeech(act, speech, tuple(runs))
    return out




def coverage(turns: Sequence[Turn], speech: Mapping[int, ChannelSpeech]) -> dict[str, float | None]:
    """``coverage``, ``coverage_agent`` and ``coverage_customer`` of a call (module docstring).
    ``turns`` must not hold prompt echoes: an echo covers nothing."""
    heard = [t for t in turns if "prompt_echo" not in t.flags]
    if not heard:  # no words at all: nothing to calibrate talk by (a tone or noise would count)
        return dict.fromkeys(("coverage", "coverage_agent", "coverage_customer"))
    detected: dict[str, int] = {}
    covered: dict[str, int] = {}
    for ch, s in speech.items():
        mine = [t for t in heard if t.channel == ch]
        roles = {t.role for t in turns if t.channel == ch} or {"unknown"}
        role = roles.pop() if len(roles) == 1 else "unknown"
        inside = int((s.speech & words_mask(_word_spans(mine), len(s.speech))).sum()) if mine else 0
        for key in ("all", role):
            detected[key] = detected.get(key, 0) + int(s.speech.sum())
            covered[key] = covered.get(key, 0) + inside

    def share(key: str) -> float | None:
        n = detected.get(key, 0)
        return round(covered[key] / n, 3) if n * FRAME_S >= MIN_SPEECH_S else None

    return {"coverage": share("all"), "coverage_agent": share("agent"), "coverage_customer": share("customer")}


def low_coverage(values: Mapping[str, float | None], minimum: float) -> bool:
    """Whether any role's (else the call's) coverage is below ``minimum``."""
    by_role = [v for k in ("coverage_agent", "coverage_customer") if (v := values.get(k)) is not None]
    found = by_role or [v for v in (values.get("coverage"),) if v is not None]
    return any(v < minimum for v in found)


# -- prompt echoes -----------------------------------------------------------------------------


def _unsupported(turn: Turn, s: ChannelSpeech | None, worded: np.ndarray | None) -> bool:
    """Whether the audio under ``turn`` is too quiet, or too short, to have said its text, or
    whether the utterance it sits in is far longer than all the words in it (``worded``: the
    channel's frames inside words)."""
    if s is None or worded is None:
        return False
    frames = s.levels[frames_of((turn.start, turn.end))]
    if frames.size == 0:
        return True
    if float(np.percentile(frames, 90)) < s.activity.talking - SKIPPED_WITHIN_DB:
        return True
    active_s = float((frames > s.activity.threshold).sum()) * FRAME_S
    if len(UNIT.findall(turn.text)) / max(active_s, FRAME_S) > ECHO_MAX_RATE:
        return True
    around = [frames_of(r) for r in s.runs if r[0] < turn.end and r[1] > turn.start]
    detected = sum(int(s.speech[p].sum()) for p in around)
    heard = sum(int((s.speech[p] & worded[p]).sum()) for p in around)
    return detected * FRAME_S >= ECHO_LONG_S and heard < ECHO_HEARD * detected


def flag_echoes(turns: Sequence[Turn], prompts: Mapping[int, tuple[str, str]],
                speech: Mapping[int, ChannelSpeech]) -> tuple[Turn, ...]:
    """Copies of ``turns`` with ``prompt_echo`` added to the flags of every echo (module
    docstring). ``prompts``: channel -> (language, what Whisper was primed with on it)."""
    fragments: list[str] = []
    for t in turns:
        _, primed = prompts.get(t.channel, ("", ""))
        fragments.append(prompt_fragment(t.text, primed) if primed else "")
    seen: dict[tuple[int, str], int] = {}
    for t, f in zip(turns, fragments, strict=True):
        if f:
            seen[(t.channel, f)] = seen.get((t.channel, f), 0) + 1
    kept: set[tuple[int, str]] = set()
    worded = {ch: words_mask(_word_spans([t for t in turns if t.channel == ch]), len(s.speech))
              for ch, s in speech.items()}
    out = []
    for t, f in zip(turns, fragments, strict=True):
        echo = False
        if f:
            wrong_script = not fits_language(f, prompts[t.channel][0])
            unsupported = _unsupported(t, speech.get(t.channel), worded.get(t.channel))
            echo = wrong_script or unsupported
            if not echo and seen[(t.channel, f)] >= ECHO_REPEATS:
                echo = (t.channel, f) in kept  # the first supported one stands, the rest loop
                kept.add((t.channel, f))
        out.append(dataclasses.replace(t, flags=(*t.flags, "prompt_echo")) if echo else t)
    return tuple(out)
