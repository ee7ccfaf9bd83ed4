"""PII redaction: a probe of synthetic numbers in every form ASR writes them, and properties."""

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechqa.calls import Turn, Word
from speechqa.pii import (
    PiiSpan,
    classify,
    find_pii,
    id_check_char,
    id_valid,
    luhn_valid,
    redact_text,
    redact_turn,
    scrub,
)

# ---------------------------------------------------------------------------------------------
# Synthetic numbers


def luhn_complete(body: str) -> str:
    """``body`` with the Luhn check digit appended."""
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError(body)


def make_mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def make_id(rng: random.Random) -> str:
    region = rng.choice(["110105", "310104", "440305", "510107", "330106"])
    birth = f"{rng.randint(1940, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = region + birth + f"{rng.randint(0, 999):03d}"
    return body + id_check_char(body)


def make_card(rng: random.Random, length: int) -> str:
    prefix = rng.choice(["6222", "6225", "6217", "6228", "4367", "5187"])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return luhn_complete(body)


def make_landline(rng: random.Random) -> str:
    area = rng.choice(["010", "021", "0755", "0571", "0898"])
    return area + str(rng.randint(2, 8)) + "".join(rng.choice("0123456789") for _ in range(10 - len(area)))


def wrong_id(number: str) -> str:
    """``number`` with a check character that is not the right one."""
    bad = next(c for c in "0123456789X" if c != number[-1])
    return number[:-1] + bad


CN_FORMS = {
    "0": "零〇洞", "1": "一幺", "2": "二两", "3": "三", "4": "四", "5": "五", "6": "六", "7": "七",
    "8": "八", "9": "九", "X": "X",
}  # fmt: skip


def in_chinese(number: str, rng: random.Random | None = None) -> str:
    """Read out digit by digit, as ASR writes it (一三八…, with 幺, 两 and 洞 when rng is given)."""
    return "".join(rng.choice(CN_FORMS[d]) if rng else CN_FORMS[d][0] for d in number)


