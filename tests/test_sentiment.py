from __future__ import annotations

from pathlib import Path

import pytest

from speechqa.calls import Turn
from speechqa.config import SentimentSettings
from speechqa.sentiment import (
    MODEL_PATH,
    call_sentiment,
    escalation_kinds,
    escalations,
    load_model,
    score_texts,
    score_turns,
)

ROOT = Path(__file__).resolve().parents[1]


def turn(
    text: str, role: str = "customer", i: int = 1, start: float = 0.0, sentiment: float | None = None
) -> Turn:
    return Turn(
        call_id="c1",
        turn_id=f"c1-{role}-{i:04d}",
        role=role,  # type: ignore[arg-type]
        channel=1 if role == "customer" else 0,
        start=start,
        end=start + 2.0,
        text=text,
        avg_logprob=-0.3,
        no_speech_prob=0.01,
        compression_ratio=1.2,
        sentiment=sentiment,
    )


def score(text: str) -> float:
    return score_texts([text])[0]


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("我要投诉你们！", 0.0, 0.3),
        ("你这是什么态度？我要打12315投诉", 0.0, 0.2),
        ("好的，谢谢你，问题解决了", 0.7, 1.0),
        ("不满意", 0.0, 0.5),
        ("不错，很满意", 0.5, 1.0),
        ("您好，欢迎致电顺达快递，请问有什么可以帮您？", 0.45, 0.8),
        ("请稍等", 0.45, 0.7),
        ("工号1023为您服务", 0.45, 0.7),
        ("感谢您的来电，还有什么可以帮您？", 0.45, 0.7),
        ("请您提供一下[手机号]", 0.45, 0.7),
        ("对不起，给您添麻烦了", 0.45, 1.0),
        ("问题还是没解决", 0.0, 0.3),
    ],
)
def test_sanity(text: str, low: float, high: float) -> None:
    assert low <= score(text) <= high


def test_scores_bounded_and_empty_neutral() -> None:
    texts = ["", "。。！", "   ", "[手机号]", "好", "太差了！！！", "非常好吃，送得也快", "1234567", "😀"]
    scores = score_texts(texts)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[:4] == [0.5, 0.5, 0.5, 0.5]
    assert score_texts([]) == []


def test_deterministic_and_model_keyword() -> None:
    texts = ["送餐太慢了，菜都凉了", "客服态度很好", "我要投诉"]
    assert score_texts(texts) == score_texts(list(texts))
    assert score_texts(texts, model=load_model(str(MODEL_PATH))) == score_texts(texts)


def test_score_turns_returns_copies() -> None:
    turns = (turn("太差了，我要投诉"), turn("好的，谢谢", i=2, start=3.0))
    scored = score_turns(turns)
    assert [t.sentiment for t in turns] == [None, None]
    assert scored[0].sentiment is not None and scored[0].sentiment < 0.3
    assert scored[1].turn_id == turns[1].turn_id and scored[1].text == turns[1].text
    matched = score_turns([Turn(**{**turns[0].__dict__, "match_text": "很满意，谢谢"})])
    assert matched[0].sentiment is not None and matched[0].sentiment > 0.5
    # written to four decimals, like the turn's other measures: no float noise in the outputs
    assert all(t.sentiment == round(t.sentiment, 4) for t in (*scored, *matched))


def test_call_sentiment_improved_and_roles() -> None:
    turns = [
        turn("您好，请问有什么可以帮您", role="agent", i=1, start=0.0, sentiment=0.55),
        turn("你们太差了", i=1, start=2.0, sentiment=0.1),
        turn("我要投诉", i=2, start=4.0, sentiment=0.05),
        turn("嗯", i=3, start=6.0, sentiment=0.0),  # one character: ignored
        turn("好的，解决了", i=4, start=8.0, sentiment=0.8),
        turn("谢谢你啊", i=5, start=10.0, sentiment=0.9),
    ]
    result = call_sentiment(turns, SentimentSettings(edge_turns=2, trajectory_delta=0.15))
    assert result.trajectory == "improved"
    assert result.customer.start == pytest.approx(0.075)
    assert result.customer.end == pytest.approx(0.85)
    assert result.customer.min == pytest.approx(0.05)
    assert 0.05 < (result.customer.mean or 0) < 0.9
    assert result.agent.mean == pytest.approx(0.55)


