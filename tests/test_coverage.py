"""The transcript against the speech: the prompt follows the language, prompt echoes, coverage,
and what a call in another language or with missing speech gets (issue 10). Unit checks on
synthetic signals and in-memory turns; the real model runs in test_language_e2e.py."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib

import pytest

from speechqa import asr, audio, coverage, sampling
from speechqa.calls import Word
from speechqa.compliance import score_call
from speechqa.compliance.schema import parse_scorecard
from speechqa.config import SamplingSettings, load_settings
from speechqa.errors import ConfigError
from speechqa.sentiment import escalations, score_turns
from tests.conftest import turn
from tests.test_compliance import call
from tests.test_metrics import line

RATE = 8000


def speech_of(channels, turns):
    """coverage.channel_speech of some channels' samples (the pipeline measures their levels once)."""
    return coverage.channel_speech([audio.frame_levels(ch, RATE) for ch in channels], turns)
ZH_PROMPT = asr.load_prompts()["zh"].prompt


# -- the prompt follows the language -------------------------------------------------------------


def test_each_language_gets_its_own_prompt_and_none_gets_a_mandarin_one():
    a = load_settings(environ={}).asr
    assert asr.prompt_for(a, "zh").prompt == ZH_PROMPT and "请问有什么可以帮您" in ZH_PROMPT
    assert asr.prompt_for(a, "en") == asr.Prompt("en")  # shipped: no prompt for English
    assert asr.prompt_for(a, "fr") == asr.Prompt("fr")  # a language without an entry: none
    written = dataclasses.replace(a, initial_prompt="以下是客服电话录音。", hotwords="星辰通信 iPhone")
    assert asr.prompt_for(written, "zh") == asr.Prompt("zh", "以下是客服电话录音。", "星辰通信 iPhone")
    assert asr.prompt_for(written, "en") == asr.Prompt("en")  # a Chinese prompt never reaches English
    assert asr.prompt_for(dataclasses.replace(a, hotwords="iPhone"), "zh").hotwords == "iPhone"
    assert asr.prompt_for(dataclasses.replace(a, initial_prompt=""), "zh").prompt == ""


@pytest.mark.parametrize(("toml", "message"), [
    ('[xx]\nprompt = "hi"\n', "[xx]: not a Whisper language code"),
    ('[en]\nprompt = "请问有什么可以帮您"\n', "[en]: prompt is not written in en's script"),
    ('[zh]\nprompt = 3\n', "[zh]: prompt must be a string"),
    ('[zh]\nprmpt = "您好"\n', "[zh]: unknown key 'prmpt'"),
])
def test_a_bad_prompt_file_names_the_file_and_language(tmp_path, toml, message):
    path = tmp_path / "prompts.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        asr.load_prompts(str(path))


def test_language_settings_are_checked():
    auto = load_settings(environ={}, overrides={"asr": {"language": "auto", "languages": "zh|en"}})
    assert auto.asr.languages == ("zh", "en")
    with pytest.raises(ConfigError, match="language must be auto or a Whisper language code"):
        load_settings(environ={}, overrides={"asr": {"language": "mandarin"}})
    with pytest.raises(ConfigError, match="languages must be Whisper language codes"):
        load_settings(environ={}, overrides={"asr": {"language": "auto", "languages": "zh|klingon"}})


def test_the_cache_key_is_the_prompt_whisper_gets(tmp_path):
    a = load_settings(environ={}).asr
    key = asr.cache_key("a" * 64, "m", "int8", a)
    # the same prompt written out, or a site file holding the same entry: the same transcript
    assert asr.cache_key("a" * 64, "m", "int8", dataclasses.replace(a, initial_prompt=ZH_PROMPT)) == key
    site = tmp_path / "prompts.toml"
    site.write_text(f'[zh]\nprompt = "{ZH_PROMPT}"\n', encoding="utf-8")
    assert asr.cache_key("a" * 64, "m", "int8", dataclasses.replace(a, prompts_file=str(site))) == key
    site.write_text('[zh]\nprompt = "以下是普通话的句子。"\n', encoding="utf-8")
    asr.load_prompts.cache_clear()
    assert asr.cache_key("a" * 64, "m", "int8", dataclasses.replace(a, prompts_file=str(site))) != key
    auto = dataclasses.replace(a, language="auto")
    assert asr.cache_key("a" * 64, "m", "int8", auto) != key


