"""PII redaction: phone, ID, bank card and account numbers and e-mail addresses, masked by type.

Redaction is on by default (``[text] redact_pii``); a turn's display text, its words and its
lexicon corrections are all masked, and each masked span becomes a ``redaction`` event.

What is masked, and as what:

========================  ==========  ====================================================
kind                      mask        rule
========================  ==========  ====================================================
``mobile``                [手机号]    11 digits 1[3-9]…, optionally after +86 / 86 / 0086
``landline``              [电话]      0 + area code + number (10-12 digits), 400 / 800 + 7
``id_card``               [身份证]    18 characters whose GB 11643 check digit (0-9 or X) is right
``bank_card``             [银行卡]    16-19 digits that pass the Luhn check
``email``                 [邮箱]      name@domain.tld, also spoken: 艾特 / at, 点 / dot
``number``                [号码]      any other run of 11 or more digits, including an 18-digit
                                      ID number whose check digit is wrong (one ASR error
                                      does not make a customer's number public)
``code``                  [号码]      4-10 digits straight after 密码 / 验证码 / 校验码 /
                                      动态码 / 口令: secrets a reviewer never needs
========================  ==========  ====================================================

Digits are found in every form ASR writes them: Arabic, full-width, and read out one by one
in Chinese (一三八…, with 幺 for 1, 两 for 2, 洞 / 零 / 〇 for 0), including mixtures. Groups
of digits split by up to four separator characters (spaces, dashes, commas, 顿号, full
stops, or a filler such as 嗯) are joined before they are classified, so 138 1234 5678,
138，1234，5678 and 一三八 一二三四 五六七八 are one number. Within such a chain the
longest typed number wins at each position; leftover groups that together reach 11 digits
are masked as ``number``.

Whisper also writes spoken digits as their homophones (以三把一二三四五六七八 for
13812345678: 以 = yi, 把 = ba). A stretch of at least seven digit-like characters, most of
them (60%) real digits and the rest homophones of digits (以, 要, 而, 山, 是, 我, 留, 期, 把,
就, 令 …), is read as a number and typed like any other (``number`` when it fits no type).

Kept readable, because reviewers need them: every shorter number that is not one of the
above (prices 2499, staff numbers 工号8012, dates 3月15号, times 10点半, amounts 120元,
order fragments, short service numbers such as 95588 or 10086). Detection works on one
text at a time: a number split across two turns by a long pause is not joined.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
from dataclasses import dataclass

from speechqa.calls import Event, Turn, Word
from speechqa.text import CN_DIGIT_VALUES

MASKS: dict[str, str] = {
    "mobile": "[手机号]",
    "landline": "[电话]",
    "id_card": "[身份证]",
    "bank_card": "[银行卡]",
    "email": "[邮箱]",
    "number": "[号码]",
    "code": "[号码]",
}

_STRONG = frozenset({"mobile", "landline", "id_card", "bank_card"})
_MAX_CHAIN_DIGITS = 23  # 0086 + the longest typed number, with room to spare
_DIGIT_VALUE: dict[str, str] = {
    **{str(d): str(d) for d in range(10)},
    **{chr(0xFF10 + d): str(d) for d in range(10)},  # full-width
    **CN_DIGIT_VALUES,
    "X": "X",
    "x": "X",
    "叉": "X",  # how an ID's final X is read out
}
_CN_DIGITS = "".join(CN_DIGIT_VALUES)
_GROUP = re.compile(f"[0-9０-９{_CN_DIGITS}]+(?:[Xx叉](?![A-Za-z]))?")
_SEPARATOR = re.compile(r"(?:[\s\-－—–‐‑_,，、.。·/]|嗯|呃|额|啊){1,4}")
_CODE_WORD = re.compile(r"密码|验证码|校验码|动态码|口令")
_EMAIL = re.compile(
    f"[A-Za-z0-9{_CN_DIGITS}][A-Za-z0-9{_CN_DIGITS}._%+\\-]*"
    r"\s*(?:@|＠|艾特|(?<=\s)at(?=\s))\s*"
    r"[A-Za-z0-9\-]+(?:\s*(?:\.|。|点|dot)\s*[A-Za-z0-9\-]+)*?"
    r"\s*(?:\.|。|点|dot)\s*(?:com|cn|net|org|edu|gov|info|biz|io|me|cc|tv|co|hk|tw|mo|us|uk|jp)"
    r"(?![A-Za-z])",
    re.IGNORECASE,
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class PiiSpan:
    """One masked stretch of a text: its kind, character offsets [start, end) and mask."""

    kind: str
    start: int
    end: int
    mask: str


def id_check_char(first17: str) -> str:
    """The GB 11643 check character (0-9 or X) of the first 17 digits of an ID number."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def id_valid(number: str) -> bool:
    """Whether ``number`` is 18 characters with a correct GB 11643 check character."""
    number = number.upper()
    return (
        len(number) == 18 and number[:17].isdigit() and number[17] in "0123456789X"
        and id_check_char(number[:17]) == number[17]
    )  # fmt: skip


