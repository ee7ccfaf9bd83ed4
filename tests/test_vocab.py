"""The vocabulary data files (speechqa/data/*.toml): loading, validation and site overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from speechqa import asr, sentiment
from speechqa.clips import candidates
from speechqa.compliance.schema import load_scorecard, parse_scorecard
from speechqa.config import ChannelSettings, SentimentSettings, load_settings
from speechqa.errors import ConfigError
from speechqa.text import clause_text, fold, squash
from speechqa.vocab import preload
from tests.test_clips import call, rule

DATA = Path(sentiment.__file__).resolve().parent / "data"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def shipped(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# -- the shipped files -----------------------------------------------------------------------


def test_shipped_files_load_and_hold_every_kind():
    esc = sentiment.load_escalation()
    kinds = [k for k, _ in esc.kinds]
    assert kinds == ["regulator", "media", "lawyer", "complaint", "supervisor", "cancellation"]
    assert ("regulator", "工信部") in esc.sounds and esc.boss_nouns
    cues = sentiment.load_cues()
    assert set(cues.weights) == {*sentiment.ESCALATION_KINDS, "negative", "positive"}
    assert "不" in cues.negators and cues.formulas
    assert asr.load_agent_cues().script.search("欢迎致电星辰通信")


def test_no_mishearing_spellings_in_the_escalation_file():
    patterns = [p for _, alts in sentiment.load_escalation().kinds for p in alts]
    assert "公信部" not in patterns and "投述" not in patterns
    # ... the sound matcher finds them from the canonical phrases instead
    assert sentiment.escalation_kinds("我要去公信部反映") == ("regulator",)
    assert "complaint" in sentiment.escalation_kinds("我要投述你们")


def test_loaded_once():
    assert sentiment.load_escalation() is sentiment.load_escalation()
    assert sentiment.load_cues() is sentiment.load_cues()


# -- validation ------------------------------------------------------------------------------


def test_bad_regex_names_the_file_the_kind_and_the_pattern(tmp_path):
    bad = shipped("escalation_zh.toml").replace('"黑猫投诉", "媒体"', '"(", "媒体"')
    path = write(tmp_path, "escalation.toml", bad)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: kind \"media\": pattern '(' is not a valid "
                                                    "regular expression")):
        sentiment.load_escalation(path)


@pytest.mark.parametrize("change, message", [
    (('[kinds.lawyer]', '[kinds.lawyers]'), "kind 'lawyers': unknown kind"),
    (('sounds = ["打官司"', 'sound = ["打官司"'), 'kind "lawyer": unknown key \'sound\''),
    (('patterns = ["投诉", "举报", "告(?:你|你们|死你们|到你们)", "给(?:你们?)?差评"]', 'patterns = []'),
     'kind "complaint": patterns must not be empty'),
    (('sounds = ["投诉你们", "我要投诉"]', 'sounds = ["投诉"]'),
     'kind "complaint": sound \'投诉\' must be three'),
    (('nouns = ["领导"', 'nouns = [1, "领导"'), "[supervisor_sounds]: nouns must be a list of strings"),
    (('"律师", "起诉"', '"(?P<x>律师)", "起诉"'), "named groups are not allowed"),
])
def test_escalation_file_errors(tmp_path, change, message):
    text = shipped("escalation_zh.toml")
    assert change[0] in text
    path = write(tmp_path, "escalation.toml", text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        sentiment.load_escalation(path)
    assert str(err.value).startswith(path)


def test_a_missing_kind_is_an_error(tmp_path):
    text = shipped("escalation_zh.toml")
    start = text.index("[kinds.cancellation]")
    path = write(tmp_path, "escalation.toml", text[:start] + text[text.index("# A request for a boss"):])
    with pytest.raises(ConfigError, match="kind 'cancellation' is missing"):
        sentiment.load_escalation(path)


@pytest.mark.parametrize("change, message", [
    (("positive = 1.2", 'positive = "high"'), "[weights]: positive must be a number"),
    (("cue_reach = 1", "cue_reach = -1"), "[negation]: cue_reach must be an integer >= 0"),
    (('"再见",\n]', '"再见(",\n]'), "[formulas]: pattern '再见(' is not a valid regular expression"),
    (("[formulas]", "[formula]"), "unknown key 'formula'"),
])
def test_sentiment_cue_file_errors(tmp_path, change, message):
    text = shipped("sentiment_cues_zh.toml")
    assert change[0] in text
    path = write(tmp_path, "cues.toml", text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        sentiment.load_cues(path)
    assert str(err.value).startswith(path)


def test_agent_cue_file_errors(tmp_path):
    path = write(tmp_path, "agent.toml", '[script]\npatterns = ["欢迎[致电"]\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: [script]: pattern '欢迎[致电' is not a valid")):
        asr.load_agent_cues(path)
    with pytest.raises(ConfigError, match="vocabulary file not found"):
        asr.load_agent_cues(str(tmp_path / "missing.toml"))
    path = write(tmp_path, "broken.toml", "[script\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        asr.load_agent_cues(path)


def test_a_bad_override_stops_the_run_before_any_call(tmp_path):
    path = write(tmp_path, "escalation.toml", "[kinds]\n")
    settings = load_settings(environ={"SPEECHQA_SENTIMENT_ESCALATION_FILE": path})
    assert settings.sentiment.escalation_file == path
    with pytest.raises(ConfigError, match=re.escape(path)):
        preload(settings)


# -- overrides change behaviour --------------------------------------------------------------


def test_a_site_escalation_cue_is_detected(tmp_path):
    text = shipped("escalation_zh.toml").replace('"律师", "起诉"', '"仲裁委", "律师", "起诉"')
    text = text.replace('sounds = ["打官司"', 'sounds = ["人民调解委员会", "打官司"')
    path = write(tmp_path, "escalation.toml", text)
    site = sentiment.vocabulary(SentimentSettings(escalation_file=path))
    assert sentiment.escalation_kinds("我去找人民调节委员会", site) == ("lawyer",)  # by sound
    assert sentiment.escalation_kinds("我去找人民调节委员会") == ()
    try:
        preload(load_settings(environ={"SPEECHQA_SENTIMENT_ESCALATION_FILE": path}))
        assert sentiment.escalation_kinds("我去找人民调节委员会") == ("lawyer",)  # the run's default now
    finally:
        preload(load_settings(environ={}))
    assert sentiment.escalation_kinds("我去找人民调节委员会") == ()


def test_a_site_sentiment_cue_changes_the_score(tmp_path):
    text = shipped("sentiment_cues_zh.toml").replace('"什么态度",', '"掉链子", "什么态度",')
    site = sentiment.vocabulary(SentimentSettings(cues_file=write(tmp_path, "cues.toml", text)))
    plain, = sentiment.score_texts(["你们又掉链子"])
    with_cue, = sentiment.score_texts(["你们又掉链子"], vocab=site)
    assert with_cue < plain and with_cue < 0.5


def test_a_site_agent_script_swaps_the_channels(tmp_path):
    path = write(tmp_path, "agent.toml", '[script]\npatterns = ["小星为你效劳", "亲"]\n')
    texts = {0: "我的网断了", 1: "亲，小星为你效劳，亲"}
    assert asr.channel_roles(2, ChannelSettings(), texts) == {0: "agent", 1: "customer"}
    try:
        asr.load_agent_cues(path)
        assert asr.channel_roles(2, ChannelSettings(agent_cues_file=path), texts) == {0: "customer", 1: "agent"}
    finally:
        asr.load_agent_cues("")


# -- scorecard clip tags ---------------------------------------------------------------------

SITE_CARD = """
[scorecard]
name = "site"
[[sections]]
id = "s"
[[sections.items]]
id = "open_01"
points = 40
pass = { phrases = ["欢迎致电"], role = "agent" }
[sections.items.clips]
pass = "greeting"
[[sections.items]]
id = "sorry_02"
points = 30
pass = { phrases = ["抱歉"], role = "agent" }
[sections.items.clips]
apology = true
[[sections.items]]
id = "bye_03"
points = 15
pass = { phrases = ["再见"], role = "agent" }
[sections.items.clips]
pass = "closing"
[[sections.items]]
id = "offer_04"
points = 15
pass = { phrases = ["还有什么"], role = "agent" }
[sections.items.clips]
pass = "closing"
fail = "no_offer"
"""


def site_card():
    import tomllib

    return parse_scorecard(tomllib.loads(SITE_CARD), "site.toml", "f" * 64)


def test_shipped_scorecard_items_carry_clip_tags():
    tags = {i.id: (i.clips.pass_tag, i.clips.fail_tag, i.clips.apology) for i in load_scorecard().items}
    assert tags["greeting"] == ("greeting", "", False) and tags["apology"] == ("", "", True)
    assert tags["closing_offer"][0] == tags["thanks"][0] == "closing"
    assert tags["verify"] == ("verification", "missed_verification", False)


def test_a_site_scorecard_with_other_item_ids_still_produces_clips():
    card = site_card()
    result = call(results=[rule("open_01", "pass", 0.9, 2.5), rule("bye_03", "pass", 24.8, 25.6, 5),
                           rule("offer_04", "pass", 23.8, 24.6, 5)],
                  sentiments=(0.6, 0.1, 0.6, 0.6, 0.9, 0.6))
    found = {c.tags.split(";")[0]: c for c in candidates(result, scorecard=card)}
    assert found["greeting"].item_id == "open_01" and found["greeting"].label == "good"
    assert found["closing"].item_id == "bye_03;offer_04"
    # the apology turn (非常抱歉) is found by the apology item's own phrases, with no evidence of it
    assert found["de_escalation"].item_id == "" and found["de_escalation"].label == "good"
    failed = candidates(call(results=[rule("offer_04", "fail", 23.8, 24.6, 5)]), scorecard=card)
    assert [(c.label, c.tags, c.item_id) for c in failed] == [("bad", "no_offer", "offer_04")]
    # a shared pass tag needs every item: one closing item alone makes no closing clip
    alone = candidates(call(results=[rule("bye_03", "pass", 24.8, 25.6, 5)]), scorecard=card)
    assert "closing" not in {c.tags for c in alone}


def test_the_scorecard_that_scored_the_call_gives_its_tags():
    from dataclasses import replace

    from speechqa.clips import use_scorecard

    card = site_card()
    result = call(results=[rule("open_01", "pass", 0.9, 2.5)])
    result = replace(result, compliance=replace(result.compliance, scorecard_sha256=card.sha256))
    assert "greeting" not in {c.tags for c in candidates(result)}  # unknown card: the shipped tags
    use_scorecard(card)
    assert "greeting" in {c.tags for c in candidates(result)}


@pytest.mark.parametrize("clips, message", [
    ('{ pass = "two words" }', "clips.pass must be a tag"),
    ('{ passed = "x" }', "clips: unknown key 'passed'"),
    ("{ apology = 1 }", "clips.apology must be true or false"),
    ('"greeting"', "clips must be a table"),
])
def test_clip_table_errors_name_the_file_and_item(clips, message):
    import tomllib

    text = ('[[sections]]\nid = "s"\n[[sections.items]]\nid = "hello"\npoints = 100\n'
            f'pass = {{ phrases = ["您好"] }}\nclips = {clips}\n')
    with pytest.raises(ConfigError, match=re.escape(f'site.toml: item "hello": {message}')):
        parse_scorecard(tomllib.loads(text), "site.toml")


def test_apology_needs_phrases():
    import tomllib

    text = ('[[sections]]\nid = "s"\n[[sections.items]]\nid = "hello"\npoints = 100\n'
            'pass = { regex = "抱歉" }\nclips = { apology = true }\n')
    with pytest.raises(ConfigError, match="clips.apology needs phrases"):
        parse_scorecard(tomllib.loads(text), "site.toml")


# -- one text normaliser ---------------------------------------------------------------------


def test_shared_normalisation_primitives():
    assert fold("ＡＢＣ１２３，") == "abc123,"
    assert squash("Ｓｕｂ，字幕！ 1 2") == "sub字幕12"
    assert clause_text("我的号码[手机号] 1 2 3 1 5 好") == "我的号码，，12315，好"  # as sentiment always had it
    from speechqa.evaluation import normalize_for_cer

    assert normalize_for_cer("歡迎致電，ＡＢＣ Hello！") == "欢迎致电abchello"
    assert asr.squash("Thank you for watching!") == "thankyouforwatching"