def test_the_lexicon_repairs_only_mandarin_channels():
    from speechqa.lexicon import lexicon_for
    from tests.conftest import segment, transcript, word

    lexicon = lexicon_for(load_settings(environ={}).lexicon)
    t = transcript([segment([word(0.0, 1.0, "我想办理携号转往")])])
    zh = asr.to_turns(t, "c1", load_settings(environ={}).channels, load_settings(environ={}).turns,
                      load_settings(environ={}).guards, lexicon)
    en_channels = tuple(dataclasses.replace(ch, language="en") for ch in t.channels)
    en = asr.to_turns(dataclasses.replace(t, channels=en_channels, language="en"), "c1",
                      load_settings(environ={}).channels, load_settings(environ={}).turns,
                      load_settings(environ={}).guards, lexicon)
    assert zh[0].text == "我想办理携号转网" and en[0].text == "我想办理携号转往"


def test_a_call_is_in_the_language_most_of_its_speech_is_in():
    from tests.conftest import segment, word

    ch0 = asr.ChannelTranscript(0, (segment([word(0.0, 9.0, "hello")]),), language="en")
    ch1 = asr.ChannelTranscript(1, (segment([word(0.0, 2.0, "你好")]),), language="zh")
    assert asr.call_language((ch0, ch1), "zh") == "en"
    assert asr.call_language((asr.ChannelTranscript(0, (), language=""),), "zh") == "zh"


# -- coverage --------------------------------------------------------------------------------------


def worded(start, end, text, role="agent", index=1, channel=None, flags=()):
    """A turn whose words fill its span."""
    return turn(start, end, text, role=role, index=index, channel=channel, flags=flags,
                words=(Word(start, end, text, 0.9),))


def test_coverage_is_the_share_of_detected_speech_with_words():
    agent_line = line(30.0, [(1.0, 5.0), (10.0, 14.0)])  # 8 s of talk
    customer_line = line(30.0, [(6.0, 9.0), (16.0, 26.0)])  # 13 s, of which 10 s have no words
    turns = [worded(1.0, 5.0, "您好请问有什么可以帮您"), worded(10.0, 14.0, "好的我帮您查一下", index=2),
             worded(6.0, 9.0, "我想查话费", role="customer")]
    speech = speech_of([agent_line, customer_line], turns)
    found = coverage.coverage(turns, speech)
    assert found["coverage_agent"] == pytest.approx(1.0, abs=0.03)
    assert found["coverage_customer"] == pytest.approx(3 / 13, abs=0.05)
    assert found["coverage"] == pytest.approx(11 / 21, abs=0.05)
    assert coverage.low_coverage(found, 0.8) and not coverage.low_coverage({"coverage_agent": 0.9}, 0.8)
    # a click or a cough with no words is not speech Whisper missed
    clicks = line(30.0, [(1.0, 5.0), (20.0, 20.1)])
    quiet = coverage.coverage(turns[:1], speech_of([clicks], turns[:1]))
    assert quiet["coverage"] == pytest.approx(1.0, abs=0.03)


def test_too_little_speech_has_no_coverage_figure():
    turns = [worded(1.0, 2.0, "喂")]
    found = coverage.coverage(turns, speech_of([line(10.0, [(1.0, 2.0)])], turns))
    assert found["coverage"] is None and not coverage.low_coverage(found, 0.8)


# -- prompt echoes ---------------------------------------------------------------------------------