def grouped(number: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(number[pos : pos + size])
        pos += size
    if pos < len(number):
        parts.append(number[pos:])
    return sep.join(parts)


def digit_projection(text: str) -> str:
    """Every digit in ``text``, Arabic or Chinese, in order, as Arabic digits."""
    table = {**{c: d for d, cs in CN_FORMS.items() for c in cs}, **{chr(0xFF10 + i): str(i) for i in range(10)}}
    return "".join(table.get(c, c) for c in text if c.isdigit() or c in table)


def leaks(number: str, text: str) -> bool:
    """Whether 7 or more consecutive digits of ``number`` can still be read from ``text``."""
    digits = digit_projection(text)
    return any(number[i : i + 7] in digits for i in range(len(number) - 6))


def make_turn(text, pieces=None, *, start=10.0, end=14.0):
    pieces = list(text) if pieces is None else pieces
    step = (end - start) / max(len(pieces), 1)
    words = tuple(Word(start + i * step, start + (i + 1) * step, p, 0.9) for i, p in enumerate(pieces))
    return Turn(
        call_id="c1", turn_id="c1-customer-0001", role="customer", channel=1, start=start, end=end,
        text=text, avg_logprob=-0.3, no_speech_prob=0.01, compression_ratio=1.2, words=words,
    )  # fmt: skip


RNG = random.Random(11643)
MOBILE = "13812345678"
ID = make_id(RNG)
ID_X = next(n for n in (make_id(RNG) for _ in range(1000)) if n.endswith("X"))
CARD16 = make_card(RNG, 16)
CARD19 = make_card(RNG, 19)
LANDLINE = "075588886666"


def test_synthetic_numbers_are_valid():
    assert id_valid(ID) and id_valid(ID_X) and id_valid(ID_X.lower())
    assert not id_valid(wrong_id(ID))
    assert luhn_valid(CARD16) and luhn_valid(CARD19) and len(CARD19) == 19
    assert id_check_char("11010519491231002") == "X"  # the GB 11643 worked example


# ---------------------------------------------------------------------------------------------
# The probe: every kind, every form, in sentences

PROBE = [
    # (sentence, the number it holds, expected kind)
    (f"我的手机号是{MOBILE}。", MOBILE, "mobile"),
    ("我的手机号是一三八一二三四五六七八。", MOBILE, "mobile"),
    ("手机幺三八幺二三四五六七八，对的。", MOBILE, "mobile"),
    ("号码是幺五两零零幺幺两三四五", "15200112345", "mobile"),
    ("您记一下138 1234 5678好吧", MOBILE, "mobile"),
    ("138-1234-5678", MOBILE, "mobile"),
    ("138，1234，5678，没错", MOBILE, "mobile"),
    ("一三八 一二三四 五六七八", MOBILE, "mobile"),
    ("一三八、一二三四、五六七八", MOBILE, "mobile"),
    ("138，嗯，1234，5678", MOBILE, "mobile"),
    ("请拨打+86 138 1234 5678", MOBILE, "mobile"),
    ("8613812345678", MOBILE, "mobile"),
    ("１３８１２３４５６７８", MOBILE, "mobile"),
    ("138一二三四5678", MOBILE, "mobile"),
    ("一三八一二三四五六七八一共两个", MOBILE, "mobile"),
    (f"座机是{LANDLINE}", LANDLINE, "landline"),
    ("座机0755-8888-6666", LANDLINE, "landline"),
    ("打010-62345678找我", "01062345678", "landline"),
    ("洞幺洞六二三四五六七八", "01062345678", "landline"),
    ("客服热线400-820-8820", "4008208820", "landline"),
    (f"身份证号{ID}。", ID, "id_card"),
    (f"身份证号{ID_X}谢谢", ID_X, "id_card"),
    (f"身份证号{ID_X.lower()}", ID_X, "id_card"),
    (f"身份证是{grouped(ID, (6, 8), ' ')}", ID, "id_card"),
    (f"身份证是{in_chinese(ID)}", ID, "id_card"),
    (f"身份证是{in_chinese(ID_X[:-1])}叉", ID_X, "id_card"),
    (f"身份证号{wrong_id(ID)}", wrong_id(ID), "number"),
    (f"卡号{grouped(CARD16, (4, 4, 4), ' ')}", CARD16, "bank_card"),
    ("卡号6225 8801 2345 6783", "6225880123456783", "bank_card"),
    (f"卡号是{CARD19}。", CARD19, "bank_card"),
    (f"卡号是{in_chinese(CARD16)}", CARD16, "bank_card"),
    (f"卡号{grouped(CARD19, (4, 4, 4, 4), '-')}", CARD19, "bank_card"),
    ("订单号20240315123456789", "20240315123456789", "number"),
    ("会员号是12345678901234", "12345678901234", "number"),
    ("验证码是682413", "682413", "code"),
    ("密码是 六 八 二 四 幺 三", "682413", "code"),
]


@pytest.mark.parametrize("sentence, number, kind", PROBE)
def test_probe_number_is_masked_with_its_type(sentence, number, kind):
    text, spans = redact_text(sentence)
    assert [s.kind for s in spans] == [kind]
    assert spans[0].mask in text
    assert not leaks(number, text) if len(number) >= 7 else number not in digit_projection(text)


@pytest.mark.parametrize("sentence, number, kind", PROBE)
def test_probe_number_is_gone_from_words(sentence, number, kind):
    # ASR words cut anywhere: two characters each, so a number spans many words
    pieces = [sentence[i : i + 2] for i in range(0, len(sentence), 2)]
    turn, events = redact_turn(make_turn(sentence, pieces))
    assert turn.redactions == (kind,)
    assert "".join(w.word for w in turn.words) == turn.text
    for w in turn.words:
        assert not any(number[i : i + 3] in digit_projection(w.word) for i in range(len(number) - 2))
    assert not leaks(number, "".join(w.word for w in turn.words)) if len(number) >= 7 else True
    assert len(events) == 1
    assert turn.start <= events[0].start <= events[0].end <= turn.end


def test_email():
    for sentence in ("我的邮箱是zhangsan1990@qq.com，", "邮箱 Zhang.San@Example.com.cn 好的",
                     "邮箱是 zhangsan 艾特 163 点 com", "email is wang at gmail dot com please"):  # fmt: skip
        text, spans = redact_text(sentence)
        assert [s.kind for s in spans] == ["email"], sentence
        assert "[邮箱]" in text
        assert "@" not in text and "艾特" not in text and "qq" not in text and "163" not in text


@pytest.mark.parametrize(
    "sentence",
    [
        "您好，工号8012为您服务",
        "工号八零一二",
        "这款手机2499元",
        "一共一百二十块",
        "3月15号上午10点半",
        "三月十五号十点半",
        "2024年3月15日",
        "2024-03-15 10:30",
        "退款120元，三到五个工作日到账",
        "请拨打客服电话95588或者10086",
        "尾号5678的卡",
        "订单号后六位是123456",
        "一三八",
        "第一时间给您处理，一定一定",
    ],
)
def test_short_numbers_stay_readable(sentence):
    assert redact_text(sentence) == (sentence, [])


def test_masks_count_one_per_span():
    text, spans = redact_text(f"手机{MOBILE}，卡号{CARD16}，再说一遍手机一三八一二三四五六七八")
    assert [s.kind for s in spans] == ["mobile", "bank_card", "mobile"]
    assert text == "手机[手机号]，卡号[银行卡]，再说一遍手机[手机号]"
    assert all(isinstance(s, PiiSpan) and s.start < s.end for s in spans)


def test_spans_are_char_offsets():
    sentence = f"我的手机号是{MOBILE}。"
    (span,) = find_pii(sentence)
    assert sentence[span.start : span.end] == MOBILE


def test_classify():
    assert classify(MOBILE) == "mobile"
    assert classify("12345678901") == "number"
    assert classify(ID) == "id_card"
    assert classify(CARD16) == "bank_card"
    assert classify("0123456789") == "landline"
    assert classify("2499") is None


def test_redact_turn_words_text_events_and_corrections():
    pieces = ["我的", "手机", "是", "138", "1234", "5678", "，", "好", "的"]
    turn = make_turn("".join(pieces), pieces, start=10.0, end=14.5)
    turn = Turn(**{**turn.__dict__, "corrections": ("幺三八一二三四五六七八→术语",)})
    out, events = redact_turn(turn)
    assert out.text == "我的手机是[手机号]，好的"
    assert [w.word for w in out.words] == ["我的", "手机", "是", "[手机号]", "", "", "，", "好", "的"]
    assert [(w.start, w.end) for w in out.words] == [(w.start, w.end) for w in turn.words]
    assert out.corrections == ("[手机号]→术语",)
    assert out.redactions == ("mobile",)
    (event,) = events
    assert (event.type, event.role, event.detail, event.turn_id) == (
        "redaction",
        "customer",
        "mobile",
        turn.turn_id,
    )
    assert event.start == pytest.approx(turn.words[3].start) and event.end == pytest.approx(turn.words[5].end)
    assert turn.text == "我的手机是13812345678，好的"  # input untouched


def test_redact_turn_without_pii_is_unchanged():
    turn = make_turn("好的，工号8012为您服务")
    assert redact_turn(turn) == (turn, ())


def test_redact_turn_when_words_and_text_differ():
    # the lexicon or script conversion left the words out of step with the text
    pieces = [" 我的", "號碼", "是", "一三八", "一二三四", "五六七八", "喔"]
    turn = make_turn("我的号码是一三八一二三四五六七八哦", pieces, start=1.0, end=3.0)
    out, events = redact_turn(turn)
    assert out.text == "我的号码是[手机号]哦"
    assert "".join(w.word for w in out.words) == " 我的號碼是[手机号]喔"
    (event,) = events
    assert turn.start <= event.start <= event.end <= turn.end
    assert event.start == pytest.approx(turn.words[3].start, abs=1e-3)


def test_redact_turn_without_words_times_by_position():
    turn = Turn(
        call_id="c1", turn_id="c1-agent-0002", role="agent", channel=0, start=5.0, end=7.0,
        text=f"您的卡号是{CARD19}", avg_logprob=-0.3, no_speech_prob=0.01, compression_ratio=1.2,
    )  # fmt: skip
    out, (event,) = redact_turn(turn)
    assert out.text == "您的卡号是[银行卡]"
    assert 5.0 < event.start < event.end <= 7.0 and event.role == "agent"


def test_scrub():
    assert scrub(f"转写失败：用户{MOBILE}的录音损坏") == "转写失败：用户[手机号]的录音损坏"
    assert scrub("") == ""


# ---------------------------------------------------------------------------------------------
# Properties

# Everyday characters with no digit among them, so that any digit left in a redacted text
# can only have come from the number.
CONTEXT = st.text(alphabet="我的您好请问号码是手机卡身份证对吧嗯啊呢谢谢记下办理帐户查询，。？！ ", max_size=12)
SEPARATORS = st.sampled_from(["", " ", "-", "，", "、", "。", "  ", " - "])


@st.composite
def spoken_numbers(draw):
    rng = random.Random(draw(st.integers(0, 2**32)))
    kind = draw(st.sampled_from(["mobile", "id_card", "bank_card16", "bank_card19", "landline"]))
    number = {
        "mobile": lambda: make_mobile(rng),
        "id_card": lambda: make_id(rng),
        "bank_card16": lambda: make_card(rng, 16),
        "bank_card19": lambda: make_card(rng, 19),
        "landline": lambda: make_landline(rng),
    }[kind]()
    sizes = {"mobile": (3, 4), "id_card": (6, 8), "landline": (4,)}.get(kind, (4, 4, 4, 4))
    written = grouped(number, sizes, draw(SEPARATORS))
    if draw(st.booleans()):
        written = "".join(in_chinese(c, rng) if c.isdigit() or c == "X" else c for c in written)
    return kind.rstrip("1269"), number, written


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spoken_numbers(), CONTEXT, CONTEXT, st.integers(1, 4), st.integers(0, 2**16))
def test_numbers_never_survive_in_text_or_words(found, before, after, piece_len, seed):
    kind, number, written = found
    sentence = before + written + after
    text, spans = redact_text(sentence)
    assert digit_projection(text) == "", (sentence, text)
    assert kind in [s.kind for s in spans] or (kind == "landline" and spans), (sentence, spans)

    # the same sentence as ASR words cut at random places
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(sentence)), min(len(sentence) - 1, len(sentence) // piece_len)))
    pieces = [sentence[i:j] for i, j in zip([0, *cuts], [*cuts, len(sentence)], strict=True)]
    turn = make_turn(sentence.strip(), pieces)
    out, events = redact_turn(turn)
    assert all(digit_projection(w.word) == "" for w in out.words), [w.word for w in out.words]
    assert len(events) == len(out.redactions) >= 1
    assert all(turn.start <= e.start <= e.end <= turn.end for e in events)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="一二三四五六七八九十零两幺洞百千万元块号个月，。 0123456789abc@.", max_size=40))