def luhn_valid(number: str) -> bool:
    """Whether a digit string passes the Luhn check (bank cards)."""
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _looks_like_id(number: str) -> bool:
    """An 18-digit string with an ID's region and birth date, whatever its check digit."""
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    return number[0] in "123456789" and 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def classify(digits: str) -> str | None:
    """The kind of a number given as its digits (and a possible final X), or None to keep it."""
    n = len(digits)
    if "X" in digits:
        if n == 18 and digits.index("X") == 17:
            return "id_card" if id_valid(digits) else "number"
        return None
    for prefix in ("0086", "86"):
        if n == 11 + len(prefix) and digits.startswith(prefix) and _is_mobile(digits[len(prefix) :]):
            return "mobile"
    if n == 11 and _is_mobile(digits):
        return "mobile"
    if digits.startswith("0") and not digits.startswith("00") and 10 <= n <= 12:
        return "landline"
    if n == 10 and digits.startswith(("400", "800")):
        return "landline"
    if n == 18:
        if id_valid(digits):
            return "id_card"
        if _looks_like_id(digits):
            return "number"
    if 16 <= n <= 19 and luhn_valid(digits):
        return "bank_card"
    return "number" if n >= 11 else None


def _is_mobile(digits: str) -> bool:
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


@dataclass(frozen=True)
class _Group:
    start: int
    end: int
    text: str  # the characters, as written
    digits: str


def _chains(text: str, taken: list[tuple[int, int]]) -> list[list[_Group]]:
    """Digit groups outside ``taken`` spans, chained where only separators lie between."""
    chains: list[list[_Group]] = []
    for m in _GROUP.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        group = _Group(m.start(), m.end(), m.group(), "".join(_DIGIT_VALUE[c] for c in m.group()))
        if chains and _SEPARATOR.fullmatch(text, chains[-1][-1].end, m.start()):
            chains[-1].append(group)
        else:
            chains.append([group])
    return chains


def _typed_at(chain: list[_Group], i: int) -> tuple[int, int, str] | None:
    """The longest typed number starting at group ``i``: (last group, characters cut off its
    end, kind). A Chinese-digit group may lose one or two final characters (一三八…八一共)."""
    best = None
    digits = ""
    for j in range(i, len(chain)):
        digits += chain[j].digits
        if len(digits) > _MAX_CHAIN_DIGITS + 2:
            break
        last = chain[j].text
        for cut in range(3):
            if cut and (cut >= len(last) or last[-cut] not in CN_DIGIT_VALUES):
                break
            kind = classify(digits[: len(digits) - cut])
            if kind in _STRONG or (kind == "number" and len(digits) - cut == 18):
                best = (j, cut, kind)
                break
    return best


def _chain_spans(text: str, chain: list[_Group]) -> list[PiiSpan]:
    spans: list[PiiSpan] = []
    loose: list[list[_Group]] = [[]]
    i = 0
    while i < len(chain):
        typed = _typed_at(chain, i)
        if typed is None:
            loose[-1].append(chain[i])
            i += 1
            continue
        j, cut, kind = typed
        start = chain[i].start
        if start > 0 and text[start - 1] in "+＋":
            start -= 1
        spans.append(PiiSpan(kind, start, chain[j].end - cut, MASKS[kind]))
        loose.append([])
        i = j + 1
    for run in loose:
        if not run:
            continue
        n = sum(len(g.digits) for g in run)
        if n >= 11:
            spans.append(PiiSpan("number", run[0].start, run[-1].end, MASKS["number"]))
        elif n >= 4 and _CODE_WORD.search(text, max(0, run[0].start - 8), run[0].start):
            spans.append(PiiSpan("code", run[0].start, run[-1].end, MASKS["code"]))
    return spans


