"""Compliance scorecards: validation messages, each kind of condition, scoring, evidence."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from speechqa.calls import CallResult, CallSentiment, Event, Recording, RoleSentiment, Word
from speechqa.cli import main
from speechqa.compliance import load_scorecard, score_call
from speechqa.compliance.schema import parse_scorecard
from speechqa.errors import ConfigError
from speechqa.text import normalize
from tests.conftest import turn


def card(items_toml: str, name="rules.toml"):
    return parse_scorecard(tomllib.loads('[[sections]]\nid = "s"\n' + items_toml), name)


def item(iid: str, condition: str, points: float = 100, extra: str = "") -> str:
    return f'[[sections.items]]\nid = "{iid}"\npoints = {points}\npass = {condition}\n{extra}\n'


NEUTRAL = CallSentiment()


def call(*turns, events=(), metrics=(), sentiment=NEUTRAL, duration=60.0):
    turns = tuple(dataclasses.replace(t, match_text=normalize(t.text)) for t in turns)
    return CallResult(Recording("c1", Path("c1.wav")), duration, 2, turns, 1.0, True, "0" * 64,
                      events=tuple(events), sentiment=sentiment, metrics=tuple(metrics))


def agent(start, end, text, i=1, **kw):
    return turn(start, end, text, role="agent", index=i, **kw)


def customer(start, end, text, i=1, **kw):
    return turn(start, end, text, role="customer", index=i, **kw)


def outcome(c, scorecard, iid=None):
    results = {r.item_id: r for r in score_call(c, scorecard).results}
    return results[iid or next(iter(results))]


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(("toml", "message"), [
    (item("greeting", '{ phrases = ["您好"], first_s = 0 }'),
     'rules.toml: item "greeting": first_s must be > 0'),
    (item("greeting", '{ phrases = ["您好"] }', 90), "rules.toml: item points add up to 90, not 100"),
    (item("a", '{ regex = "(unclosed" }'), 'rules.toml: item "a": regex is not a valid regular expression'),
    (item("a", '{ metric = "talk_secs", op = ">", value = 1 }'), "item \"a\": unknown metric 'talk_secs'"),
    (item("a", '{ phrases = ["x"], match = "most" }'), 'item "a": match must be any, all or none'),
    (item("a", '{ phrases = ["x"], window = 3 }'), "item \"a\": unknown key 'window' in a phrases condition"),
    (item("a", '{ phrases = ["x"], role = "boss" }'), 'item "a": role must be one of agent, customer, any'),
    (item("a", '{ each = { event = "hold" }, has = { phrases = ["稍等"] } }'),
     'item "a": each needs within_s or within_turns'),
    ('[[sections.items]]\nid = "a"\npoints = 100\n',
     'item "a": pass (the condition the item checks) is missing'),
    (item("a", '{ phrases = ["x"] }', 50) + item("a", '{ phrases = ["y"] }', 50), 'item "a": id used twice'),
])
def test_a_broken_scorecard_names_the_file_item_and_field(toml, message):
    with pytest.raises(ConfigError) as err:
        card(toml)
    assert message in str(err.value)


def test_the_shipped_scorecard_has_the_items_reports_depend_on():
    default = load_scorecard()
    ids = {i.id for i in default.items}
    assert {"greeting", "self_id", "verify", "apology", "hold_notice", "no_forbidden", "closing_offer",
            "thanks"} <= ids
    assert default.max_points == 100 and default.version and len(default.sha256) == 64


def test_rules_check_cli(tmp_path):
    ok = CliRunner().invoke(main, ["rules", "check"])
    assert ok.exit_code == 0 and "greeting" in ok.output and "auto-fail" in ok.output
    bad = tmp_path / "rules.toml"
    bad.write_text('[[sections]]\nid = "s"\n' + item("greeting", '{ phrases = ["您好"], last_s = -1 }'),
                   encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert f'{bad}: item "greeting": last_s must be > 0' in result.output
    missing = CliRunner().invoke(main, ["rules", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 1 and "rules file not found" in missing.output


def test_a_broken_rules_file_stops_the_run_before_any_work(tmp_path, model_dir):
    bad = tmp_path / "rules.toml"
    bad.write_text("[[sections]]\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "tests/fixtures/calls", "--out", str(tmp_path / "o"),
                                       "--rules", str(bad), "--model", str(model_dir)])
    assert result.exit_code == 1 and str(bad) in result.output
    assert not (tmp_path / "o" / "calls.csv").exists()


# -- conditions ----------------------------------------------------------------------------


def test_phrases_any_with_scope_and_evidence():
    sc = card(item("greeting", '{ phrases = ["欢迎致电"], role = "agent", first_s = 10 }'))
    good = call(agent(0.5, 4.0, "您好，欢迎致电星辰通信", words=(
        Word(0.5, 1.0, "您好", 0.9), Word(1.0, 1.2, "，", 0.9), Word(1.2, 2.4, "欢迎致电", 0.9),
        Word(2.4, 4.0, "星辰通信", 0.9))))
    r = outcome(good, sc)
    assert (r.outcome, r.points, r.evidence_turn_id) == ("pass", 100, "c1-agent-0001")
    assert r.evidence_text == "欢迎致电"
    assert 1.0 <= r.evidence_start <= 1.5 and r.match_score == 1.0
    late = call(agent(20.0, 24.0, "欢迎致电星辰通信"))
    assert outcome(late, sc).outcome == "fail"
    by_customer = call(customer(0.5, 4.0, "欢迎致电星辰通信"))
    assert outcome(by_customer, sc).outcome == "fail"


def test_sound_alike_phrases_pass_at_the_items_threshold():
    sc = card(item("self_id", '{ phrases = ["工号"], role = "agent", fuzzy = 0.75 }'))
    r = outcome(call(agent(0.0, 3.0, "我的公号是8012")), sc)
    assert (r.outcome, r.evidence_text, r.match_score) == ("pass", "公号", 1.0)  # same sounds
    strict = card(item("self_id", '{ phrases = ["工号"], role = "agent", fuzzy = 1.0 }'))
    assert outcome(call(agent(0.0, 3.0, "我的公号是8012")), strict).outcome == "fail"
    idcard = card(item("v", '{ phrases = ["身份证"], fuzzy = 0.8 }'))
    r = outcome(call(agent(0.0, 3.0, "请报一下声分证号码")), idcard)  # sheng for shen: a fuzzy pair
    assert r.outcome == "pass" and r.evidence_text == "声分证" and 0.8 < r.match_score < 1
    # near misses on every syllable are not the phrase
    verify = card(item("v", '{ phrases = ["核对一致"], fuzzy = 0.75 }'))
    assert outcome(call(agent(0.0, 3.0, "的登艺纸")), verify).outcome == "fail"


def test_all_with_synonyms_none_and_min_hits():
    thanks = card(item("thanks", '{ phrases = [["感谢", "谢谢"], ["再见", "拜拜"]], match = "all" }'))
    assert outcome(call(agent(50, 55, "谢谢您，拜拜")), thanks).outcome == "pass"
    r = outcome(call(agent(50, 55, "谢谢您")), thanks)
    assert r.outcome == "fail" and "missing 再见" in r.reason
    forbidden = card(item("nf", '{ phrases = ["不知道", "没办法"], match = "none", role = "agent" }'))
    r = outcome(call(agent(10, 12, "好的"), agent(30, 33, "这个我也没办法", i=2)), forbidden)
    assert (r.outcome, r.evidence_text, r.evidence_turn_id) == ("fail", "没办法", "c1-agent-0002")
    twice = card(item("e", '{ phrases = ["抱歉"], min_hits = 2 }'))
    assert outcome(call(agent(1, 2, "抱歉")), twice).outcome == "fail"
    assert outcome(call(agent(1, 2, "抱歉"), agent(5, 6, "实在抱歉", i=2)), twice).outcome == "pass"


def test_regex_with_exclusion_and_not():
    sc = card(item("nf", '{ not = { regex = "不知道", exclude = "不知道您", role = "agent" } }'))
    assert outcome(call(agent(1, 3, "不知道您还有什么需要")), sc).outcome == "pass"
    r = outcome(call(agent(1, 3, "这个我不知道")), sc)
    assert r.outcome == "fail" and r.evidence_text == "不知道" and "said" in r.reason


def test_before_checks_order():
    sc = card(item("verify", '{ before = [{ phrases = ["核实身份"] }, { phrases = ["您本月"] }] }'))
    ok = call(agent(1, 3, "为了核实身份请提供姓名"), agent(10, 12, "您本月话费88元", i=2))
    assert outcome(ok, sc).outcome == "pass"
    wrong = call(agent(1, 3, "您本月话费88元"), agent(10, 12, "为了核实身份请提供姓名", i=2))
    r = outcome(wrong, sc)
    assert r.outcome == "fail" and "came before" in r.reason and r.evidence_start == 1
    assert outcome(call(agent(1, 3, "您本月话费88元")), sc).outcome == "fail"


def test_each_anchor_needs_a_follow_up_within_the_window():
    sc = card(item("apology", '{ each = { phrases = ["投诉"], role = "customer" }, '
                               'has = { phrases = ["抱歉"], role = "agent" }, within_turns = 2 }'))
    ok = call(customer(1, 3, "我要投诉"), agent(4, 6, "非常抱歉"))
    assert outcome(ok, sc).outcome == "pass"
    late = call(customer(1, 3, "我要投诉"), agent(4, 6, "好的", i=1), customer(7, 8, "嗯", i=2),
                agent(9, 10, "稍等", i=2), agent(11, 12, "抱歉", i=3))
    assert outcome(late, sc).outcome == "fail"


def test_hold_must_be_announced_before_it():
    sc = card(item("hold_notice", '{ each = { event = "hold", min_duration_s = 10 }, '
                                  'has = { phrases = ["稍等"], role = "agent" }, direction = "before", '
                                  'within_s = 20 }',
                   extra='na = { not = { event = "hold", min_duration_s = 10 } }'))
    hold = Event("c1", "hold", "both", 10.0, 25.0)
    announced = call(agent(5, 9.5, "请您稍等"), agent(25, 28, "感谢等待", i=2), events=[hold])
    assert outcome(announced, sc).outcome == "pass"
    silent = call(agent(5, 9.5, "好的"), agent(25, 28, "感谢等待", i=2), events=[hold])
    r = outcome(silent, sc)
    assert r.outcome == "fail" and r.evidence_start == 10.0
    no_hold = score_call(call(agent(5, 9.5, "好的")), sc)
    assert no_hold.results[0].outcome == "na" and no_hold.score == 100.0


def test_a_notice_the_agent_talked_past_announces_no_hold():
    sc = card(item("hold_notice", '{ each = { event = "hold", min_duration_s = 10 }, '
                                  'has = { phrases = ["查一下"], role = "agent" }, direction = "before", '
                                  'within_s = 25, last_said = true }'))
    hold = Event("c1", "hold", "both", 20.0, 33.0)

    def said(*agent_turns):
        return call(*(agent(s, e, t, i=n) for n, (s, e, t) in enumerate(agent_turns, 1)),
                    customer(9.0, 12.0, "好，卡号是六二二五"), events=[hold])

    # the notice, then the customer, then only an acknowledgement: announced
    assert outcome(said((5, 8, "我帮您查一下"), (14, 15, "嗯，好的")), sc).outcome == "pass"
    # the same sentence cut by ASR at a pause still announces it
    assert outcome(said((5, 8, "我帮您查一下"), (8.6, 11, "大概要一两分钟")), sc).outcome == "pass"
    # the agent moved on (嗯，退货没问题) before the silence: the notice was about something else
    assert outcome(said((5, 8, "我帮您查一下"), (14, 17, "嗯，退货没问题")), sc).outcome == "fail"
    with pytest.raises(ConfigError, match="last_said must be true or false"):
        card(item("h", '{ each = { event = "hold" }, has = { phrases = ["稍等"] }, within_s = 5, '
                       'last_said = "yes" }'))


def test_metric_event_and_boolean_conditions():
    sc = card(item("a", '{ metric = "n_interruptions_agent", op = ">", value = 1 }', 50)
              + item("b", '{ all = [{ event = "escalation", detail = ["regulator"] }, '
                          '{ metric = "customer_sentiment_end", op = "<", value = 0.3 }] }', 50))
    c = call(agent(1, 2, "好"), metrics=[("n_interruptions_agent", 2)],
             events=[Event("c1", "escalation", "customer", 5, 8, "regulator", "c1-customer-0001")],
             sentiment=CallSentiment(customer=RoleSentiment(end=0.1)))
    assert [r.outcome for r in score_call(c, sc).results] == ["pass", "pass"]
    calm = call(agent(1, 2, "好"), metrics=[("n_interruptions_agent", 0)])
    results = score_call(calm, sc).results
    assert [r.outcome for r in results] == ["fail", "fail"]
    assert "n_interruptions_agent = 0 not > 1" in results[0].reason


def test_score_removes_na_items_and_auto_fail_zeroes_it():
    sc = card(item("a", '{ phrases = ["您好"] }', 60)
              + item("b", '{ phrases = ["抱歉"] }', 30, 'na = { not = { phrases = ["投诉"] } }')
              + item("nf", '{ phrases = ["没办法"], match = "none" }', 10, "auto_fail = true"))
    polite = score_call(call(agent(1, 2, "您好")), sc)
    assert [r.outcome for r in polite.results] == ["pass", "na", "pass"]
    assert polite.score == 100.0 and not polite.auto_fail
    partial = score_call(call(agent(1, 2, "喂"), customer(3, 4, "我要投诉")), sc)
    assert partial.score == pytest.approx(100 * 10 / 100) and partial.failed_items == ("a", "b")
    rude = score_call(call(agent(1, 2, "您好，没办法")), sc)
    assert rude.auto_fail and rude.score == 0.0 and rude.failed_items == ("nf",)


def test_mono_calls_read_unknown_turns_for_roles():
    sc = card(item("greeting", '{ phrases = ["欢迎致电"], role = "agent" }'))
    mono = call(turn(0.5, 3.0, "您好欢迎致电", role="unknown", channel=0))
    assert outcome(mono, sc).outcome == "pass"


# -- phrase families, sound-alikes, similar ----------------------------------------------------


def test_a_phrase_family_matches_every_wording_and_reports_itself():
    sc = card(item("greeting", '{ phrases = ["欢迎(您)?(致电|来电|拨打)"], role = "agent", fuzzy = 1.0 }'))
    for said in ("欢迎致电顺丰", "欢迎您拨打本热线", "您好欢迎来电"):
        assert outcome(call(agent(0.0, 3.0, said)), sc).outcome == "pass", said
    r = outcome(call(agent(0.0, 3.0, "您好请讲")), sc)
    assert r.outcome == "fail" and "欢迎(您)?(致电|来电|拨打)" in r.reason


def test_brush_off_families_catch_wordings_no_single_phrase_listed():
    families = '["(这|那)(个|事)?我(们)?管不了", "跟我说(也)?没用"]'
    sc = card(item("nf", f'{{ not = {{ phrases = {families}, role = "agent", fuzzy = 1.0 }} }}'))
    for said in ("那个我们管不了", "这事我管不了，你去问别人", "跟我说也没用"):
        r = outcome(call(agent(5.0, 8.0, said)), sc)
        assert r.outcome == "fail", said
    assert outcome(call(agent(5.0, 8.0, "这个我帮您管一下")), sc).outcome == "pass"


@pytest.mark.parametrize(("family", "message"), [
    ("欢迎(您", "unbalanced parentheses"),
    ("?欢迎", "'?' needs a character or a group before it"),
    ("(a|b|c|d)(a|b|c|d)(a|b|c|d)(a|b|c|d)(a|b|c|d)", "more than 512 wordings"),
])
def test_a_broken_family_names_file_item_and_phrase(family, message):
    with pytest.raises(ConfigError) as err:
        card(item("greeting", f'{{ phrases = ["{family}"] }}'))
    assert f'rules.toml: item "greeting": phrases: {family!r} is not a valid phrase family ({message})' == str(
        err.value)


def test_two_syllable_confusions_are_caught_by_sound_and_near_misses_are_not():
    greeting = card(item("g", '{ phrases = ["欢迎(您)?致电"], role = "agent", fuzzy = 0.7 }'))
    r = outcome(call(agent(0.0, 3.0, "您好华宁致电星辰通信")), greeting)  # huan/hua, ying/ning
    assert r.outcome == "pass" and r.evidence_text == "华宁致电" and r.match_score < 1
    verify = card(item("v", '{ phrases = ["核对一致"], role = "agent", fuzzy = 0.75 }'))
    assert outcome(call(agent(0.0, 3.0, "好的信息核盾遗质")), verify).outcome == "pass"  # dui/dun
    assert outcome(call(agent(0.0, 3.0, "的登艺纸")), verify).outcome == "fail"
    # sound-alikes are searched for the core wordings (optional parts left out)
    assert outcome(call(agent(0.0, 3.0, "您好欢莹致电")), greeting).outcome == "pass"


def test_similar_passes_a_paraphrase_and_fails_other_talk():
    sc = card(item("offer", '{ similar = ["请问您还有其他需要帮助的吗"], threshold = 0.8, role = "agent" }'))
    assert outcome(call(agent(50, 54, "那请问您还有其他的需要帮助吗")), sc).outcome == "pass"
    r = outcome(call(agent(50, 54, "好的那我帮您登记一下地址")), sc)
    assert r.outcome == "fail" and "nothing like '请问您还有其他需要帮助的吗'" in r.reason
    by_sound = outcome(call(agent(50, 54, "请问您还有其他需要棒住的吗")), sc)  # 帮助 heard as 棒住
    assert by_sound.outcome == "pass" and by_sound.match_score >= 0.8
    with pytest.raises(ConfigError, match='item "offer": threshold must be in'):
        card(item("offer", '{ similar = ["还有别的吗"], threshold = 1.5 }'))


def test_the_shipped_scorecard_holds_no_phrase_of_a_single_committed_call():
    text = (Path(__file__).resolve().parents[1] / "speechqa" / "data" / "scorecard_zh.toml").read_text("utf-8")
    for lifted in ("寄件人的姓名", "三天没", "扣费明细", "白等"):
        assert lifted not in text


def test_an_exclusion_reads_the_sentence_on_into_the_same_speakers_next_turn():
    rules = card(item("no_brush_off", '{ not = { regex = "没办法", exclude = "没办法[^ ]{0,10} ?(不过|但是)", '
                                      'role = "agent" } }'))

    def said(second_start):
        return call(agent(0.0, 2.0, "系统里的读数我这边没办法直接改", 1),
                    agent(second_start, second_start + 3.0, "不过我可以给您提交一个复核工单", 2))

    assert outcome(said(2.8), rules).outcome == "pass"  # ASR cut one sentence at a pause
    assert outcome(said(9.0), rules).outcome == "fail"  # a later turn is another sentence


def test_a_phrase_in_a_sentence_its_exclude_matches_does_not_count():
    rules = card(item("no_brush_off", '{ not = { phrases = ["(我们|我)?管不了"], role = "agent", fuzzy = 1.0, '
                                      'exclude = "管不了.{0,24}(不过|但是)" } }'))
    offer = call(agent(0, 4, "光猫的设置我们这边管不了，不过我可以告诉您怎么改"))
    assert outcome(offer, rules).outcome == "pass"
    r = outcome(call(agent(0, 2, "这个我们管不了")), rules)
    assert r.outcome == "fail" and r.evidence_text == "我们管不了"
    with pytest.raises(ConfigError, match="exclude"):
        card(item("a", '{ phrases = ["管不了"], exclude = "(unclosed" }'))
