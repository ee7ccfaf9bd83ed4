"""Packing a call's channels into shared Whisper windows (asr.pack_channels): the packed
track holds exactly each channel's speech, windows never split a chunk, and words decoded on
the track go back to their own channel at their own time."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

from speechqa import asr
from speechqa.audio import MODEL_RATE, decode
from speechqa.config import AsrSettings
from tests.conftest import FIXTURE_CALLS


def test_packed_track_is_each_channels_speech_in_time_order():
    audio = decode(FIXTURE_CALLS / "fx_stereo.wav")
    settings = AsrSettings(chunk_s=10)
    track, chunks, windows = asr._pack(audio.samples, settings)
    assert {c.channel for c in chunks} == {0, 1}  # both speakers' speech is in the track
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert len(track) == sum(c.end - c.start for c in chunks)
    for c in chunks:  # the track holds the channel's own samples, unchanged
        assert np.array_equal(track[c.at: c.at + c.end - c.start], audio.samples[c.channel][c.start:c.end])
    bounds = {c.at / MODEL_RATE for c in chunks} | {len(track) / MODEL_RATE}
    assert windows[0]["start"] == 0 and windows[-1]["end"] == len(track) / MODEL_RATE
    for w, nxt in zip(windows, windows[1:], strict=False):
        assert w["end"] == nxt["start"]
    for w in windows:
        assert w["end"] - w["start"] <= 10 + 1e-9 or w["start"] in bounds  # only a lone long chunk is longer
        assert w["start"] in bounds and w["end"] in bounds  # no chunk is split between windows


def _word(start, end, text):
    return SimpleNamespace(start=start, end=end, word=text, probability=0.9)


def test_words_go_back_to_their_channel_and_time():
    # agent speech 1.0-3.0 s on channel 0, then the customer 5.0-6.0 s on channel 1, packed
    chunks = [asr._Chunk(0, 1 * MODEL_RATE, 3 * MODEL_RATE, 0), asr._Chunk(1, 5 * MODEL_RATE, 6 * MODEL_RATE,
                                                                         2 * MODEL_RATE)]
    window = SimpleNamespace(start=0.0, end=3.0, text="您好请讲我要退款", avg_logprob=-0.3, no_speech_prob=0.01,
                             compression_ratio=1.1, temperature=0.0,
                             words=[_word(0.1, 0.9, "您好"), _word(1.0, 1.9, "请讲"), _word(2.1, 2.5, "我要"),
                                    _word(2.5, 2.95, "退款")])
    agent, customer = asr._unpack([window], chunks, 2)
    assert [s.text for s in agent] == ["您好请讲"] and [s.text for s in customer] == ["我要退款"]
    assert agent[0].words[0].start == 1.1 and agent[0].words[-1].end == 2.9
    assert customer[0].start == 5.1 and customer[0].end == 5.95
    assert customer[0].avg_logprob == -0.3  # the window's scores stay with each part
    # a word that runs past the track's end is clamped into its chunk (channel 1, 5.0-6.0 s)
    overrun = SimpleNamespace(**{**vars(window), "words": [_word(2.9, 3.4, "嗯")]})
    (only,) = asr._unpack([overrun], chunks, 2)[1]
    assert (only.start, only.end) == (5.9, 6.0)


def test_packing_only_where_one_language_and_batching_allow_it():
    on = AsrSettings(pack_channels=True)
    assert asr.packs(on, 2)
    assert not asr.packs(on, 1)
    assert not asr.packs(dataclasses.replace(on, language="auto"), 2)
    assert not asr.packs(dataclasses.replace(on, batch_size=0), 2)
    assert not asr.packs(AsrSettings(), 2)  # off by default: it cost CER (README, Scaling out)