# Characters whisper-base writes for a spoken digit it did not recognise as one (by sound).
_HOMOPHONE_DIGITS: dict[str, str] = {
    **dict.fromkeys("以已亿意衣依医易义移伊要腰妖邀", "1"),
    **dict.fromkeys("而儿耳尔", "2"),
    **dict.fromkeys("山伞散叁", "3"),
    **dict.fromkeys("是事似思死寺", "4"),
    **dict.fromkeys("我无吴午舞武屋", "5"),
    **dict.fromkeys("留流刘柳溜陆", "6"),
    **dict.fromkeys("期起其齐奇妻气骑", "7"),
    **dict.fromkeys("把吧巴爸拔芭霸", "8"),
    **dict.fromkeys("就久酒旧救", "9"),
    **dict.fromkeys("令领玲灵铃凌", "0"),
}
_SOUNDS_LIKE_DIGITS = re.compile(
    r"[0-9０-９{d}{h}](?:[\s,，、\-]?[0-9０-９{d}{h}])+".format(d=_CN_DIGITS, h="".join(_HOMOPHONE_DIGITS))
)
_SPOKEN_MIN_DIGITS = 7
_SPOKEN_MIN_REAL = 0.6


def _spoken_numbers(text: str, taken: list[tuple[int, int]]) -> list[PiiSpan]:
    """Numbers read out digit by digit that ASR wrote partly as homophones of digits, or
    wholly in Chinese digits but too short for a type (a fragment of a phone or ID number).

    Homophones at either end may be ordinary words (是, 我, 就 …): a variant without them is
    tried too, and the span that reads as a typed number wins; otherwise the run without
    them must still hold seven digit-like characters, most of them real digits.
    """
    spans = []
    for m in _SOUNDS_LIKE_DIGITS.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        chars = [(m.start() + i, c) for i, c in enumerate(m.group())
                 if c in _DIGIT_VALUE or c in _HOMOPHONE_DIGITS]
        variants = []
        for lo in range(4):
            for hi in range(4):
                part = chars[lo: len(chars) - hi]
                trimmed = chars[:lo] + chars[len(chars) - hi:]
                if len(part) >= _SPOKEN_MIN_DIGITS and all(c in _HOMOPHONE_DIGITS for _, c in trimmed):
                    variants.append(part)
        best = None
        for part in variants:
            digits = "".join(_DIGIT_VALUE.get(c) or _HOMOPHONE_DIGITS[c] for _, c in part)
            kind = classify(digits)
            if kind in _STRONG:
                best = (part, kind)
                break
        if best is None:
            cores = [p for p in variants if p[0][1] in _DIGIT_VALUE and p[-1][1] in _DIGIT_VALUE]
            if not cores:
                continue
            core = max(cores, key=len)
            real = sum(1 for _, c in core if c in _DIGIT_VALUE)
            spoken = any(c in _HOMOPHONE_DIGITS or c in CN_DIGIT_VALUES for _, c in core)
            if not spoken or real < _SPOKEN_MIN_REAL * len(core):
                continue
            best = (core, "number")
        part, kind = best
        spans.append(PiiSpan(kind, part[0][0], part[-1][0] + 1, MASKS[kind]))
    return spans


def find_pii(text: str) -> list[PiiSpan]:
    """The PII in ``text``, as non-overlapping spans sorted by position."""
    spans = [PiiSpan("email", m.start(), m.end(), MASKS["email"]) for m in _EMAIL.finditer(text)]
    taken = [(s.start, s.end) for s in spans]
    for chain in _chains(text, taken):
        spans.extend(_chain_spans(text, chain))
    spans.extend(_spoken_numbers(text, [(s.start, s.end) for s in spans]))
    return _with_fragments(text, sorted(spans, key=lambda s: s.start))


# A run of four or more read-out digits (Chinese digits or homophones) ending at most one
# character before a masked number is the start of the same number, broken up by ASR
# (是一零一零五,一周[九零零三…]): it is masked with it.
_FRAGMENT_BEFORE = re.compile(
    r"[0-9０-９{d}{h}](?:[\s,，、\-]?[0-9０-９{d}{h}]){{3,}}[\s,，、\-]?.?$".format(
        d=_CN_DIGITS, h="".join(_HOMOPHONE_DIGITS))
)


