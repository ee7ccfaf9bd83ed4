"""Training clips: candidates with word-safe boundaries, and an export that plays and mutes PII.

The calls are built by hand over the real fixture recording (8 kHz µ-law stereo, 26.6 s), so
the export cuts real audio without running Whisper.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechqa.calls import CallResult, Compliance, Event, Recording, RuleResult, Word
from speechqa.clips import (
    COLUMNS,
    ClipSettings,
    candidates,
    clips_frame,
    export_clips,
    safe_name,
    select_clips,
    widen,
)
from speechqa.errors import AudioError, SpeechQAError
from tests.conftest import FIXTURE_CALLS, turn

WAV = FIXTURE_CALLS / "fx_stereo.wav"
DURATION = 26.6
NO_EVENTS = pd.DataFrame(columns=["call_id", "type", "role", "start", "end"])


def _words(start, end, *texts):
    """Words evenly spread over a turn."""
    step = (end - start) / len(texts)
    return tuple(Word(round(start + i * step, 3), round(start + (i + 1) * step, 3), w, 0.9)
                 for i, w in enumerate(texts))


def call(call_id="fx_stereo", results=(), events=(), sentiments=(0.6, 0.5, 0.6, 0.6, 0.6, 0.6), meta=None,
         path=WAV) -> CallResult:
    """The fixture call's six turns (as in fx_stereo.truth.json), with the given scorecard and turn
    sentiments (the default: no turnaround)."""
    spec = [
        (0.898, 6.896, "agent", "您好，欢迎致电星辰通信，工号8012",
         ("您好", "欢迎致电", "星辰通信", "工号", "8012")),
        (8.066, 10.711, "customer", "我这个月话费多扣了", ("我", "这个月", "话费", "多扣了")),
        (11.532, 13.004, "agent", "非常抱歉，请您稍等", ("非常", "抱歉", "请您", "稍等")),
        (19.004, 21.285, "agent", "您本月话费是八十八元", ("您", "本月", "话费", "是", "八十八元")),
        (21.708, 22.641, "customer", "好的，谢谢", ("好的", "谢谢")),
        (23.748, 25.669, "agent", "还有什么可以帮您？感谢您的来电，再见",
         ("还有什么", "可以帮您", "感谢", "来电", "再见")),
    ]
    turns = tuple(
        turn(s, e, text, role=role, index=i, call_id=call_id, sentiment=sentiments[i], words=_words(s, e, *ws))
        for i, (s, e, role, text, ws) in enumerate(spec)
    )
    meta = meta if meta is not None else (("agent_id", "A1023"), ("agent_name", "王丽"), ("team", "客服一组"),
                                          ("started_at", "2026-11-22T10:05:12"))
    return CallResult(Recording(call_id, path, meta=tuple(meta)), DURATION, 2, turns, 1.0, True, "0" * 64,
                      events=tuple(events), compliance=Compliance(90.0, False, tuple(results)))


def rule(item, outcome, start, end, turn_index=0, call_id="fx_stereo", role="agent"):
    return RuleResult(call_id, item, outcome, 0.0, 10.0, f"{call_id}-{role}-{turn_index:04d}", start, end, "x")


def by_tag(result, s=None):
    return {c.tags.split(";")[0]: c for c in candidates(result, s)}


# -- boundaries ------------------------------------------------------------------------------


def test_padding_pulls_a_straddled_word_in_whole():
    words = [Word(0.9, 1.6, "您好", 0.9), Word(1.6, 3.0, "欢迎致电", 0.9), Word(3.0, 6.9, "星辰通信", 0.9)]
    start, end = widen(1.8, 2.5, words, DURATION, ClipSettings(pad_s=0.5))
    assert start == 0.9  # 1.3 fell inside 您好 (0.9-1.6): pulled back to its start
    assert end == 6.9  # 3.0 fell inside the last word: pushed to its end
    assert widen(3.5, 4.0, [Word(1.0, 3.2, "a", 0.9), Word(2.4, 2.8, "b", 0.9)], DURATION,
                 ClipSettings(pad_s=1.0)) == (1.0, 5.0)  # 2.5 is inside b, and b's start inside a


def test_clips_stay_in_the_call_and_reach_the_minimum_length():
    assert widen(0.1, 0.3, [], DURATION, ClipSettings(pad_s=0.2, min_s=2.0)) == (0.0, 2.0)
    assert widen(26.4, 26.5, [], DURATION, ClipSettings(pad_s=0.2, min_s=2.0)) == (24.6, 26.6)
    assert widen(1.0, 1.5, [], 1.2) == (0.0, 1.2)  # a call shorter than the minimum: all of it


def test_the_maximum_length_ends_before_a_word_not_inside_it():
    words = [Word(9.0, 12.0, "长句", 0.9)]
    assert widen(2.0, 20.0, words, DURATION, ClipSettings(pad_s=1.0, max_s=10.0)) == (1.0, 9.0)
    overlapping = [Word(8.5, 9.5, "嗯", 0.9), *words]  # the other speaker over the cut
    assert widen(2.0, 20.0, overlapping, DURATION, ClipSettings(pad_s=1.0, max_s=10.0)) == (1.0, 8.5)


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(st.floats(0, 26), st.floats(0.05, 3)), max_size=12),
       evidence=st.tuples(st.floats(0, 26), st.floats(0, 5)), pad=st.floats(0, 2))
def test_widen_never_cuts_a_word_and_holds_the_evidence(spans, evidence, pad):
    words = [Word(s, min(DURATION, s + d), "字", 0.9) for s, d in spans]
    start, end = evidence[0], min(DURATION, evidence[0] + evidence[1])
    lo, hi = widen(start, end, words, DURATION, ClipSettings(pad_s=pad, max_s=100.0))
    assert 0.0 <= lo <= start and end <= hi <= DURATION
    eps = 2e-3  # bounds are rounded to the millisecond, outwards
    assert not any(w.start + eps < bound < w.end - eps for w in words for bound in (lo, hi))


# -- candidates ------------------------------------------------------------------------------


def test_each_source_gives_its_label_and_tag_and_contains_its_evidence():
    result = call(results=[rule("greeting", "pass", 0.898, 2.5), rule("no_forbidden", "fail", 19.0, 20.0, 3),
                           rule("hold_notice", "fail", 13.004, 19.004, 2),
                           rule("verify", "fail", 19.4, 21.0, 3), rule("apology", "pass", 12.0, 12.4, 2)],
                  events=[Event("fx_stereo", "interruption", "agent", 9.5, 10.2, "customer")],
                  sentiments=(0.6, 0.1, 0.6, 0.6, 0.9, 0.6))  # the customer: 0.1 before 抱歉, 0.9 after
    found = by_tag(result)
    expected = {"greeting": "good", "forbidden_phrase": "bad", "unannounced_hold": "bad",
                "missed_verification": "bad", "agent_interruption": "bad", "de_escalation": "good"}
    assert {tag: c.label for tag, c in found.items()} == expected
    evidence = {"greeting": (0.898, 6.896), "forbidden_phrase": (19.0, 20.0),
                "unannounced_hold": (13.004, 19.004), "missed_verification": (19.4, 21.0),
                "agent_interruption": (9.5, 10.2), "de_escalation": (11.532, 22.641)}
    for tag, (start, end) in evidence.items():
        clip = found[tag]
        assert 0.0 <= clip.start <= start and end <= clip.end <= DURATION, tag
    greeting = found["greeting"]  # the whole greeting turn, not just the matched 您好
    assert greeting.clip_id == "fx_stereo-greeting-01" and greeting.role == "agent"
    assert greeting.excerpt.startswith("agent: 您好，欢迎致电") and greeting.item_id == "greeting"
    assert (greeting.agent_id, greeting.agent_name, greeting.team) == ("A1023", "王丽", "客服一组")
    assert (greeting.started_at, greeting.night, greeting.audio_path) == ("2026-11-22T10:05:12", "2026-11-22",
                                                                           str(WAV))
    assert found["de_escalation"].item_id == "apology" and found["agent_interruption"].item_id == ""
    assert "customer: 好的，谢谢" in found["de_escalation"].excerpt


def test_good_verification_and_closing_needs_both_items():
    offer = rule("closing_offer", "pass", 23.8, 24.6, 5)
    only_offer = call(results=[offer, rule("verify", "pass", 19.0, 19.5, 3)])
    assert "closing" not in by_tag(only_offer) and by_tag(only_offer)["verification"].label == "good"
    both = by_tag(call(results=[offer, rule("thanks", "pass", 24.8, 25.6, 5)]))
    closing = both["closing"]
    assert closing.label == "good" and closing.item_id == "closing_offer;thanks"
    assert closing.start <= 23.748 and closing.end == DURATION


def test_no_clip_without_a_reason():
    flat = call(sentiments=(0.6, 0.3, 0.6, 0.6, 0.4, 0.6),  # no clear rise after the apology
                results=[rule("greeting", "fail", 0.9, 1.5), rule("no_forbidden", "pass", 19.0, 20.0, 3),
                         rule("hold_notice", "pass", 13.0, 19.0, 2), rule("verify", "na", 19.0, 20.0, 3)],
                events=[Event("fx_stereo", "interruption", "customer", 9.5, 10.2, "agent"),
                        Event("fx_stereo", "hold", "both", 13.0, 19.0)])
    assert candidates(flat) == ()
    happy_already = call(sentiments=(0.6, 0.6, 0.6, 0.6, 0.95, 0.6))  # nothing to de-escalate
    assert candidates(happy_already) == ()


def test_evidence_without_times_falls_back_to_its_turn():
    rr = replace(rule("no_forbidden", "fail", 0, 0, 3), evidence_start=None, evidence_end=None)
    clip = by_tag(call(results=[rr]))["forbidden_phrase"]
    assert clip.start <= 19.004 and clip.end >= 21.285


def test_candidates_are_pure_and_ids_deterministic():
    result = call(results=[rule("no_forbidden", "fail", 1.0, 1.5), rule("no_forbidden", "fail", 19.0, 19.5, 3),
                           rule("greeting", "pass", 0.9, 1.5)])
    before = repr(result)
    first, second = candidates(result), candidates(result)
    assert first == second and repr(result) == before
    ids = [c.clip_id for c in first]
    assert len(set(ids)) == len(ids)
    assert {"fx_stereo-forbidden_phrase-01", "fx_stereo-forbidden_phrase-02"} <= set(ids)
    assert "fx_stereo-greeting-01" in ids
    assert [c.start for c in first] == sorted(c.start for c in first)


def test_clips_frame_columns_and_types():
    frame = clips_frame([call(results=[rule("greeting", "pass", 0.9, 1.5)]), call("other", meta=())],
                        ClipSettings(pad_s=0.5))
    assert list(frame.columns) == COLUMNS and len(frame) == 1
    assert frame.start.dtype == "float64" and frame.duration.iloc[0] == round(frame.end[0] - frame.start[0], 3)
    empty = clips_frame([])
    assert list(empty.columns) == COLUMNS and empty.empty and empty.start.dtype == "float64"


# -- export ----------------------------------------------------------------------------------


def decode(path):
    """Planar float samples, the rate and the channel count of an exported file."""
    import av

    with av.open(str(path)) as f:
        s = f.streams.audio[0]
        rate, channels = s.codec_context.sample_rate, s.codec_context.channels
        to_planar = av.AudioResampler(format="fltp", layout="stereo" if channels == 2 else "mono", rate=rate)
        frames = [p.to_ndarray() for fr in f.decode(s) for p in to_planar.resample(fr)]
        return np.concatenate(frames, axis=1), rate, channels, s.codec_context.name


def rms(samples):
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_exported_wav_plays_with_its_duration_and_masked_pii_is_silent(tmp_path):
    index = clips_frame([call(results=[rule("greeting", "pass", 0.898, 2.0),
                                       rule("verify", "fail", 19.4, 21.0, 3)])])
    events = pd.DataFrame([
        {"call_id": "fx_stereo", "type": "redaction", "role": "agent", "start": 4.0, "end": 5.0},
        {"call_id": "fx_stereo", "type": "silence", "role": "both", "start": 2.0, "end": 3.0},
        {"call_id": "someone_else", "type": "redaction", "role": "agent", "start": 1.5, "end": 2.5},
    ])
    out = export_clips(index, events, tmp_path / "muted", tag="greeting")
    assert len(out) == 1 and out.muted_spans.iloc[0] == 1
    row = out.iloc[0]
    audio, rate, channels, codec = decode(tmp_path / "muted" / row.file)
    assert (rate, channels, codec) == (8000, 2, "pcm_s16le")
    assert abs(audio.shape[1] / rate - (row.end - row.start)) < 0.05
    at = lambda t: int(round((t - row.start) * rate))  # noqa: E731
    muted = slice(at(4.0 - 0.1), at(5.0 + 0.1))  # padded by 0.1 s
    assert rms(audio[:, muted]) < 1e-4
    assert rms(audio[0, at(2.0):at(3.0)]) > 1e-2  # a silence event is not muted, nor another call's PII
    plain = export_clips(index, events, tmp_path / "plain", tag="greeting", mute_pii=False)
    assert plain.muted_spans.iloc[0] == 0
    audio2, _, _, _ = decode(tmp_path / "plain" / plain.iloc[0].file)
    assert rms(audio2[0, muted]) > 1e-2


def test_filters(tmp_path):
    other_night = call("fx_b", results=[rule("greeting", "pass", 0.9, 1.5, call_id="fx_b")],
                       meta=(("team", "客服二组"), ("night", "2026-11-21")))
    first = call(results=[rule("greeting", "pass", 0.9, 1.5), rule("no_forbidden", "fail", 19, 20, 3)])
    index = clips_frame([first, other_night])
    assert list(select_clips(index, tag="forbidden_phrase").clip_id) == ["fx_stereo-forbidden_phrase-01"]
    assert len(select_clips(index, tag="forbidden")) == 0  # a whole tag, not a substring
    assert set(select_clips(index, label="good").call_id) == {"fx_stereo", "fx_b"}
    assert list(select_clips(index, team="客服二组").call_id) == ["fx_b"]
    assert list(select_clips(index, since="2026-11-22").call_id) == ["fx_stereo", "fx_stereo"]
    assert len(select_clips(index, since="2026-11-21")) == 3  # fx_b by its manifest night
    assert len(select_clips(index, since="2026-11-23")) == 0
    assert len(select_clips(index, tag="greeting", label="good", team="客服一组", since="2026-11-01")) == 1
    assert len(export_clips(index, NO_EVENTS, tmp_path / "b", label="bad")) == 1
    with pytest.raises(SpeechQAError, match="YYYY-MM-DD"):
        select_clips(index, since="22/11/2026")
    with pytest.raises(SpeechQAError, match="good or bad"):
        select_clips(index, label="ugly")
    with pytest.raises(SpeechQAError, match="wav or mp3"):
        export_clips(index, NO_EVENTS, tmp_path / "d", fmt="flac")


def test_file_names_are_safe_and_the_indexes_list_them(tmp_path):
    evil = "../evil id/x"
    assert safe_name(evil) != safe_name("../evil id/y") != safe_name("__evil_id_y")
    index = clips_frame([call(evil, results=[rule("greeting", "pass", 0.9, 1.5, call_id=evil),
                                             rule("no_forbidden", "fail", 19, 20, 3, call_id=evil)])])
    dest = tmp_path / "dest"
    out = export_clips(index, NO_EVENTS, dest)
    assert len(out) == 2
    for name in out.file:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.wav", name) and name.isascii()
        assert (dest / name).is_file() and (dest / name).resolve().parent == dest.resolve()
    assert sorted(p.name for p in dest.iterdir()) == sorted([*out.file, "clips.csv", "clips.jsonl"])
    assert (dest / "clips.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    listed = pd.read_csv(dest / "clips.csv", encoding="utf-8-sig")
    assert list(listed.file) == list(out.file) and list(listed.call_id) == [evil, evil]
    lines = [json.loads(line) for line in (dest / "clips.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["file"] for r in lines] == list(out.file) and lines[0]["team"] == "客服一组"
    assert lines[0]["muted_spans"] == 0 and isinstance(lines[0]["start"], float)
    empty = export_clips(index, NO_EVENTS, tmp_path / "none", tag="closing")
    assert empty.empty and (tmp_path / "none" / "clips.jsonl").read_text() == ""


def test_mp3_export_plays(tmp_path):
    index = clips_frame([call(results=[rule("greeting", "pass", 1.6, 3.0)])])
    out = export_clips(index, NO_EVENTS, tmp_path, fmt="mp3")
    audio, rate, channels, codec = decode(tmp_path / out.iloc[0].file)
    assert out.iloc[0].file.endswith(".mp3") and (rate, channels) == (8000, 2)
    assert codec.startswith("mp3")
    assert abs(audio.shape[1] / rate - (out.iloc[0].end - out.iloc[0].start)) < 0.15  # encoder padding


def test_export_errors_are_clear(tmp_path, monkeypatch):
    import av

    index = clips_frame([call(results=[rule("greeting", "pass", 0.9, 1.5)], path=tmp_path / "gone.wav")])
    with pytest.raises(AudioError, match="gone.wav: recording not found"):
        export_clips(index, NO_EVENTS, tmp_path / "a")
    with pytest.raises(SpeechQAError, match="cannot mute"):
        export_clips(index, pd.DataFrame([{"call_id": "fx_stereo", "kind": "redaction"}]), tmp_path / "b")
    monkeypatch.setattr(av, "codecs_available", {"pcm_s16le"})
    with pytest.raises(SpeechQAError, match="no libmp3lame encoder"):
        export_clips(index, NO_EVENTS, tmp_path / "c", fmt="mp3")
    assert not (tmp_path / "c").exists()


def test_export_command_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from speechqa.cli import main

    out = tmp_path / "out"
    out.mkdir()
    clips_frame([call(results=[rule("greeting", "pass", 0.9, 1.5), rule("no_forbidden", "fail", 19, 20, 3)])]
                ).to_parquet(out / "training_clips.parquet")
    NO_EVENTS.to_parquet(out / "events.parquet")
    dest = tmp_path / "d"
    result = CliRunner().invoke(main, ["clips", "export", str(out), "--dest", str(dest), "--label", "bad"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 clips") and len(list(dest.glob("*.wav"))) == 1
    bad = CliRunner().invoke(main, ["clips", "export", str(out), "--dest", str(tmp_path / "e"), "--since", "x"])
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.output