def test_prompt_fragments_are_most_of_a_turn_from_the_prompt():
    assert coverage.prompt_fragment("请问有什么可以帮您", ZH_PROMPT) == "请问有什么可以帮您"
    assert coverage.prompt_fragment("请问有什么问题０请问有什么问题", ZH_PROMPT) == ""  # 请问有什么: 5 of 14
    assert coverage.prompt_fragment("请问有什么", ZH_PROMPT) == "请问有什么"
    assert coverage.prompt_fragment("我的宽带断了三天了，你们什么时候来修", ZH_PROMPT) == ""
    assert coverage.prompt_fragment("好的", ZH_PROMPT) == ""  # too short to tell


def test_an_echo_over_silence_or_in_the_wrong_script_is_flagged_and_real_speech_is_not():
    agent_line = line(40.0, [(0.5, 4.5), (20.0, 21.0)])
    turns = (
        worded(0.5, 4.5, "您好，欢迎致电客服中心，请问有什么可以帮您？"),  # said: loud speech under it
        worded(10.0, 13.0, "请问有什么可以帮您", index=2),  # over silence
        worded(20.0, 21.0, "请问有什么可以帮您？好的，我帮您查一下。", index=3),  # 16 characters in 1 s
    )
    speech = speech_of([agent_line], turns)
    flagged = coverage.flag_echoes(turns, {0: ("zh", ZH_PROMPT)}, speech)
    assert ["prompt_echo" in t.flags for t in flagged] == [False, True, True]
    # an English channel primed with nothing has no prompt to echo; one primed in Chinese does
    english = (worded(0.5, 4.5, "请问有什么可以帮您"),)
    assert coverage.flag_echoes(english, {0: ("en", "")}, speech) == english
    assert "prompt_echo" in coverage.flag_echoes(english, {0: ("en", ZH_PROMPT)}, speech)[0].flags


def test_the_prompt_written_for_a_long_utterance_is_an_echo():
    reading = line(20.0, [(2.0, 14.0)])  # 12 s of speech, and only the prompt's 1.5 s of words
    echo = (worded(2.0, 3.5, "请问有什么可以帮您"),)
    flagged = coverage.flag_echoes(echo, {0: ("zh", ZH_PROMPT)}, speech_of([reading], echo))
    assert "prompt_echo" in flagged[0].flags
    said = (worded(2.0, 14.0, "请问有什么可以帮您"),)  # the words fill the utterance: said slowly, kept
    kept = coverage.flag_echoes(said, {0: ("zh", ZH_PROMPT)}, speech_of([reading], said))
    assert kept == said


def test_the_same_fragment_again_and_again_is_a_loop_but_the_first_said_one_stands():
    spans = [(1.0 + 5 * k, 3.5 + 5 * k) for k in range(4)]
    ch = line(30.0, spans)
    turns = tuple(worded(s, e, "请问有什么可以帮您", index=k + 1) for k, (s, e) in enumerate(spans))
    flagged = coverage.flag_echoes(turns, {0: ("zh", ZH_PROMPT)}, speech_of([ch], turns))
    assert ["prompt_echo" in t.flags for t in flagged] == [False, True, True, True]
    two = coverage.flag_echoes(turns[:2], {0: ("zh", ZH_PROMPT)},
                               speech_of([ch], turns[:2]))
    assert not any("prompt_echo" in t.flags for t in two)  # said twice is still speech


def test_an_echo_is_no_evidence_and_feeds_no_sentiment():
    card = parse_scorecard(tomllib.loads(
        '[[sections]]\nid = "s"\n[[sections.items]]\nid = "greeting"\npoints = 100\n'
        'pass = { phrases = ["请问有什么可以帮您"], role = "agent" }\n'), "rules.toml")
    echo = worded(10.0, 13.0, "请问有什么可以帮您", flags=("prompt_echo",))
    said = dataclasses.replace(echo, flags=())
    other = worded(14.0, 16.0, "好的，稍等", index=2)
    assert score_call(call(said, other), card).results[0].outcome == "pass"
    failed = score_call(call(echo, other), card).results[0]
    assert failed.outcome == "fail" and failed.evidence_turn_id == ""
    # a call of nothing but echoes has no words at all: not scored, like an empty line
    assert score_call(call(echo), card).results[0].outcome == "na"
    threat = worded(1.0, 3.0, "我要投诉你们，打12315", role="customer", flags=("prompt_echo",))
    scored = score_turns((threat, dataclasses.replace(threat, flags=(), turn_id="c1-customer-0002")))
    assert scored[0].sentiment is None and scored[1].sentiment is not None
    assert {e.turn_id for e in escalations(scored)} == {"c1-customer-0002"}