def _with_fragments(text: str, spans: list[PiiSpan]) -> list[PiiSpan]:
    out: list[PiiSpan] = []
    for span in spans:
        if span.kind != "email":
            floor = out[-1].end if out else 0
            m = _FRAGMENT_BEFORE.search(text, floor, span.start)
            # read-out digits only: 工号8012 written in digits just before a number stays
            if m is not None and any(c in CN_DIGIT_VALUES or c in _HOMOPHONE_DIGITS for c in m.group()):
                span = PiiSpan(span.kind, m.start(), span.end, span.mask)
        out.append(span)
    return out


def _apply(text: str, spans: list[PiiSpan]) -> str:
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(s.mask)
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str) -> tuple[str, list[PiiSpan]]:
    """``text`` with its PII replaced by typed masks, and the spans that were masked."""
    spans = find_pii(text)
    return (_apply(text, spans) if spans else text), spans


def scrub(text: str) -> str:
    """``text`` with its PII masked: for free-text fields such as failure reasons."""
    return redact_text(text)[0] if text else text


def _redact_words(words: tuple[Word, ...], spans: list[tuple[int, int, str]]) -> tuple[Word, ...]:
    """Words with masked characters: the word holding a span's first character gets the mask,
    the rest of the span is dropped (a word wholly inside it becomes "" and keeps its times)."""
    out = []
    pos = 0
    k = 0
    for w in words:
        end = pos + len(w.word)
        pieces = []
        for p in range(pos, end):
            while k < len(spans) and spans[k][1] <= p:
                k += 1
            if k < len(spans) and spans[k][0] <= p:
                if p == spans[k][0]:
                    pieces.append(spans[k][2])
            else:
                pieces.append(w.word[p - pos])
        new = "".join(pieces)
        out.append(w if new == w.word else dataclasses.replace(w, word=new))
        pos = end
    return tuple(out)


def _span_times(turn: Turn, bounds: list[int], cstart: int, cend: int) -> tuple[float, float] | None:
    """Times of the first and last word overlapping characters [cstart, cend) of the words."""
    first = bisect.bisect_right(bounds, cstart) - 1
    last = bisect.bisect_left(bounds, cend) - 1
    hits = [w for w in turn.words[max(first, 0) : last + 1] if w.word.strip()]
    if not hits:
        return None
    return min(w.start for w in hits), max(w.end for w in hits)


def redact_turn(turn: Turn) -> tuple[Turn, tuple[Event, ...]]:
    """A copy of ``turn`` with PII masked in its text, words and corrections, and one
    ``redaction`` event per masked span, timed by the words it covers."""
    text, spans = redact_text(turn.text)
    corrections = tuple(scrub(c) for c in turn.corrections)
    joined = "".join(w.word for w in turn.words)
    lead = len(joined) - len(joined.lstrip())
    exact = joined.strip() == turn.text
    if exact:
        word_spans = [(s.start + lead, s.end + lead, s.mask) for s in spans]
    else:
        # Script conversion or a lexicon repair made the words differ from the text: find
        # the PII in the words themselves, so that none of it survives there either.
        word_spans = [(s.start, s.end, s.mask) for s in find_pii(joined)]
    words = _redact_words(turn.words, word_spans) if word_spans else turn.words
    if not spans and words is turn.words and corrections == turn.corrections:
        return turn, ()

    bounds = [0]
    for w in turn.words:
        bounds.append(bounds[-1] + len(w.word))
    paired = not exact and len(word_spans) == len(spans)
    scale = len(joined.strip()) / len(turn.text) if turn.text else 1.0
    events = []
    for n, s in enumerate(spans):
        if exact:
            cstart, cend = s.start + lead, s.end + lead
        elif paired:
            cstart, cend = word_spans[n][0], word_spans[n][1]
        else:
            cstart, cend = lead + int(s.start * scale), lead + math.ceil(s.end * scale)
        times = _span_times(turn, bounds, cstart, cend) if turn.words else None
        if times is None:  # no words to go by: proportional position within the turn
            length = max(len(turn.text), 1)
            times = (
                turn.start + turn.duration * s.start / length,
                turn.start + turn.duration * s.end / length,
            )
        start = min(max(round(times[0], 3), turn.start), turn.end)
        end = min(max(round(times[1], 3), start), turn.end)
        events.append(Event(turn.call_id, "redaction", turn.role, start, end, s.kind, turn.turn_id))
    redacted = dataclasses.replace(
        turn,
        text=text,
        words=words,
        corrections=corrections,
        redactions=turn.redactions + tuple(s.kind for s in spans),
    )
    return redacted, tuple(events)