def test_call_sentiment_flat_worsened_absent() -> None:
    settings = SentimentSettings(edge_turns=1, trajectory_delta=0.15)
    flat = [turn("还行吧", i=1, sentiment=0.6), turn("可以的", i=2, start=3.0, sentiment=0.65)]
    assert call_sentiment(flat, settings).trajectory == "flat"
    worse = [turn("好的好的", i=1, sentiment=0.8), turn("这也太慢了", i=2, start=3.0, sentiment=0.2)]
    assert call_sentiment(worse, settings).trajectory == "worsened"
    only_agent = [turn("请稍等", role="agent", sentiment=0.55)]
    result = call_sentiment(only_agent, settings)
    assert result.customer.start is None and result.customer.mean is None
    assert result.trajectory == "unknown"
    mono = [
        turn("太差了", role="unknown", i=1, sentiment=0.1),
        turn("谢谢你们", role="unknown", i=2, sentiment=0.9),
    ]
    assert call_sentiment(mono, settings).trajectory == "improved"
    assert call_sentiment([], settings).trajectory == "unknown"


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("我从来没订过！这是乱扣费，不给我退我就打12315投诉你们！", {"regulator", "complaint"}),
        ("你这是什么态度？我要投诉你！你的工号是多少？", {"complaint"}),
        (
            "好，我现在就打电话到工信部投诉你们，还要把这事发到网上让大家看看！",
            {"regulator", "media", "complaint"},
        ),
        ("你叫你们领导来接电话！", {"supervisor"}),
        ("行，那我把聊天记录和这个通话都发到微博上，让媒体来评评理！", {"media"}),
        ("那被刷掉的钱怎么办？要是不给我退回来，我就找律师起诉你们银行。", {"lawyer"}),
        ("老用户反而更贵？那我还不如携号转网，去别家办！", {"cancellation"}),
        ("一到两天？我现在就要付钱！你给我转你们主管！", {"supervisor"}),
        ("我用了你们银行十年的卡，就是这么对待客户的？我回头就把卡销了！", {"cancellation"}),
        ("再不处理我就打幺二三幺五", {"regulator"}),
        ("我要打一二三一五", {"regulator"}),
        ("我去公信部反映", {"regulator"}),
        ("不用投诉了，已经解决了", set()),
        ("您不必投诉，我们马上处理", set()),
        ("我没说要投诉", set()),
        ("好的，谢谢", set()),
    ],
)
def test_escalation_kinds(text: str, kinds: set[str]) -> None:
    assert set(escalation_kinds(text)) == kinds


def test_escalation_events() -> None:
    turns = [
        turn("我帮您转主管，您不必投诉", role="agent", i=1),
        turn("我要打12315投诉你们", i=1, start=5.0),
        turn("你叫你们领导来接电话", role="unknown", i=2, start=9.0),
    ]
    events = escalations(turns)
    assert [(e.turn_id, e.detail) for e in events] == [
        ("c1-customer-0001", "complaint"),
        ("c1-customer-0001", "regulator"),
        ("c1-unknown-0002", "supervisor"),
    ]
    first = events[0]
    assert (first.call_id, first.type, first.role, first.start, first.end) == (
        "c1",
        "escalation",
        "customer",
        5.0,
        7.0,
    )


def test_shipped_model_is_small_and_loads() -> None:
    assert MODEL_PATH.is_file()
    assert MODEL_PATH.stat().st_size < 5_000_000
    model = load_model()
    assert load_model() is model
    assert len(model.index) == len(model.nb) == len(model.lr)


def test_dev_eval_split_accuracy() -> None:
    from speechqa.evaluation import SENTIMENT_FILES, sentiment_data_dir, sentiment_dev_split

    data = sentiment_data_dir()
    if not (data / "conversation.tsv").is_file():
        pytest.skip(f"no dev data at {data}")
    split = sentiment_dev_split(data)
    for name in SENTIMENT_FILES:
        rows = split[name][1]
        scores = score_texts([text for _, text in rows])
        acc = sum((s >= 0.5) == (label == 1) for s, (label, _) in zip(scores, rows, strict=True)) / len(rows)
        assert acc > 0.8, name


# What whisper-base wrote for threats on the committed calls: the sound is right, the
# characters are not.
@pytest.mark.parametrize(
    ("heard", "kind"),
    [
        ("你们就是欺负老用户,我要去贡献部,投诉你们乱长假。", "regulator"),
        ("老用户反而更贵,拿我还不如些后转往,区别加班。", "cancellation"),
        ("你叫你们银刀来接电话。", "supervisor"),
    ],
)
def test_escalations_heard_as_homophones(heard: str, kind: str) -> None:
    assert kind in escalation_kinds(heard)


@pytest.mark.parametrize(
    "text", ["我的主观感受不好", "这个经历很差", "让媒体来评评理", "我工作不忙", "您不用去贡献部"]
)
def test_sound_alikes_of_everyday_words_are_not_escalations(text: str) -> None:
    assert "supervisor" not in escalation_kinds(text) and "regulator" not in escalation_kinds(text)


def test_training_script_reproduces_the_shipped_model(tmp_path) -> None:
    """The shipped file is exactly what the script makes from the dev data (about 15 s)."""
    import subprocess
    import sys

    from speechqa.evaluation import sentiment_data_dir

    if not (sentiment_data_dir() / "conversation.tsv").is_file():
        pytest.skip("no dev data")
    out = tmp_path / "model.json.gz"
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_sentiment.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == MODEL_PATH.read_bytes()


def test_a_bad_model_path_is_a_config_error_naming_the_file(tmp_path) -> None:
    from speechqa.errors import ConfigError

    with pytest.raises(ConfigError, match="nope.json.gz: sentiment model not found"):
        load_model(str(tmp_path / "nope.json.gz"))
    junk = tmp_path / "junk.json.gz"
    junk.write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="junk.json.gz: not a gzip"):
        load_model(str(junk))
