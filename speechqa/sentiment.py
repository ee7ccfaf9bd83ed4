"""Turn and call sentiment, and escalation events, for Mandarin call-centre dialogue.

The model
---------
A turn's score is ``sigmoid(z)`` in [0, 1]; 0.5 and above means positive. ``z`` has two linear
parts over the same sparse binary features of the text (see :func:`text_features`):

* jieba words from speechqa's private tokenizer (no snownlp segmenter: it costs ~4.5 ms a
  sentence), with negation marking: the two words after 不 / 没 / 别 / 没有 / 不是 / 并不 ... in
  the same clause also fire ``n:<word>``, so "不满意" is not "满意";
* character 1-, 2- and 3-grams of each clause, which carry ASR homophone errors and words that
  jieba splits differently.

The first part is snownlp's own classifier (``snownlp.classification.bayes.Bayes``, add-one
Naive Bayes) retrained on these features; it enters as its log-odds, ``nb_weight`` times. The
second part is an L2-regularised logistic regression over the same features scaled to unit
length. ``scripts/train_sentiment.py`` trains both on the labelled dev data (conversation
utterances and delivery / shopping reviews) and writes them to
``speechqa/data/sentiment/model.json.gz``: feature strings and float weights, no pickle.

The call cues
-------------
The dev data has almost no call-centre speech, so three hand-made cues sit on top of the model,
all from :data:`LEXICON` (one table shared with :func:`escalations`):

* escalation (complaint, regulator, media, lawyer, supervisor, cancellation) and other
  complaint phrases (什么态度, 太差, 乱扣费 ...) subtract from ``z``; thanks and "问题解决了"
  add to it. A cue right after a negator (不用投诉, 没解决) does not count as itself.
* formulaic agent phrases (greetings, 请稍等, 工号…为您服务, 感谢您的来电, apologies ...) are cut
  out before the model sees the text and vote :data:`NEUTRAL` in proportion to the characters
  they cover, so "您好，欢迎致电…请问有什么可以帮您" stays near 0.55 instead of the 0.0 that
  snownlp's review model gives it, and an apology stays neutral-ish.
* text with nothing left to score (empty, punctuation, PII masks such as ``[手机号]``) is 0.5.

Everything here is a plain function; the model loads once per process (``lru_cache``) and is
read-only afterwards, so the functions are safe to call from several threads.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from speechqa.calls import CallSentiment, Event, RoleSentiment, Turn
from speechqa.config import SentimentSettings
from speechqa.text import is_backchannel

MODEL_PATH = Path(__file__).resolve().parent / "data" / "sentiment" / "model.json.gz"
MODEL_FORMAT = "speechqa-sentiment/1"

NEUTRAL = 0.55  # what formulaic agent phrases score: polite, not an opinion
EMPTY = 0.5  # what text with nothing to score gets
NEGATION_SPAN = 2  # words after a negator that are marked ``n:``
CHAR_NGRAMS = (1, 2, 3)

# Words that flip the sentiment of what follows them in the clause.
_NEGATOR_WORDS = (
    "不 没 别 没有 不是 并不 并没有 不太 不够 不会 不能 未 无 毫无 从不 从没 从来不 从来没 绝不 不用 不要 "
    "不怎么 难以 一点也不 一点都不 不再 不算 不大 甭 勿"
)
NEGATORS = frozenset(_NEGATOR_WORDS.split())

# Negators checked right before a lexicon cue ("不用投诉", "您不必投诉", "没解决"). 别人 is not 别.
_NEGATED_BEFORE = re.compile(
    r"(?:不用|不必|不需要|没必要|无需|无须|用不着|别(?!人)|没有|没|不是|不会|不要|不想|并不|不打算|不再|不至于|还没|尚未|未)"
    r"[^，。！？；,.!?;]{0,2}$"
)

# Sentiment cues (positive / negative) are also flipped by a bare 不 / 没 right before them.
_NEGATED_BEFORE_WORD = re.compile(
    r"(?:不|没|无|未|别|非|毫无|并非|不是|没有|一点也不|一点都不|不太|不怎么|不够|不算)[^，。！？；,.!?;]?$"
)

# 12315 / 12345 as ASR may write them: digits, 一 / 幺 readings, or a mix.
_ONE = "[1一幺]"
_D12315 = f"(?<![0-9]){_ONE}[2二][3三]{_ONE}[5五](?![0-9])"
_D12345 = f"(?<![0-9]){_ONE}[2二][3三][4四][5五](?![0-9])"
_NOUN_BOSS = "(?:领导|主管|经理|上级|上司|负责人|老板|班长|管事的|管理层)"

# The one lexicon: kind -> regex alternatives. Escalation kinds become events; every kind is a
# sentiment cue with the weight in _CUE_WEIGHT. Order matters where matches overlap: the first
# kind listed wins at a position (黑猫投诉 is media, not a complaint).
LEXICON: dict[str, tuple[str, ...]] = {
    "regulator": (
        _D12315,
        _D12345,
        "工信部",
        "公信部",
        "工信",
        "消协",
        "消费者协会",
        "消保委",
        "银保监",
        "银监会",
        "保监会",
        "证监会",
        "金融监管",
        "监管局",
        "监管部门",
        "市场监管",
        "工商局",
        "工商部门",
        "通信管理局",
        "通管局",
        "人民银行",
        "央行",
        "消费者权益",
        "[3三]\\.?[1一]?[5五]晚会",
    ),
    "media": (
        "黑猫投诉",
        "媒体",
        "曝光",
        "发到网上",
        "发网上",
        "挂到网上",
        "挂网上",
        "放到网上",
        "网上说说",
        "微博",
        "抖音",
        "快手",
        "小红书",
        "朋友圈",
        "热搜",
        "记者",
        "电视台",
        "报社",
        "上新闻",
        "让大家(?:都)?(?:看看|评评理|知道)",
        "让(?:全|所有)?网友",
    ),
    "lawyer": (
        "律师",
        "起诉",
        "法院",
        "打官司",
        "法律途径",
        "法律手段",
        "法律责任",
        "诉讼",
        "仲裁",
        "报警",
        "告上法庭",
    ),
    "complaint": (
        "投诉",
        "投述",
        "举报",
        "告(?:你|你们|死你们|到你们)",
        "给(?:你们?)?差评",
    ),
    "supervisor": (
        f"(?:找|叫|让|转|换|要|给我)[^，。！？,.!?]{{0,4}}{_NOUN_BOSS}",
        f"{_NOUN_BOSS}(?:呢|在哪|出来|来接|接电话|过来|跟我说|和我说)",
    ),
    "cancellation": (
        "销户",
        "注销",
        "销卡",
        "(?:把|将)?卡(?:给)?销(?:了|掉)",
        "退订",
        "携号转网",
        "转网",
        "退网",
        "(?:去|换|用)别(?:家|的公司|的银行)",
        "换(?:一)?家",
        "不用你们",
        "不再用你们",
        "再也不用",
        "解约",
        "退卡",
        "取消",
        "不办了",
    ),
    # Not events, only sentiment cues.
    "negative": (
        "什么态度",
        "态度(?:太|很|真|极其)?(?:差|恶劣)",
        "太差",
        "很差",
        "真差",
        "差劲",
        "乱扣费",
        "乱收费",
        "扣我(?:的)?钱",
        "骗子",
        "骗人",
        "坑人",
        "忽悠",
        "欺骗",
        "太过分",
        "受不了",
        "气死",
        "恶心",
        "不像话",
        "岂有此理",
        "凭什么",
        "搞什么",
        "什么破",
        "垃圾",
        "没人管",
        "踢皮球",
        "推卸",
        "敷衍",
        "不讲理",
        "欺负人",
        "耍流氓",
        "一直没(?:人|解决|处理|回复)",
        "到底(?:怎么|什么)回事",
        "没完没了",
        "浪费(?:我的)?时间",
        "有问题",
        "出(?:了)?(?:问题|毛病)",
        "坏了",
        "故障",
        "用不了",
        "不能用",
        "没反应",
        "还没(?:到|收到|发货|处理|退|解决)",
        "没收到",
        "太慢",
        "怎么还",
        "多扣",
        "被扣",
        "被刷",
        "急死",
    ),
    "positive": (
        "问题解决了",
        "解决了",
        "搞定了",
        "谢谢",
        "感谢你",
        "多谢",
        "太好了",
        "满意",
        "辛苦(?:了|你|您)",
        "很专业",
        "很耐心",
        "服务(?:很|真|非常)?好",
        "帮了大忙",
    ),
}

ESCALATION_KINDS: tuple[str, ...] = ("complaint", "regulator", "media", "lawyer", "supervisor", "cancellation")

# Logit change per distinct cue kind found in a turn (negated cues count for the opposite sign).
_CUE_WEIGHT: dict[str, float] = {
    "complaint": -2.5,
    "regulator": -2.5,
    "media": -2.0,
    "lawyer": -2.5,
    "supervisor": -2.0,
    "cancellation": -1.2,
    "negative": -1.5,
    "positive": 1.2,
}
_NEGATED_SIGN: dict[str, float] = {"positive": -1.0}  # 没解决 is negative; 不用投诉 is just not a threat

# Formulaic agent phrases: cut out, scored NEUTRAL. Greeting company names go with 欢迎致电.
FORMULAS: tuple[str, ...] = (
    "(?:您好|你好|喂)",
    "欢迎(?:致电|来电|您致电)[^，。！？,.!?]{0,12}",
    "(?:我是|这里是)[^，。！？,.!?]{0,8}?客服(?:中心)?(?:的)?(?:[0-9零一二三四五六七八九幺两]+号)?",
    "(?:我的)?工号[0-9零一二三四五六七八九幺两]*号?(?:很高兴|竭诚)?(?:为您服务)?",
    "(?:很高兴|竭诚)?为您服务",
    "请问(?:您)?(?:有)?什么(?:可以|能|需要)?(?:帮|帮助|帮到|为)(?:到)?您(?:的|服务)?(?:吗)?",
    "请问您?(?:贵姓|怎么称呼)",
    "请您?稍(?:等|候)(?:一下|片刻)?",
    "(?:非常|十分)?感谢(?:您的)?(?:来电|耐心等待|等待|配合|理解|支持|耐心)",
    "还有(?:什么|其他|别的)(?:问题|可以帮您|需要|能帮您)[^，。！？,.!?]{0,6}",
    "请您?(?:提供|告诉我|报一下|说一下)(?:一下)?[^，。！？,.!?]{0,10}",
    "(?:这边|我这边|我)?(?:帮您|为您|给您)(?:查询|查|看|核实|登记|记录|处理)(?:一下)?",
    "(?:我)?(?:想|要|需要)(?:查询|查|咨询|问|了解|办理)(?:一下)?",
    "(?:非常|十分|实在|真的)?(?:对不起|抱歉|不好意思)",
    "给您(?:添|带来)了?(?:的)?(?:麻烦|不便|困扰)(?:了)?",
    "祝您(?:生活愉快|工作顺利|愉快)",
    "(?:稍后)?请(?:您)?对我的服务(?:进行)?评价",
    "再见",
)


_PUNCT = re.compile(r"[\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~…—·]+")
_MASK = re.compile(r"\[[^\[\]]{1,10}\]")  # PII masks from the text stage: [手机号], [身份证]
_DIGIT_SPACE = re.compile(r"(?<=[0-9])\s+(?=[0-9])")  # ASR may say "1 2 3 1 5"
_SPACE = re.compile(r"\s+")
_BREAK = frozenset("，。！？；,.!?;")


@lru_cache(maxsize=1)
def _cue_regex() -> re.Pattern[str]:
    """One alternation over the whole lexicon, a named group per kind."""
    return re.compile("|".join(f"(?P<{kind}>{'|'.join(alts)})" for kind, alts in LEXICON.items()))


@lru_cache(maxsize=1)
def _formula_regex() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{alt})" for alt in FORMULAS))


def normalize(text: str) -> str:
    """NFKC (full-width digits and punctuation), lower case; PII masks and spaces become clause breaks."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _MASK.sub("，", text)
    return _SPACE.sub("，", _DIGIT_SPACE.sub("", text.strip()))


