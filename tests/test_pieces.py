"""Long recordings in pieces (audio.pieces, asr.join_pieces): bounded memory, the same
samples and levels as decoding whole, and words in the recording's own time."""

from __future__ import annotations

import wave

import numpy as np
import pandas as pd
import pytest

from speechqa import asr, audio
from speechqa.calls import ChannelTranscript, Segment, Transcript, Word
from speechqa.config import load_settings
from speechqa.pipeline import run_batch
from tests.conftest import FIXTURE_CALLS
from tests.fakes import ToneTranscriber

RATE = 8000
BURSTS = [(3.0, 4.0), (17.5, 18.5), (41.0, 42.0), (58.0, 59.5), (77.0, 78.0)]  # seconds, agent side


def _bursts(path, seconds=90.0):
    """A stereo 8 kHz call: a 440 Hz burst on the left at each of BURSTS, faint hiss elsewhere,
    and the right side echoing each burst 2 s later."""
    rng = np.random.default_rng(3)
    n = int(seconds * RATE)
    left, right = rng.normal(0, 0.001, n), rng.normal(0, 0.001, n)
    t = np.arange(n) / RATE
    for a, b in BURSTS:
        on = (t >= a) & (t < b)
        left[on] += 0.5 * np.sin(2 * np.pi * 440 * t[on])
        on = (t >= a + 2) & (t < b + 2)
        right[on] += 0.5 * np.sin(2 * np.pi * 660 * t[on])
    pcm = (np.clip(np.stack([left, right], axis=1), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


@pytest.mark.parametrize("piece_s", [10, 25, 1000])
def test_pieces_join_to_the_whole_recording_and_its_levels(tmp_path, piece_s):
    path = _bursts(tmp_path / "call.wav")
    whole = audio.decode(path)
    found = list(audio.pieces(path, piece_s))
    assert (len(found) == 1) == (piece_s == 1000)
    assert found[0].offset == 0 and all(p.offset % 320 == 0 for p in found)  # on 20 ms level frames
    joined = np.concatenate([p.audio.samples for p in found], axis=1)
    assert np.array_equal(joined, whole.samples)
    want = [audio.frame_levels(ch, audio.MODEL_RATE) for ch in whole.samples]
    for got, ref in zip(audio.levels(path, piece_s), want, strict=True):
        assert np.array_equal(got, ref)


def test_a_piece_ends_in_a_quiet_moment_not_in_a_burst(tmp_path):
    path = _bursts(tmp_path / "call.wav")
    for p in list(audio.pieces(path, 18.2))[1:]:  # 18.2 s falls inside the burst at 17.5-18.5
        cut = p.offset_s
        assert not any(a - 0.1 < cut < b + 0.1 for a, b in BURSTS), cut
        assert not any(a + 2 - 0.1 < cut < b + 2 + 0.1 for a, b in BURSTS), cut


def test_join_pieces_moves_words_to_the_recordings_time_and_keeps_the_main_language():
    def piece(duration, language, words):
        segs = tuple(Segment(a, b, "x", -0.1, 0.0, 1.0, 0.0, (Word(a, b, "x", 0.9),)) for a, b in words)
        return Transcript("sha", duration, 1, 8000, (ChannelTranscript(0, segs, language, 0.8),), 1.5, language)

    joined = asr.join_pieces([(0.0, piece(10.0, "zh", [(1.0, 3.0), (5.0, 9.0)])),
                              (10.0, piece(4.0, "en", [(0.5, 1.0)]))], "zh")
    assert [(s.start, s.end) for s in joined.channels[0].segments] == [(1.0, 3.0), (5.0, 9.0), (10.5, 11.0)]
    assert joined.channels[0].segments[-1].words[0].start == 10.5
    assert (joined.duration_s, joined.asr_seconds, joined.language) == (14.0, 3.0, "zh")
    one = piece(3.0, "zh", [])
    assert asr.join_pieces([(0.0, one)], "zh") is one


def test_a_long_call_in_pieces_has_its_words_and_events_where_the_sound_is(tmp_path, monkeypatch):
    night = tmp_path / "night"
    night.mkdir()
    _bursts(night / "long.wav")
    settings = load_settings(environ={}, overrides={
        "asr": {"model": "unused"}, "batch": {"cache_dir": str(tmp_path / "cache")},
        "sampling": {"enabled": False}})
    whole = run_batch(night, tmp_path / "whole", settings, transcriber=ToneTranscriber())
    monkeypatch.setattr(audio, "PIECE_S", 12)
    pieced = run_batch(night, tmp_path / "pieced", load_settings(environ={}, overrides={
        "asr": {"model": "unused"}, "batch": {"cache_dir": str(tmp_path / "cache2")},
        "sampling": {"enabled": False}}), transcriber=ToneTranscriber())
    assert not whole.failures and not pieced.failures
    words = pd.read_csv(tmp_path / "pieced" / "words.csv")
    assert len(words) == 2 * len(BURSTS)
    starts = sorted(words.start)
    want = sorted([a for a, _ in BURSTS] + [a + 2 for a, _ in BURSTS])
    assert np.allclose(starts, want, atol=0.15), (starts, want)
    for name in ("turns", "words", "events"):  # the same call as when it was heard whole
        a, b = (pd.read_csv(tmp_path / out / f"{name}.csv") for out in ("whole", "pieced"))
        pd.testing.assert_frame_equal(a, b, atol=0.05)
    calls = pd.read_csv(tmp_path / "pieced" / "calls.csv")
    assert calls.duration_s.iloc[0] == pytest.approx(90.0, abs=0.01)


def test_decode_of_the_fixture_is_one_piece():
    path = FIXTURE_CALLS / "fx_stereo.wav"
    (only,) = audio.pieces(path)
    assert np.array_equal(only.audio.samples, audio.decode(path).samples)
