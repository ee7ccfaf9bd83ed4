"""Conversation metrics: unit checks on synthetic signals, then the committed calls' truth."""

from __future__ import annotations

import numpy as np
import pytest

from speechqa import audio, metrics
from speechqa.config import MetricsSettings
from tests.conftest import turn

RATE = 8000
SETTINGS = MetricsSettings()


def tone(seconds: float, level_dbfs: float = -22.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 300 * t) * np.sqrt(2) * 10 ** (level_dbfs / 20)).astype(np.float32)


def line(duration: float, spans, levels=None, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A channel of faint noise with 'speech' (a tone) in the given spans."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(int(duration * rate)) * 10 ** (-55 / 20)).astype(np.float32)
    for i, (start, end) in enumerate(spans):
        level = levels[i] if levels else -22.0
        seg = tone(end - start, level)
        x[int(start * rate): int(start * rate) + len(seg)] += seg
    return x


def events_of(events, kind):
    return [e for e in events if e.type == kind]


def test_runs_bridge_short_gaps_and_drop_clicks():
    mask = np.zeros(200, bool)
    mask[10:50] = True  # 0.2-1.0 s
    mask[60:100] = True  # 1.2-2.0 s: a 0.2 s pause, bridged
    mask[180:182] = True  # a 40 ms click, dropped
    runs = audio.runs_from_mask(mask)
    assert len(runs) == 1
    assert runs[0][0] == pytest.approx(0.2 - audio.RUN_PAD_S)
    assert runs[0][1] == pytest.approx(2.0 + audio.RUN_PAD_S)


def test_silence_and_hold_between_speech_on_two_channels():
    agent = line(40, [(0.5, 5.0), (12.0, 15.0), (30.0, 35.0)])
    customer = line(40, [(5.5, 6.0 + 0.5)], seed=1)
    turns = [turn(0.5, 5.0), turn(5.5, 6.5, "我想查话费", role="customer"), turn(12.0, 15.0, index=2),
             turn(30.0, 35.0, index=3)]
    _, m, events = metrics.analyse(turns, [agent, customer], RATE, 40.0, SETTINGS)
    silences, holds = events_of(events, "silence"), events_of(events, "hold")
    assert [(round(e.start), round(e.end)) for e in silences] == [(7, 12)]  # 6.5 → 12.0
    assert [(round(e.start), round(e.end)) for e in holds] == [(15, 30)]
    d = dict(m)
    assert d["n_silences"] == 2 and d["n_holds"] == 1
    assert d["longest_silence_s"] == pytest.approx(15.0, abs=0.2)
    assert d["talk_s_agent"] == pytest.approx(12.5, abs=0.4)
    assert d["talk_s_customer"] == pytest.approx(1.0, abs=0.2)


def test_a_redacted_span_is_not_silence():
    agent = line(20, [(0.5, 2.0), (9.0, 10.0)])
    customer = line(20, [], seed=1)
    turns = [turn(0.5, 2.0), turn(9.0, 10.0, index=2)]
    _, _, events = metrics.analyse(turns, [agent, customer], RATE, 20.0, SETTINGS)
    assert events_of(events, "silence")
    _, _, events = metrics.analyse(turns, [agent, customer], RATE, 20.0, SETTINGS, muted=[(4.0, 6.0)])
    assert not events_of(events, "silence") and not events_of(events, "hold")


def test_a_cough_during_a_hold_does_not_break_it():
    agent = line(40, [(0.5, 3.0), (15.0, 15.3), (30.0, 33.0)])  # 0.3 s noise burst, no words
    customer = line(40, [], seed=1)
    turns = [turn(0.5, 3.0), turn(30.0, 33.0, index=2)]
    _, _, events = metrics.analyse(turns, [agent, customer], RATE, 40.0, SETTINGS)
    assert [(round(e.start), round(e.end)) for e in events_of(events, "hold")] == [(3, 30)]


def test_speech_whisper_missed_still_counts_as_talk():
    agent = line(30, [(0.5, 3.0), (10.0, 14.0), (25.0, 28.0)])
    customer = line(30, [], seed=1)
    turns = [turn(0.5, 3.0), turn(25.0, 28.0, index=2)]  # nothing transcribed at 10-14 s
    _, m, events = metrics.analyse(turns, [agent, customer], RATE, 30.0, SETTINGS)
    assert dict(m)["talk_s_agent"] == pytest.approx(9.5, abs=0.4)
    # two gaps around the untranscribed speech, not one 22 s hold over it
    assert [(e.type, round(e.start), round(e.end)) for e in events] == [("silence", 3, 10), ("hold", 14, 25)]


def test_interruption_versus_backchannel():
    agent = line(20, [(1.0, 8.0)])
    customer = line(20, [(3.0, 5.0), (7.0, 7.5)], seed=1)
    turns = [turn(1.0, 8.0, "您好我这边看到您的账单里有一笔流量包的费用"),
             turn(3.0, 5.0, "不对我根本没开通", role="customer"),
             turn(7.0, 7.5, "嗯", role="customer", index=2)]
    _, m, events = metrics.analyse(turns, [agent, customer], RATE, 20.0, SETTINGS)
    inter = events_of(events, "interruption")
    assert [(e.role, e.detail, round(e.start), round(e.end)) for e in inter] == [
        ("customer", "agent", 3.0, 5.0)]
    assert [e.detail for e in events_of(events, "overlap")] == ["backchannel:agent"]
    d = dict(m)
    assert d["n_interruptions_customer"] == 1 and d["n_interruptions_agent"] == 0
    assert d["n_overlaps"] == 2


def test_mono_calls_have_no_interruption_counts():
    mix = line(10, [(0.5, 4.0), (3.0, 6.0)])
    turns = [turn(0.5, 4.0, role="unknown", channel=0), turn(4.2, 6.0, role="unknown", channel=0, index=2)]
    _, m, events = metrics.analyse(turns, [mix], RATE, 10.0, SETTINGS)
    assert dict(m)["n_interruptions_agent"] is None
    assert not events_of(events, "interruption")


def test_loudness_and_shouting_relative_to_the_speaker():
    spans = [(0.5, 2.5), (3.0, 5.0), (5.5, 7.5), (8.0, 10.0)]
    customer = line(12, spans, levels=[-26, -26, -26, -14], seed=1)
    agent = line(12, [], seed=2)
    turns = [turn(s, e, "你们怎么回事", role="customer", index=i) for i, (s, e) in enumerate(spans, 1)]
    out, m, _ = metrics.analyse(turns, [agent, customer], RATE, 12.0, SETTINGS)
    assert [t.shouting for t in out] == [False, False, False, True]
    assert out[0].loudness_dbfs == pytest.approx(-26, abs=1.0)
    assert dict(m)["n_shouting_turns_customer"] == 1


def test_rate_first_response_and_latency():
    agent = line(20, [(1.0, 4.0), (6.0, 9.0)])
    customer = line(20, [(4.5, 5.5)], seed=1)
    turns = [turn(1.0, 4.0, "您好欢迎致电星辰通信"), turn(4.5, 5.5, "查话费", role="customer"),
             turn(6.0, 9.0, "好的请您稍等", index=2)]
    _, m, _ = metrics.analyse(turns, [agent, customer], RATE, 20.0, SETTINGS)
    d = dict(m)
    assert d["agent_first_response_s"] == 1.0
    assert d["agent_response_latency_s"] == pytest.approx(0.5)
    assert d["rate_cpm_agent"] == pytest.approx(16 / (6.1 / 60), rel=0.05)


def test_without_audio_turn_spans_are_used():
    turns = [turn(0.0, 2.0), turn(10.0, 12.0, index=2)]
    out, m, events = metrics.analyse(turns, None, RATE, 12.0, SETTINGS)
    assert dict(m)["talk_s_agent"] == 4.0 and out[0].loudness_dbfs is None
    assert [e.type for e in events] == ["silence"]


def test_every_metric_is_named_in_order():
    _, m, _ = metrics.analyse([turn(0.0, 1.0)], None, RATE, 2.0, SETTINGS)
    assert tuple(name for name, _ in m) == metrics.CONVERSATION_METRICS