def cues(text: str) -> list[tuple[str, bool, int, int]]:
    """Lexicon hits in normalised ``text``: (kind, negated, start, end), in text order.

    A negated hit's span starts at its negator, so that "不用投诉" can be cut out as a whole.
    """
    out = []
    for m in _cue_regex().finditer(text):
        kind = m.lastgroup or ""
        clause_start = max((i + 1 for i in range(m.start() - 1, -1, -1) if text[i] in _BREAK), default=0)
        negator = _NEGATED_BEFORE_WORD if kind in ("positive", "negative") else _NEGATED_BEFORE
        neg = negator.search(text, clause_start, m.start())
        out.append((kind, neg is not None, neg.start() if neg else m.start(), m.end()))
    return out


def text_features(text: str) -> list[str]:
    """The model's features of already-normalised text (see the module docstring); may repeat."""
    from speechqa.text import tokenizer

    out: list[str] = []
    flip = 0
    for word in tokenizer().cut(text, HMM=False):
        if _PUNCT.fullmatch(word):
            if "!" in word or "?" in word:
                out.append("p:" + ("!" if "!" in word else "?"))
            flip = 0
            continue
        out.append("w:" + word)
        if flip:
            out.append("n:" + word)
            flip -= 1
        if word in NEGATORS:
            flip = NEGATION_SPAN
    for chunk in _PUNCT.split(text):
        for n in CHAR_NGRAMS:
            out.extend("c:" + chunk[i : i + n] for i in range(len(chunk) - n + 1))
    return out


