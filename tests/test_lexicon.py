"""Homophone repair of domain terms."""

import pytest

from speechqa.config import LexiconSettings
from speechqa.errors import ConfigError
from speechqa.lexicon import apply_corrections, build_lexicon, find_corrections, fuzzy, lexicon_for

LEX = build_lexicon(("车险", "投保", "理赔", "考研", "养老保险", "英语", "欢迎致电", "账单", "行程"))


def fix(text, lex=LEX):
    return apply_corrections(text, find_corrections(text, lex))


@pytest.mark.parametrize(
    "heard, fixed",
    [
        ("请问您的车显是哪年买的", "请问您的车险是哪年买的"),  # same sound, other tone
        ("我想投宝一份", "我想投保一份"),
        ("您好，欢迎至点星辰通信", "您好，欢迎致电星辰通信"),
        ("买一份阳脑保险", "买一份养老保险"),  # nao/lao: one fuzzy syllable, shared 保险
        ("学好音语", "学好英语"),  # yin/ying
    ],
)
def test_homophones_of_terms_are_repaired(heard, fixed):
    assert fix(heard) == fixed
    assert len(fix(heard)) == len(heard)


@pytest.mark.parametrize(
    "text",
    [
        "这是对你的考验",  # 考验 is a common word: kept though it sounds like 考研
        "基础性的车险课程",  # already right
        "我们的英雄",  # no term sounds like this
        "帮你查一下",  # bang-ni vs ban-li would need two fuzzy syllables
        "欢迎致电新称通信",  # xin/xing is fuzzy, but nothing in common with 行程
    ],
)
def test_correct_or_common_text_is_left_alone(text):
    assert fix(text) == text


def test_a_word_is_never_cut_in_half():
    lex = build_lexicon(("出行",))
    assert fix("这是基础性的课程", lex) == "这是基础性的课程"


def test_fuzzy_pairs():
    assert fuzzy("zhang") == fuzzy("zan") == "zan"
    assert fuzzy("sheng") == fuzzy("shen") == "sen"
    assert fuzzy("nao") == fuzzy("lao")
    assert fuzzy("ying") == fuzzy("yin")


def test_settings_build_the_lexicon(tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("# our products\n星辰宽带\n\n流量王卡\n", encoding="utf-8")
    lex = lexicon_for(LexiconSettings(builtin=False, terms_file=str(terms), extra_terms=("金卡会员",)))
    assert {t.text for t in lex.terms} == {"星辰宽带", "流量王卡", "金卡会员"}
    assert lexicon_for(LexiconSettings(enabled=False)) is None
    assert len(lexicon_for(LexiconSettings()).terms) > 200  # the shipped call-centre list
    with pytest.raises(ConfigError, match="terms file not found"):
        lexicon_for(LexiconSettings(terms_file=str(tmp_path / "nope.txt")))
