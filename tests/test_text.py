"""The text stage: match-text normalisation, segmentation with a user dictionary, process_turns."""

import dataclasses

import pytest

from speechqa.calls import Turn, Word
from speechqa.config import TextSettings
from speechqa.errors import ConfigError
from speechqa.text import normalize, parse_numeral, process_turns, token_bounds, tokenizer, tokens


def make_turn(text, words=None, *, start=0.0, end=2.0, role="customer", index=1, **kw):
    """A turn whose words are its characters (or the given pieces), evenly timed."""
    pieces = words if words is not None else list(text)
    step = (end - start) / max(len(pieces), 1)
    ws = tuple(Word(start + i * step, start + (i + 1) * step, p, 0.9) for i, p in enumerate(pieces))
    return Turn(
        call_id="c1", turn_id=f"c1-{role}-{index:04d}", role=role, channel=1, start=start, end=end,
        text=text, avg_logprob=-0.3, no_speech_prob=0.01, compression_ratio=1.2, words=ws, **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    "text, expected",
    [
        # width and case
        ("ＡＢＣ１２３", "abc123"),
        ("ＶＩＰ会员", "vip会员"),
        ("Wi-Fi密码", "wi fi密码"),
        # punctuation: every run becomes one space, trimmed
        ("您好，欢迎致电！！请问有什么可以帮您？", "您好 欢迎致电 请问有什么可以帮您"),
        ("好的。。。谢谢……再见", "好的 谢谢 再见"),
        ("《用户协议》“第三条”", "用户协议 第3条"),
        ("您好 , 请问", "您好 请问"),
        # kept inside numbers and addresses
        ("1.5倍", "1.5倍"),
        ("10:30到", "10:30到"),
        ("3,500元", "3500元"),
        ("百分之五十", "50%"),
        ("打５折％", "打5折%"),
        # masks stay whole tokens
        ("号码是［手机号］，谢谢。", "号码是[手机号] 谢谢"),
        ("[银行卡]，[身份证]。", "[银行卡] [身份证]"),
        # numerals: digit by digit
        ("工号八零一二", "工号8012"),
        ("幺三八幺二三四五六七八", "13812345678"),
        ("二零二四年", "2024年"),
        ("二〇二四年", "2024年"),
        ("房间幺洞两", "房间102"),
        # numerals: place value
        ("一百二十块", "120块"),
        ("两千四百九十九元", "2499元"),
        ("一千零五十", "1050"),
        ("一万零五百", "10500"),
        ("两万五", "25000"),
        ("三千五", "3500"),
        ("一百五", "150"),
        ("十五号", "15号"),
        ("九十九", "99"),
        ("1万", "10000"),
        ("3千5", "3500"),
        ("2.5万", "25000"),
        ("一亿两千万", "120000000"),
        # numerals: one character before a measure word
        ("三月十五号", "3月15号"),
        ("两个月", "2个月"),
        ("七天无理由退货", "7天无理由退货"),
        ("十点半", "10点半"),
        ("一点半", "1点半"),
        ("三点十分", "3点10分"),
        ("十分钟", "10分钟"),
        ("十点五十", "10点50"),
        ("一点五倍", "1点5倍"),
        ("一块钱", "1块钱"),
        # words and set phrases that are not numbers
        ("我查一下", "我查一下"),
        ("一直在等", "一直在等"),
        ("都一样", "都一样"),
        ("一起办理", "一起办理"),
        ("一般来说", "一般来说"),
        ("万一出问题", "万一出问题"),
        ("十分感谢", "十分感谢"),
        ("一定会的", "一定会的"),
        ("第一时间处理", "第一时间处理"),
        ("有一些", "有一些"),
        ("统一处理", "统一处理"),
        ("等一会儿", "等一会儿"),
        ("一模一样", "一模一样"),
        ("三心二意", "三心二意"),
        ("快一点", "快一点"),
        ("一点点", "一点点"),
        ("一点儿", "一点儿"),
        ("一块儿去", "一块儿去"),
        ("千万不要", "千万不要"),
        ("三三两两", "三三两两"),
        ("一次性付清", "一次性付清"),
        ("三天两头打电话", "三天两头打电话"),
        ("不管三七二十一", "不管三七二十一"),
        ("星期三", "星期三"),
        ("一一核对", "一一核对"),
        # approximations stay
        ("三四个", "三四个"),
        ("两三百块", "两三百块"),
        ("几十块", "几十块"),
        ("", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "a, b",
    [
        ("工号八零一二", "工号8012"),
        ("工号：8012。", "工号 八零一二"),
        ("幺三八", "138"),
        ("一百二十块", "120块"),
        ("两千四百九十九元", "2499元"),
        ("二四九九元", "2499元"),
        ("３月１５号", "三月十五号"),
        ("七天无理由", "7天无理由"),
        ("百分之五十", "50%"),
    ],
)
def test_spellings_of_the_same_speech_meet(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_is_idempotent():
    for text in ("工号八零一二，一共一百二十块！", "号码是[手机号]。", "ＡＢＣ，十点半", "一模一样的三四个"):
        assert normalize(normalize(text)) == normalize(text)


@pytest.mark.parametrize(
    "numeral, value",
    [("十", 10), ("十五", 15), ("二十", 20), ("一百零五", 105), ("一千零一", 1001), ("两万五", 25000),
     ("十万", 100000), ("一亿", 100000000), ("三千五", 3500), ("1万2千", 12000)],
)  # fmt: skip
def test_parse_numeral(numeral, value):
    assert parse_numeral(numeral) == value


@pytest.mark.parametrize("numeral", ["千万", "万一", "三四百", "百", "零五", "一一", "十十", "万万"])
def test_parse_numeral_rejects_non_numbers(numeral):
    assert parse_numeral(numeral) is None


def test_normalize_agrees_with_cn2an_on_plain_numbers():
    cn2an = pytest.importorskip("cn2an")
    for numeral in ("一百二十", "两千四百九十九", "一万零五百", "三十五", "一千零一", "九十九万"):
        assert normalize(numeral) == str(cn2an.cn2an(numeral, "smart"))


def test_default_tokenizer_is_shared_and_unchanged():
    assert tokenizer() is tokenizer()
    assert tokenizer(()) is tokenizer()
    assert token_bounds("请问您的车险") == frozenset({0, 2, 3, 4, 6})  # 请问|您|的|车险


def test_tokens_drop_punctuation_and_keep_masks():
    assert tokens("好的，我的号码是[手机号]。") == ("好", "的", "我", "的", "号码", "是", "[手机号]")


@pytest.mark.parametrize(
    "word, text", [("星辰保", "星辰保的保费是多少"), ("畅享套餐五十八元", "我想办畅享套餐五十八元可以吗")]
)
def test_user_words_stay_one_token_only_when_added(word, text):
    assert word not in tokens(text)
    assert word in tokens(text, tokenizer(user_words=(word,)))
    assert word not in tokens(text)  # the default tokenizer is not changed


def test_user_dict_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("星辰保 10 n\n畅享套餐\n", encoding="utf-8")
    tok = tokenizer(user_dict=str(path))
    assert "星辰保" in tokens("星辰保的保费", tok)
    assert "畅享套餐" in tokens("办畅享套餐吗", tok)


def test_missing_user_dict_names_the_file(tmp_path):
    missing = tmp_path / "no-such-dict.txt"
    with pytest.raises(ConfigError, match="no-such-dict.txt"):
        tokenizer(user_dict=str(missing))


def test_process_turns_returns_copies_with_match_text_tokens_and_redactions():
    turns = (
        make_turn("您好，工号八零一二为您服务。", role="agent"),
        make_turn("我的手机号是13812345678，星辰保怎么退？", start=2.0, end=5.0),
    )
    before = [dataclasses.replace(t) for t in turns]
    out, events = process_turns(turns, TextSettings(user_words=("星辰保",)))
    assert list(turns) == before  # inputs untouched
    assert out[0] is not turns[0]
    assert out[0].match_text == "您好 工号8012为您服务"
    assert out[0].text == turns[0].text  # 工号 is kept readable
    assert out[1].text == "我的手机号是[手机号]，星辰保怎么退？"
    assert out[1].match_text == "我的手机号是[手机号] 星辰保怎么退"
    assert "[手机号]" in out[1].tokens and "星辰保" in out[1].tokens
    assert out[1].redactions == ("mobile",)
    assert not any("138" in w.word for w in out[1].words)
    assert [(e.type, e.detail, e.role, e.turn_id) for e in events] == [
        ("redaction", "mobile", "customer", "c1-customer-0001")
    ]
    assert 2.0 <= events[0].start <= events[0].end <= 5.0


def test_process_turns_without_redaction_keeps_digits():
    turn = make_turn("我的手机号是13812345678")
    out, events = process_turns((turn,), TextSettings(redact_pii=False))
    assert events == ()
    assert out[0].text == turn.text
    assert out[0].words == turn.words
    assert out[0].redactions == ()
    assert out[0].match_text == "我的手机号是13812345678"
    assert "13812345678" in out[0].tokens


def test_missing_user_dict_fails_the_stage(tmp_path):
    with pytest.raises(ConfigError, match="missing.dict"):
        process_turns((make_turn("你好"),), TextSettings(user_dict=str(tmp_path / "missing.dict")))


# -- repairs of what Whisper wrote ---------------------------------------------------------------

from speechqa.text import collapse_loops, repair_slips  # noqa: E402
from tests.conftest import turn as make_call_turn  # noqa: E402


@pytest.mark.parametrize(("heard", "repaired"), [
    # turns of the committed recordings as whisper-base int8 wrote them (make run)
    ("你们怎么回事Ｇ我这个月的账单多扣了两百多块钱Ｇ", "你们怎么回事，我这个月的账单多扣了两百多块钱。"),
    ("何对无物Ｇ线年Ｇ请您稍等Ｇ我帮您查询一下这个理费案件的处理进度Ｇ",
     "何对无物，线年，请您稍等，我帮您查询一下这个理费案件的处理进度。"),
    ("线您的内心等待Ｇ您的案件目前再审核阶段", "线您的内心等待，您的案件目前再审核阶段"),
    ("您好１这里是安定保险客户服务乐险。", "您好，这里是安定保险客户服务乐险。"),
    ("您好４新称通信", "您好，新称通信"),
    ("好的﹔谢谢您", "好的，谢谢您"),
])
def test_byte_slips_become_the_punctuation_they_stand_for(heard, repaired):
    assert repair_slips(heard) == repaired
    assert len(repair_slips(heard)) == len(heard)  # word timestamps stay aligned


@pytest.mark.parametrize("text", ["办了４Ｇ套餐", "ＱＱ号", "2499元", "Ａ股"])
def test_characters_that_are_not_alone_or_are_tokens_stay(text):
    assert repair_slips(text).replace("A", "Ａ") == text


def test_loops_are_collapsed_in_the_match_text_only():
    loop = "人，" + "既是我本人，" * 17
    flagged = make_call_turn(0.0, 6.0, loop, role="customer", flags=("repetition",))
    plain = make_call_turn(7.0, 8.0, "对对对，好的好的", role="customer", index=2)
    (a, b), _ = process_turns([flagged, plain], TextSettings())
    assert a.text == loop and a.flags == ("repetition",)  # raw text and flag kept
    assert a.match_text == "人 既是我本人"
    assert b.match_text == normalize(plain.text)  # only flagged turns are touched
    assert collapse_loops("请问有什么问题 请问有什么问题") == "请问有什么问题"