@dataclass(frozen=True, eq=False)
class Model:
    """Feature weights of the Naive Bayes and logistic-regression parts (read-only)."""

    index: dict[str, int]  # feature -> row of the weight arrays
    nb: np.ndarray  # log P(f | pos) - log P(f | neg), snownlp Bayes with add-one smoothing
    lr: np.ndarray  # logistic-regression weight of the feature (features scaled to unit length)
    nb_prior: float
    lr_bias: float
    nb_weight: float
    temperature: float  # logits are divided by this (fitted on out-of-fold predictions)
    meta: dict[str, object]

    def logits(self, feature_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """``z`` for each feature list; an empty list (nothing known) gives 0."""
        rows: list[int] = []
        owner: list[int] = []
        for i, feats in enumerate(feature_lists):
            known = {self.index[f] for f in feats if f in self.index}
            rows.extend(known)
            owner.extend([i] * len(known))
        n = len(feature_lists)
        idx = np.asarray(rows, dtype=np.int64)
        who = np.asarray(owner, dtype=np.int64)
        count = np.bincount(who, minlength=n).astype(np.float64)
        nb = np.bincount(who, weights=self.nb[idx], minlength=n) + self.nb_prior
        lr = (
            np.bincount(who, weights=self.lr[idx], minlength=n) / np.sqrt(np.maximum(count, 1.0)) + self.lr_bias
        )
        return np.where(count > 0, (lr + self.nb_weight * nb) / self.temperature, 0.0)


def model_to_json(model: Model) -> dict[str, object]:
    """The file form of a model: features in index order and rounded weights."""
    features = sorted(model.index, key=model.index.__getitem__)
    return {
        "format": MODEL_FORMAT,
        "meta": model.meta,
        "nb_prior": round(float(model.nb_prior), 6),
        "lr_bias": round(float(model.lr_bias), 6),
        "nb_weight": model.nb_weight,
        "temperature": model.temperature,
        "features": features,
        "nb": [round(float(x), 4) for x in model.nb],
        "lr": [round(float(x), 4) for x in model.lr],
    }


def save_model(model: Model, path: str | Path) -> None:
    """Write ``model`` as gzip'd JSON; the same model always gives the same bytes."""
    raw = json.dumps(model_to_json(model), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    with (
        open(path, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw.encode("utf-8"))


@lru_cache(maxsize=4)
def load_model(path: str = "") -> Model:
    """The model at ``path`` (empty: the one shipped in the package), loaded once per process.

    Raises ConfigError naming the file when it is missing or not a speechqa sentiment model.
    """
    from speechqa.errors import ConfigError

    where = path or MODEL_PATH
    try:
        with gzip.open(where, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where}: sentiment model not found ([sentiment] model)") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"{where}: not a gzip'd JSON sentiment model ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{where}: not a {MODEL_FORMAT} model")
    features = data["features"]
    return Model(
        index={f: i for i, f in enumerate(features)},
        nb=np.asarray(data["nb"], dtype=np.float64),
        lr=np.asarray(data["lr"], dtype=np.float64),
        nb_prior=float(data["nb_prior"]),
        lr_bias=float(data["lr_bias"]),
        nb_weight=float(data["nb_weight"]),
        temperature=float(data["temperature"]),
        meta=dict(data.get("meta", {})),
    )


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


_NEUTRAL_Z = math.log(NEUTRAL / (1 - NEUTRAL))


def score_texts(texts: Sequence[str], *, model: Model | None = None, use_cues: bool = True) -> list[float]:
    """Sentiment in [0, 1] of each text (0.5 and above is positive); 0.5 for nothing to score.

    ``use_cues=False`` gives the bare model (no lexicon, no formula band), for evaluation.
    """
    model = model or load_model()
    features: list[list[str]] = []
    plan: list[tuple[float, float, bool, bool] | None] = []  # (share of text scored, cue z, formula, neg cue)
    for raw in texts:
        text = normalize(raw)
        n_chars = len(_PUNCT.sub("", text))
        if not n_chars:
            features.append([])
            plan.append(None)
            continue
        if not use_cues:
            features.append(text_features(text))
            plan.append((1.0, 0.0, False, False))
            continue
        if is_backchannel(text):  # a whole turn of 嗯 / 好的 is neutral, not an opinion
            features.append([])
            plan.append((0.0, 0.0, True, False))
            continue
        rest = _formula_regex().sub("，", text)
        cue_z = 0.0
        seen: set[tuple[str, bool]] = set()
        negative = False
        reassured: list[tuple[int, int]] = []
        for kind, negated, start, end in cues(rest):
            if negated and kind in ESCALATION_KINDS:
                reassured.append((start, end))  # "不用投诉" is no threat and no complaint either
            if (kind, negated) in seen:
                continue
            seen.add((kind, negated))
            weight = _CUE_WEIGHT[kind] * (_NEGATED_SIGN.get(kind, 0.0) if negated else 1.0)
            cue_z += weight
            negative = negative or weight < 0
        for start, end in reversed(reassured):
            rest = rest[:start] + "，" + rest[end:]
        rest_chars = len(_PUNCT.sub("", rest))
        features.append(text_features(rest) if rest_chars else [])
        plan.append((rest_chars / n_chars, cue_z, rest_chars < n_chars, negative))
    z = model.logits(features)
    out: list[float] = []
    for zi, p in zip(z.tolist(), plan, strict=True):
        if p is None:
            out.append(EMPTY)
            continue
        share, cue_z, formula, negative = p
        # Formula characters vote neutral; what is left votes with the model; cues come on top.
        score = _sigmoid(share * zi + (1.0 - share) * _NEUTRAL_Z + cue_z)
        if formula and share <= 0.5 and not negative:
            score = max(score, 0.45)  # mostly formula: an odd company name must not make it negative
        out.append(score)
    return out


def score_turns(turns: Sequence[Turn], model: Model | None = None) -> tuple[Turn, ...]:
    """Copies of ``turns`` with ``sentiment`` set, scored from ``match_text`` (else ``text``)."""
    scores = score_texts([t.match_text or t.text for t in turns], model=model)
    return tuple(dataclasses.replace(t, sentiment=s) for t, s in zip(turns, scores, strict=True))


def _content_chars(turn: Turn) -> int:
    return len(_PUNCT.sub("", _MASK.sub("", turn.match_text or turn.text)))


def role_sentiment(turns: Sequence[Turn], edge_turns: int) -> RoleSentiment:
    """Start / end (plain mean of the first / last ``edge_turns`` turns), min, and mean.

    The mean is weighted by each turn's characters, so a one-word 嗯 / 好的 counts less than a
    long complaint. Turns without a score and turns of one character or less are ignored.
    """
    scored = [(t.sentiment, _content_chars(t)) for t in turns if t.sentiment is not None]
    scored = [(s, n) for s, n in scored if n > 1]
    if not scored:
        return RoleSentiment()
    values = [s for s, _ in scored]
    k = max(1, edge_turns)
    weights = sum(n for _, n in scored)
    return RoleSentiment(
        start=sum(values[:k]) / len(values[:k]),
        end=sum(values[-k:]) / len(values[-k:]),
        min=min(values),
        mean=sum(s * n for s, n in scored) / weights,
    )


def call_sentiment(turns: Sequence[Turn], settings: SentimentSettings) -> CallSentiment:
    """Per-role sentiment of a scored call, and the customer's trajectory.

    On mono calls (no customer turns) the trajectory comes from the ``unknown``-role turns.
    """
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    by_role = {role: [t for t in ordered if t.role == role] for role in ("customer", "agent", "unknown")}
    customer = role_sentiment(by_role["customer"], settings.edge_turns)
    agent = role_sentiment(by_role["agent"], settings.edge_turns)
    basis = customer if customer.start is not None else role_sentiment(by_role["unknown"], settings.edge_turns)
    trajectory = "unknown"
    if basis.start is not None and basis.end is not None:
        delta = basis.end - basis.start
        if delta > settings.trajectory_delta:
            trajectory = "improved"
        elif delta < -settings.trajectory_delta:
            trajectory = "worsened"
        else:
            trajectory = "flat"
    return CallSentiment(customer=customer, agent=agent, trajectory=trajectory)


# Escalation phrases that whisper-base writes as homophones (贡献部 for 工信部, 些后转往 for
# 携号转网, 银刀 for 领导), matched by sound when the spelling missed them. Only phrases of
# three or more syllables are safe alone (see speechqa/phonetic.py); the two-syllable names
# of a boss count only in a request for one (叫你们X来接电话, 找你们X).
SOUND_CUES: tuple[tuple[str, str], ...] = (
    ("regulator", "工信部"), ("regulator", "消费者协会"), ("regulator", "金融监管局"),
    ("regulator", "市场监管局"), ("regulator", "通信管理局"), ("regulator", "消协投诉"),
    ("media", "发到网上"), ("media", "电视台"), ("media", "找媒体"), ("media", "曝光你们"),
    ("lawyer", "打官司"), ("lawyer", "法律途径"), ("lawyer", "找律师"), ("lawyer", "起诉你们"),
    ("complaint", "投诉你们"), ("complaint", "我要投诉"),
    ("cancellation", "携号转网"), ("cancellation", "把卡销了"), ("cancellation", "注销账户"),
)  # fmt: skip
SOUND_MAX_COST = 0.5  # one syllable sharing only its initial or final, or two fuzzy pairs
_BOSS_NOUNS = ("领导", "主管", "经理", "负责人", "上级")
_REQUEST = re.compile("找|叫|让|转|换|要|给我")
_BOSS_BEFORE = ("你们", "你的", "您的", "贵司")
_BOSS_AFTER = ("来接", "接电话", "出来", "过来", "来跟我", "来和我")
_BOSS_REACH = 6  # characters after the request verb where the boss may be named
_COMMON_WORD_FREQ = 50  # a sound-alike that is itself a common word (主观, 经历) is that word


def _sound_cues(text: str) -> list[tuple[str, bool, int, int]]:
    """Escalation cues found by sound: (kind, negated, start, end), like :func:`cues`."""
    from speechqa.phonetic import find_sounds, pinyin
    from speechqa.text import word_frequency

    sounds = pinyin(text)
    hits = [(kind, m.start, m.end) for kind, phrase in SOUND_CUES
            for m in find_sounds(text, phrase, SOUND_MAX_COST, sounds)[:1]]
    for req in _REQUEST.finditer(text):
        for noun in _BOSS_NOUNS:
            for m in find_sounds(text, noun, SOUND_MAX_COST, sounds, req.end(), req.end() + _BOSS_REACH):
                heard = text[m.start:m.end]
                asked = text[:m.start].endswith(_BOSS_BEFORE) or text.startswith(_BOSS_AFTER, m.end)
                if asked and (heard == noun or word_frequency(heard) <= _COMMON_WORD_FREQ):
                    hits.append(("supervisor", m.start, m.end))
    out = []
    for kind, start, end in hits:
        clause_start = max((i + 1 for i in range(start - 1, -1, -1) if text[i] in _BREAK), default=0)
        out.append((kind, _NEGATED_BEFORE.search(text, clause_start, start) is not None, start, end))
    return out


def escalation_kinds(text: str) -> tuple[str, ...]:
    """The escalation kinds threatened in ``text`` (negated mentions skipped), in lexicon order.

    Spelled cues first; phrases heard as homophones are matched by sound only for the kinds
    the spelling did not find.
    """
    text = normalize(text)
    found = {kind for kind, negated, _, _ in cues(text) if kind in ESCALATION_KINDS and not negated}
    if len(found) < len(ESCALATION_KINDS) and any("\u4e00" <= ch <= "\u9fff" for ch in text):
        found |= {kind for kind, negated, _, _ in _sound_cues(text) if not negated}
    return tuple(kind for kind in ESCALATION_KINDS if kind in found)


def escalations(turns: Sequence[Turn]) -> tuple[Event, ...]:
    """One ``escalation`` event per (customer or unknown-role turn, kind); agents never threaten."""
    events = []
    for turn in turns:
        if turn.role == "agent":
            continue
        for kind in escalation_kinds(turn.match_text or turn.text):
            events.append(
                Event(
                    call_id=turn.call_id,
                    type="escalation",
                    role=turn.role,
                    start=turn.start,
                    end=turn.end,
                    detail=kind,
                    turn_id=turn.turn_id,
                )
            )
    return tuple(events)
