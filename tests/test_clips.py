"""Training clips: candidates with word-safe boundaries, and export that plays and mutes PII."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from speechqa import clips
from speechqa.calls import CallResult, Compliance, Event, Recording, RuleResult, Word
from speechqa.clips import candidates, clips_frame, export_clips, safe_name, widen
from tests.conftest import FIXTURE_CALLS, turn

WAV = FIXTURE_CALLS / "fx_stereo.wav"


def call(call_id="fx_stereo", results=(), events=(), turns=None) -> CallResult:
    turns = turns or (
        turn(0.9, 6.9, "您好，欢迎致电星辰通信，工号8012", role="agent", call_id=call_id, sentiment=0.6,
             words=(Word(0.9, 1.6, "您好", 0.9), Word(1.6, 3.0, "欢迎致电", 0.9),
                    Word(3.0, 6.9, "星辰通信工号8012", 0.9))),
        turn(8.0, 10.7, "我这个月话费多扣了", role="customer", call_id=call_id, sentiment=0.1,
             words=(Word(8.0, 10.7, "我这个月话费多扣了", 0.9),)),
        turn(11.5, 13.0, "非常抱歉，请您稍等", role="agent", index=2, call_id=call_id, sentiment=0.6,
             words=(Word(11.5, 13.0, "非常抱歉请您稍等", 0.9),)),
        turn(21.7, 22.6, "好的，谢谢，问题解决了", role="customer", index=2, call_id=call_id, sentiment=0.9,
             words=(Word(21.7, 22.6, "好的谢谢", 0.9),)),
    )
    meta = (("agent_id", "A1"), ("team", "一组"), ("started_at", "2026-11-22T10:05"))
    rec = Recording(call_id, WAV, meta=meta)
    return CallResult(rec, 25.8, 2, tuple(turns), 1.0, True, "0" * 64, events=tuple(events),
                      compliance=Compliance(90.0, False, tuple(results)))


def rule(item, outcome, start, end, call_id="fx_stereo"):
    return RuleResult(call_id, item, outcome, 0.0, 10.0, f"{call_id}-agent-0001", start, end, "x", 1.0, "")


def test_padding_never_cuts_a_word_and_stays_in_the_call():
    c = call()
    start, end = widen(1.8, 2.5, c.turns, c.duration_s, pad_s=0.5)
    assert start == 0.9  # 1.3 fell inside 您好 (0.9-1.6): pulled back to its start
    assert end == 6.9  # 3.0 fell inside the last word: pushed to its end
    lo, hi = widen(0.2, 1.0, c.turns, c.duration_s, pad_s=1.0)
    assert lo == 0.0 and hi <= c.duration_s


def test_candidates_from_rules_events_and_turnarounds():
    c = call(results=[rule("greeting", "pass", 1.6, 3.0), rule("no_forbidden", "fail", 11.5, 13.0),
                      rule("hold_notice", "fail", 13.0, 19.0), rule("verify", "fail", 8.0, 10.0)],
             events=[Event("fx_stereo", "interruption", "agent", 9.0, 10.0, "customer")])
    found = {c.tags.split(";")[0]: c for c in candidates(c)}
    assert found["greeting"].label == "good" and found["forbidden_phrase"].label == "bad"
    assert found["unannounced_hold"].label == "bad" and found["missed_verification"].label == "bad"
    assert found["agent_interruption"].label == "bad"
    assert found["de_escalation"].label == "good"  # 抱歉 then the customer went 0.1 -> 0.9
    for clip in found.values():
        assert 0 <= clip.start <= clip.end <= 25.8
    g = found["greeting"]
    assert g.start <= 1.6 and g.end >= 3.0 and g.clip_id == "fx_stereo-greeting-01"
    assert "欢迎致电" in g.excerpt and g.team == "一组"
    frame = clips_frame([c])
    assert list(frame.columns) == clips.COLUMNS and len(frame) == len(found)


def test_safe_names():
    name = safe_name("../evil id/x")
    assert "/" not in name and ".." not in name and name.isascii()
    assert safe_name("../evil id/x") != safe_name("../evil id/y")


def _read(path):
    """Planar float samples, the rate and the channel count of an exported file."""
    import av

    with av.open(str(path)) as f:
        s = f.streams.audio[0]
        rate, channels = s.codec_context.sample_rate, s.codec_context.channels
        to_planar = av.AudioResampler(format="fltp", layout="stereo" if channels == 2 else "mono", rate=rate)
        frames = [p.to_ndarray() for fr in f.decode(s) for p in to_planar.resample(fr)]
        return np.concatenate(frames, axis=1), rate, channels


def test_exported_clips_play_with_their_duration_and_masked_pii_is_silent(tmp_path):
    c = call(results=[rule("greeting", "pass", 1.6, 3.0), rule("no_forbidden", "fail", 11.5, 13.0)])
    index = clips_frame([c])
    events = pd.DataFrame([{"call_id": "fx_stereo", "type": "redaction", "role": "agent", "start": 4.0,
                            "end": 5.0, "detail": "mobile"}])
    out = export_clips(index, events, tmp_path / "muted", tag="greeting")
    assert len(out) == 1 and (tmp_path / "muted" / "clips.csv").is_file()
    assert (tmp_path / "muted" / "clips.jsonl").read_text(encoding="utf-8").count("\n") == 1
    row = out.iloc[0]
    audio, rate, channels = _read(tmp_path / "muted" / row.file)
    assert channels == 2 and abs(audio.shape[1] / rate - (row.end - row.start)) < 0.05
    span = slice(int((4.0 - row.start) * rate), int((5.0 - row.start) * rate))
    assert np.sqrt(np.mean(audio[:, span].astype(np.float64) ** 2)) < 1e-4
    plain = export_clips(index, events, tmp_path / "plain", tag="greeting", mute_pii=False)
    audio2, _, _ = _read(tmp_path / "plain" / plain.iloc[0].file)
    assert np.sqrt(np.mean(audio2[:, span].astype(np.float64) ** 2)) > 1e-3


def test_filters(tmp_path):
    index = clips_frame([call(results=[rule("greeting", "pass", 1.6, 3.0),
                                       rule("no_forbidden", "fail", 11.5, 13.0)])])
    empty = pd.DataFrame(columns=["call_id", "type", "start", "end"])
    assert len(export_clips(index, empty, tmp_path / "a", tag="forbidden_phrase")) == 1
    assert len(export_clips(index, empty, tmp_path / "b", team="二组")) == 0
    assert len(export_clips(index, empty, tmp_path / "c", since="2026-11-23")) == 0
    with pytest.raises(Exception, match="wav or mp3"):
        export_clips(index, empty, tmp_path / "d", fmt="flac")


def test_mp3_export_plays(tmp_path):
    index = clips_frame([call(results=[rule("greeting", "pass", 1.6, 3.0)])])
    empty = pd.DataFrame(columns=["call_id", "type", "start", "end"])
    out = export_clips(index, empty, tmp_path, fmt="mp3")
    audio, rate, _ = _read(tmp_path / out.iloc[0].file)
    assert out.iloc[0].file.endswith(".mp3")
    assert abs(audio.shape[1] / rate - (out.iloc[0].end - out.iloc[0].start)) < 0.15  # encoder padding