def test_redact_text_is_total_and_consistent(text):
    redacted, spans = redact_text(text)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))
    assert redact_text(redacted) == (redacted, [])  # idempotent: masks hold no digits
    for s in spans:
        assert re.fullmatch(r"\[[\u4e00-\u9fff]+\]", s.mask)


def test_short_numbers_next_to_pii_stay():
    sentence = "工号8012，手机138 1234 5678，价格2499元，3月15号"
    text, spans = redact_text(sentence)
    assert text == "工号8012，手机[手机号]，价格2499元，3月15号"
    assert [s.kind for s in spans] == ["mobile"]


# What whisper-base really wrote for numbers read out on the committed calls: digits heard
# as their homophones (以 = yi, 把 = ba, 亿 = yi), fragments of a longer number.
@pytest.mark.parametrize(
    ("heard", "secret"),
    [
        ("以三把一二三四五六七八,基主就是我本人。", "13812345678"),
        ("有没有别的套餐可以换?我号码是以三八零零以三八零零零。", "13800138000"),
        ("计号,是又发零零二亿三亿四。", "0021314"),
        ("身份证是一周九零零三零七一二三九。", "9003071239"),
        ("我就把一二三四五六七给你", "1234567"),
        ("整份正好,是一零一零五,一周九零零三零七一二三九。", "110105199003071239"),  # broken by 周
    ],
)
def test_numbers_heard_as_homophones_are_masked(heard, secret):
    text, spans = redact_text(heard)
    assert spans and not leaks(secret, text), text


