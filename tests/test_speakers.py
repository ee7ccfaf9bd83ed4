"""Mono calls: voices to turns, roles from evidence, confidence and what follows from it.

Unit tests on records built in memory; the speaker models themselves run on real audio in
tests/test_speakers_e2e.py and tests/test_e2e.py."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from speechqa import asr, diarize, metrics, roles, sampling
from speechqa.calls import CallResult, Recording
from speechqa.compliance import load_scorecard, score_call
from speechqa.config import ChannelSettings, GuardSettings, MetricsSettings, TurnSettings, load_settings
from speechqa.errors import ConfigError
from speechqa.text import normalize
from tests.conftest import segment, transcript, turn, word

V = diarize.SpeakerTurn


def test_a_word_belongs_to_the_voice_that_talks_most_during_it_or_the_nearest():
    voices = [V(0.0, 2.0, 0), V(1.8, 4.0, 1), V(6.0, 7.0, 0)]
    assert diarize.speaker_at(voices, 0.5, 1.0) == 0
    assert diarize.speaker_at(voices, 1.7, 2.6) == 1  # 0.2 s of voice 0, 0.6 s of voice 1
    assert diarize.speaker_at(voices, 4.5, 4.8) == 1  # in a gap: the nearest voice
    assert diarize.speaker_at([], 0.0, 1.0) == -1


def test_whisper_turns_are_cut_where_the_voice_changes_even_without_a_pause():
    seg = segment([word(0.0, 0.6, "您好"), word(0.6, 1.2, "请讲"),
                   word(1.25, 1.8, "我想"), word(1.8, 2.4, "退款")])
    voices = [V(0.0, 1.22, 1), V(1.22, 2.5, 0)]
    turns = asr.to_turns(transcript([seg]), "m1", ChannelSettings(), TurnSettings(gap_s=0.7), GuardSettings(),
                         speakers=voices)
    assert [(t.text, t.speaker, t.role, t.channel) for t in turns] == [
        ("您好请讲", 1, "unknown", 0), ("我想退款", 0, "unknown", 0)]


def _voices_turns(*lines):
    """Turns of a diarised mono call: (speaker, start, end, text)."""
    return tuple(dataclasses.replace(turn(s, e, text, role="unknown", channel=0, index=i + 1), speaker=sp)
                 for i, (sp, s, e, text) in enumerate(lines))


def _voices(centroids=((1.0, 0.0), (0.0, 1.0)), similarity=0.3):
    """A diarisation's voices, without its turns (the tests give the Whisper turns)."""
    return diarize.Diarization((), tuple(centroids), similarity, 0.0, "test")


CALL = (
    (1, 0.5, 3.0, "您好，欢迎致电远航租车，工号3021，请问有什么可以帮您？"),
    (0, 3.5, 8.0, "我上周在你们这租的车，押金到现在还没退。"),
    (1, 8.5, 11.0, "请问您的手机号是多少？"),
    (0, 11.5, 14.0, "一三八一二三四五六七八。"),
    (1, 14.5, 17.0, "好的，请您稍等，我帮您查一下。"),
)


def test_the_script_the_opening_and_question_answer_pairs_make_the_agent():
    cues = roles.scorecard_cues(load_scorecard())
    decision = roles.decide(_voices_turns(*CALL), _voices(), asr.load_agent_cues(), cues, inbound=True)
    assert decision.agent_speaker == 1 and decision.confidence > 0.95
    evidence = dict(decision.evidence)
    assert evidence["script"] < 0 and evidence["first"] < 0 and evidence["pairs"] < 0  # all for voice 1
    labelled = roles.apply(_voices_turns(*CALL), decision, "m1")
    assert [t.role for t in labelled] == ["agent", "customer", "agent", "customer", "agent"]
    assert [t.turn_id for t in labelled[:2]] == ["m1-agent-0001", "m1-customer-0001"]