# -- a call the scorecard cannot score, and one with speech missing --------------------------------


def test_a_call_in_another_language_is_not_scored_and_must_be_reviewed():
    from speechqa.compliance import load_scorecard

    shipped = load_scorecard()
    assert shipped.language == "zh"
    english = dataclasses.replace(call(worded(0.0, 3.0, "Hello, how can I help you?")), language="en")
    c = score_call(english, shipped)
    assert math.isnan(c.score) and not c.auto_fail and {r.outcome for r in c.results} == {"na"}
    assert all("the call is in en, the scorecard is written for zh" in r.reason for r in c.results)
    assert not math.isnan(score_call(dataclasses.replace(english, language="zh"), shipped).score)
    assert not math.isnan(score_call(dataclasses.replace(english, language=""), shipped).score)
    reasons = sampling.must_review_reasons({"flags": "language_not_scored", "language": "en"},
                                           SamplingSettings())
    assert reasons == [("通话语言为 en，评分表不适用，需人工质检",
                        "call in en: the scorecard does not apply, review by hand")]


def test_a_low_coverage_call_says_its_failures_may_be_missing_words():
    card = parse_scorecard(tomllib.loads(
        '[[sections]]\nid = "s"\n[[sections.items]]\nid = "thanks"\npoints = 100\n'
        'pass = { phrases = ["感谢"], role = "agent" }\n'), "rules.toml")
    c = dataclasses.replace(call(worded(0.0, 2.0, "好的")), flags=("low_coverage",),
                            metrics=(("coverage", 0.6), ("coverage_agent", 0.55), ("coverage_customer", 0.9)))
    reason = score_call(c, card).results[0].reason
    assert "speech without words: agent 45%, customer 10%: the words may be missing, not the script" in reason
    row = {"flags": "low_coverage", "coverage": 0.6, "coverage_agent": 0.55, "coverage_customer": 0.9}
    assert sampling.must_review_reasons(row, SamplingSettings())[0][1] == \
        "transcript misses speech (coverage 55%): a failed item may be a dropped word"


def test_a_scorecard_names_its_language_or_none():
    head = '[scorecard]\nname = "x"\n{}\n[[sections]]\nid = "s"\n[[sections.items]]\nid = "a"\npoints = 100\n' \
           'pass = {{ phrases = ["hello"] }}\n'
    assert parse_scorecard(tomllib.loads(head.format('language = "en"')), "r.toml").language == "en"
    assert parse_scorecard(tomllib.loads(head.format("")), "r.toml").language == ""
    with pytest.raises(ConfigError, match="language must be a language code"):
        parse_scorecard(tomllib.loads(head.format('language = "English"')), "r.toml")
    with pytest.raises(ConfigError, match="unknown key 'lang'"):
        parse_scorecard(tomllib.loads(head.format('lang = "en"')), "r.toml")


def test_a_call_with_no_words_is_not_scored_and_has_no_coverage_figure():
    from speechqa.compliance import load_scorecard

    empty = call()
    c = score_call(empty, load_scorecard())
    assert math.isnan(c.score) and {r.outcome for r in c.results} == {"na"}
    assert "no words were transcribed" in c.results[0].reason
    tone = line(10.0, [(1.0, 9.0)])  # hold music: loud, long, and nobody's words
    found = coverage.coverage((), speech_of([tone], ()))
    assert found == {"coverage": None, "coverage_agent": None, "coverage_customer": None}