@pytest.mark.parametrize(
    "sentence",
    [
        "订单号后六位是123456", "第一期就把钱交了", "我就是想问一下三四个月以前的事", "2024-03-15 10:30",
        "我要去工信部投诉你们",
    ],
)
def test_homophones_alone_are_not_numbers(sentence):
    assert redact_text(sentence) == (sentence, [])


# -- PII that does not depend on clean digits ------------------------------------------------

from speechqa.config import TextSettings  # noqa: E402
from speechqa.errors import ConfigError  # noqa: E402
from speechqa.pii import number_contexts, number_cues, parse_number_cues, sound_digit  # noqa: E402
from speechqa.text import process_turns  # noqa: E402
from tests.conftest import turn as call_turn  # noqa: E402


def test_digits_by_sound_come_from_the_pinyin_model():
    assert [sound_digit(c) for c in "三3３山是以把令"] == ["3", "3", "3", "3", "4", "1", "8", "0"]
    assert sound_digit("周") is None and sound_digit("十") is None and sound_digit("好") is None


def test_the_id_an_avx2_machine_wrote_is_masked():
    # whisper-base on an AVX2 machine without AVX-512 wrote c0005's customer ID like this
    heard = "是一零一零五,一周九零零三零七第二三九"
    text, spans = redact_text(heard)
    assert not leaks("110105199003071239", text), text
    assert digit_projection(text).count("9") == 0