def test_an_outbound_call_does_not_count_who_spoke_first():
    lines = ((0, 0.5, 1.0, "喂？"), (1, 1.5, 4.0, "你好，我是快递员，你的包裹到了。"))
    decision = roles.decide(_voices_turns(*lines), _voices(), asr.load_agent_cues(), None, inbound=False)
    assert "first" not in dict(decision.evidence)


def test_no_evidence_is_an_uncertain_guess_not_a_sure_one():
    lines = ((0, 0.5, 2.0, "喂。"), (1, 2.5, 4.0, "嗯。"), (0, 4.5, 6.0, "行。"))
    decision = roles.decide(_voices_turns(*lines), _voices(), asr.load_agent_cues(), None, inbound=False)
    assert decision.confidence == pytest.approx(0.5) and decision.uncertain(0.8)


def test_the_enrolled_voice_decides_a_call_whose_words_say_nothing():
    lines = ((0, 0.5, 2.0, "喂。"), (1, 2.5, 4.0, "嗯，说吧。"), (0, 4.5, 6.0, "行。"))
    agent_voice = np.array([0.3, 0.954])
    decision = roles.decide(_voices_turns(*lines), _voices(((0.0, 1.0), (1.0, 0.0))), asr.load_agent_cues(),
                            None, inbound=False, voiceprint=agent_voice)
    assert decision.agent_speaker == 0 and decision.confidence > 0.9
    assert decision.voice_match == pytest.approx(0.954)


def test_one_voice_split_in_two_is_never_sure():
    decision = roles.decide(_voices_turns(*CALL), _voices(similarity=0.95), asr.load_agent_cues(), None,
                            inbound=True)
    assert decision.confidence <= 0.5


def _scored(turns, flags=(), decision=None):
    turns = tuple(dataclasses.replace(t, match_text=normalize(t.text)) for t in turns)
    result = CallResult(Recording("m1", Path("m1.wav")), 20.0, 1, turns, 1.0, True, "0" * 64,
                        flags=flags, roles=decision)
    return score_call(result, load_scorecard())


def test_an_uncertain_call_gets_na_on_role_items_and_no_made_up_score():
    decision = roles.RoleDecision("diarised", 1, 0.62)
    labelled = roles.apply(_voices_turns(*CALL), roles.RoleDecision("diarised", 1, 0.99), "m1")
    sure, unsure = _scored(labelled), _scored(labelled, ("roles_uncertain",), decision)
    by_item = {r.item_id: r for r in unsure.results}
    assert {r.item_id: r.outcome for r in sure.results}["greeting"] == "pass"
    assert by_item["greeting"].outcome == "na" and "0.62" in by_item["greeting"].reason
    assert all(r.outcome == "na" for r in unsure.results)  # every shipped item names a role
    assert math.isnan(unsure.score) and not unsure.auto_fail


