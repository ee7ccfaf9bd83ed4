"""Sound-alike matching of Chinese phrases."""

import pytest

from speechqa.phonetic import find_sounds, fuzzy, split_syllable, syllable_cost


def test_syllable_costs():
    assert syllable_cost("xin", "xin") == 0
    assert syllable_cost("zhang", "zan") == 0.25  # zh/z and -ang/-an
    assert syllable_cost("huan", "hua") == 0.35  # the same vowel, the nasal coda lost
    assert syllable_cost("ping", "jing") == 0.5  # same final
    assert syllable_cost("xian", "xin") == 0.6  # only the initial in common
    assert syllable_cost("gong", "bu") == 1.0


def test_fuzzy_and_split():
    assert fuzzy("neng") == "len" and fuzzy("shi") == "si"
    assert split_syllable("zhuang") == ("zh", "uang") and split_syllable("an") == ("", "an")


@pytest.mark.parametrize(("text", "phrase", "heard"), [
    ("我要去贡献部投诉", "工信部", "贡献部"),
    ("还不如些后转往", "携号转网", "些后转往"),
    ("华宁据电星辰通信", "欢迎致电", "华宁据电"),
])
def test_finds_homophones(text, phrase, heard):
    match = find_sounds(text, phrase, 2.0)[0]
    assert text[match.start:match.end] == heard and 0 < match.score < 1


def test_exact_is_best_and_window_is_respected():
    text = "工信部，贡献部"
    matches = find_sounds(text, "工信部", 0.6)
    assert [(m.start, m.cost) for m in matches] == [(0, 0.0), (4, 0.6)]
    assert [m.start for m in find_sounds(text, "工信部", 0.6, lo=2)] == [4]
    assert find_sounds("我工作不忙", "工信部", 0.5) == []
    assert find_sounds("abc", "工信部", 3) == []