def test_density_masks_a_mostly_digit_span_without_context_and_keeps_counts_and_dates():
    assert redact_text("嗯一三八零零幺三八零零零")[0] == "嗯[手机号]"
    for kept in ("我的工号8012，很高兴为您服务", "2024年3月15日", "退款120元，三到五个工作日到账",
                 "手机后四位是二六八九", "一下子就好了", "价格两千四百九十九元"):
        assert redact_text(kept)[0] == kept


def test_six_digits_in_a_row_are_a_fragment_of_someones_number_whoever_said_them():
    customer = call_turn(1.0, 3.0, "号码是138123", role="customer")
    # a stereo call wired the other way round: the customer's words on the "agent" channel
    swapped = call_turn(1.0, 3.0, "好的，是381234", role="agent")
    staff = call_turn(1.0, 3.0, "活动编号是138123", role="agent")
    assert process_turns([customer], TextSettings())[0][0].text == "号码是[号码]"
    assert process_turns([swapped], TextSettings())[0][0].text == "好的，是[号码]"
    assert process_turns([staff], TextSettings())[0][0].text == "活动编号是138123"


def _call(*lines):
    out, t = [], 0.0
    counts: dict[str, int] = {}
    for role, text in lines:
        counts[role] = counts.get(role, 0) + 1
        out.append(call_turn(t, t + 3.0, text, role=role, index=counts[role]))
        t += 4.0
    return out


def test_the_answer_to_a_request_for_a_number_is_masked_across_turns():
    turns = _call(
        ("agent", "我是8012号客服，麻烦您提供一下身份证号码。"),
        ("customer", "好的，一一零一"),  # short fragments that no rule alone would mask
        ("customer", "零五一九九"),
        ("customer", "零零三零七"),
        ("agent", "好的，请问您遇到了什么问题？"),  # the agent's next question closes the context
        ("customer", "我上个月交了三百五十块"),
    )
    out, events = process_turns(turns, TextSettings())
    texts = [t.text for t in out]
    assert texts[0] == "我是8012号客服，麻烦您提供一下身份证号码。"  # staff number before the request stays
    assert texts[1:4] == ["好的，[号码]", "[号码]", "[号码]"]
    assert texts[5] == "我上个月交了三百五十块"
    assert [e.detail for e in events] == ["number"] * 3


def test_a_misheard_request_and_an_agent_read_back_are_contexts_too():
    turns = _call(
        ("agent", "请您说一下收集号"),  # 手机号 heard as 收集号
        ("customer", "幺三八，幺二三"),
        ("agent", "我重复一遍，幺三八幺二三"),
    )
    assert number_contexts(turns, number_cues()) == {0: 5, 1: 0, 2: 0}
    out, _ = process_turns(turns, TextSettings())
    assert [t.text for t in out[1:]] == ["[号码]", "我重复一遍，[号码]"]


def test_number_context_stays_off_with_keep_pii():
    turns = _call(("agent", "请提供卡号"), ("customer", "六二二二"))
    out, events = process_turns(turns, TextSettings(redact_pii=False))
    assert out[1].text == "六二二二" and events == ()


def test_number_cue_files_are_validated_and_can_be_overridden(tmp_path):
    with pytest.raises(ConfigError, match="cues.toml: numbers must be a non-empty list of phrases"):
        parse_number_cues({"numbers": [], "readbacks": ["x"], "questions": ["x"], "keep_after": ["x"],
                           "keep_before": ["x"], "codes": ["x"]}, "cues.toml")
    with pytest.raises(ConfigError, match="cues.toml: unknown key 'number'"):
        parse_number_cues({"number": ["x"]}, "cues.toml")
    site = tmp_path / "cues.toml"
    site.write_text('numbers = ["会员号"]\nreadbacks = ["我复述"]\nquestions = ["吗"]\nkeep_after = ["工号"]\n'
                    'keep_before = ["号客服"]\ncodes = ["暗号"]\nwindow_s = 30\n', encoding="utf-8")
    turns = _call(("agent", "请报一下您的会员号"), ("customer", "三五七"))
    out, _ = process_turns(turns, TextSettings(pii_cues_file=str(site)))
    assert out[1].text == "[号码]"
    code = _call(("customer", "暗号是4821"))  # the site's code words reach the typed rules too
    assert process_turns(code, TextSettings(pii_cues_file=str(site)))[0][0].text == "暗号是[号码]"
    assert process_turns(code, TextSettings())[0][0].text == "暗号是4821"
    missing = r"missing.toml: vocabulary file not found \(\[text\] pii_cues_file\)"
    with pytest.raises(ConfigError, match=missing):
        number_cues(str(tmp_path / "missing.toml"))