def test_a_role_free_item_is_still_scored_on_an_uncertain_call(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('''[scorecard]
name = "t"
version = "1"
[[sections]]
id = "s"
name = "s"
[[sections.items]]
id = "anyone_thanks"
name = "thanks"
severity = "minor"
points = 50
pass = { phrases = ["谢谢"] }
[[sections.items]]
id = "agent_thanks"
name = "agent thanks"
severity = "minor"
points = 50
pass = { phrases = ["谢谢"], role = "agent" }
''', encoding="utf-8")
    card = load_scorecard(str(rules))
    t = (dataclasses.replace(turn(0.5, 2.0, "好的谢谢", role="agent", channel=0), match_text="好的谢谢"),)
    result = CallResult(Recording("m1", Path("m1.wav")), 20.0, 1, t, 1.0, True, "0" * 64,
                        flags=("roles_uncertain",), roles=roles.RoleDecision("diarised", 0, 0.6))
    outcomes = {r.item_id: r.outcome for r in score_call(result, card).results}
    assert outcomes == {"anyone_thanks": "pass", "agent_thanks": "na"}


def test_an_uncertain_call_must_be_reviewed_and_says_why():
    row = {"flags": "roles_uncertain", "role_confidence": 0.61, "compliance_score": float("nan")}
    reasons = sampling.must_review_reasons(row, load_settings().sampling)
    assert any("0.61" in zh and "mono" in en for zh, en in reasons)


def test_interruptions_on_a_mono_call_come_from_the_voices_overlap():
    agent = turn(0.5, 6.0, "您好，请问有什么可以帮您，我这边帮您查询一下订单的情况", role="agent", channel=0)
    cust = turn(4.5, 9.0, "你别说了，我就要退款，马上给我退", role="customer", channel=0)
    voices = [(0.5, 6.0, "agent"), (4.5, 9.0, "customer"), (2.0, 2.8, "customer")]  # and a 嗯 Whisper missed
    _, values, events = metrics.analyse([agent, cust], None, 16000, 10.0, MetricsSettings(), voices=voices)
    kinds = sorted((e.type, e.role) for e in events if e.type in ("interruption", "overlap"))
    assert kinds == [("interruption", "customer"), ("overlap", "customer")]
    assert dict(values)["talk_s_agent"] == pytest.approx(5.5)


def test_clustering_splits_a_local_speaker_made_of_two_voices_and_gives_a_backchannel_the_other_voice():
    rng = np.random.default_rng(0)
    common = rng.normal(size=16)  # what every chunk of the call shares (the line, the codec)
    voice_a, voice_b = common + 0.3 * rng.normal(size=16), common + 0.3 * rng.normal(size=16)

    def chunk(voice):
        v = voice + 0.05 * rng.normal(size=16)
        return v / np.linalg.norm(v)

    active = np.zeros((diarize.FRAMES, 3), bool)
    active[:500, 0] = True
    active[200:210, 1] = True  # a 嗯 too short to embed, under local speaker 0
    first = diarize._Window(0.0, active.copy(), diarize.FRAMES)
    first.chunks = [(0, 0, 90, chunk(voice_a)), (0, 90, 180, chunk(voice_a)), (0, 300, 390, chunk(voice_a))]
    # the segmentation heard two voices as one local speaker: its chunks say otherwise
    second = diarize._Window(10.0, active.copy(), diarize.FRAMES)
    second.chunks = [(0, 0, 90, chunk(voice_b)), (0, 90, 180, chunk(voice_b)), (0, 300, 390, chunk(voice_a))]
    windows = [first, second]
    centroids = diarize.cluster(windows)
    assert len(centroids) == 2
    assert first.chunk_voices[0] == second.chunk_voices[2] != second.chunk_voices[0]
    assert first.assigned[1] != first.assigned[0]  # the backchannel: the other voice
    voices = second.voices(2)
    a, b = first.chunk_voices[0], 1 - first.chunk_voices[0]
    assert voices[310, a] and not voices[310, b] and voices[50, b] and not voices[50, a]
    turns = diarize.reconstruct(windows, 2)
    assert {t.speaker for t in turns} == {0, 1}


def test_speaker_settings_are_checked():
    with pytest.raises(ConfigError, match=r"\[speakers\] min_confidence"):
        load_settings(overrides={"speakers": {"min_confidence": 1.5}})
    with pytest.raises(ConfigError, match=r"\[speakers\] min_embed_s"):
        load_settings(overrides={"speakers": {"min_embed_s": 4.0, "chunk_s": 1.5}})


def test_a_damaged_cache_entry_is_heard_again(tmp_path):
    d = diarize.Diarization((V(0.0, 1.0, 0),), ((1.0, 0.0),), 0.2, 0.5, "sha")
    diarize.save_cached(tmp_path, "k", d)
    assert diarize.load_cached(tmp_path, "k") == d
    (tmp_path / "speakers" / "k.json").write_text("{not json", encoding="utf-8")
    assert diarize.load_cached(tmp_path, "k") is None
