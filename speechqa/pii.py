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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from speechqa.calls import Event, Turn, Word
from speechqa.errors import ConfigError
from speechqa.phonetic import (
    SoundBank,
    char_pinyin,
    is_han,
    phrase_sounds,
    pinyin,
    sounds_like,
    syllable_cost,
    syllable_mask,
    syllable_positions,
)
from speechqa.text import _MEASURES, CN_DIGIT_VALUES

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


def _chain_spans(text: str, chain: list[_Group], loose_min_digits: int = 11,
                 cues: NumberCues | None = None) -> list[PiiSpan]:
    cues = cues or number_cues()
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
        if 4 <= n <= 10 and cues.code_words.search(text, max(0, run[0].start - 8), run[0].start):
            spans.append(PiiSpan("code", run[0].start, run[-1].end, MASKS["code"]))
        elif n >= loose_min_digits and (n >= 11 or not _after_keep_word(text, run[0].start, cues)):
            spans.append(PiiSpan("number", run[0].start, run[-1].end, MASKS["number"]))
    return spans


# -- digits by sound ------------------------------------------------------------------------
#
# Whisper writes a spoken digit it did not recognise as one as a character that sounds like
# it (以三把 for 138, 是 for 四, 亿 for 一). Which characters those are is not a list: it is
# the shared pinyin model (speechqa/phonetic.py), the one the lexicon and the scorecard use.
# A Han character whose syllable is a digit's, or a fuzzy pair of it (是 shi ~ si, 山 shan ~
# san), is a *sound digit* with that digit's value. One other character between real digits
# (一周九, 七第二) is a digit misheard beyond that and is bridged.

_DIGIT_SYLLABLES: dict[str, str] = {
    "ling": "0", "dong": "0", "yi": "1", "yao": "1", "er": "2", "liang": "2", "san": "3",
    "si": "4", "wu": "5", "liu": "6", "qi": "7", "ba": "8", "jiu": "9",
}  # fmt: skip
_PLACE_VALUE = frozenset("十百千万点")  # a number with these is an amount, not a digit string
_RUN_SEPARATOR = re.compile(r"[\s\-－—–‐‑_,，、.。·/;；:：]|嗯|呃|额|啊")
_COUNTED = re.compile(f"(?:{_MEASURES})")  # after a digit: a count or a date (三天, 2024年)
_SOUND_DIGIT_MAX_COST = 0.25


@lru_cache(maxsize=8192)
def sound_digit(ch: str) -> str | None:
    """The digit ``ch`` stands for: '3' for 3, ３, 三 and 山; None for anything else."""
    value = _DIGIT_VALUE.get(ch)
    if value is not None:
        return None if value == "X" else value
    if ch in _PLACE_VALUE or not is_han(ch):
        return None
    syllable = char_pinyin(ch)
    if syllable is None:
        return None
    cost, digit = min((syllable_cost(syllable, d), v) for d, v in _DIGIT_SYLLABLES.items())
    return digit if cost <= _SOUND_DIGIT_MAX_COST else None


@dataclass(frozen=True)
class _Run:
    """A stretch of digits and sound digits, with separators and bridged characters between."""

    chars: tuple[tuple[int, str], ...]  # (offset, character) of its digits and sound digits


def _digit_runs(text: str, taken: list[tuple[int, int]]) -> list[_Run]:
    """Runs of digits and sound digits outside ``taken``. Separators (spaces, commas, fillers)
    may lie between them, and so may one other Han character when real digits stand on both
    sides of it. A digit followed by a measure word or a date unit ends its run (三天, 2024年);
    a Chinese digit so followed never starts one (四位, 两个)."""
    runs: list[_Run] = []
    if not any(map(sound_digit, text)):  # a run starts only at a digit or a sound digit
        return runs
    cur: list[tuple[int, str]] = []
    i, n = 0, len(text)

    def close() -> None:
        if cur:
            runs.append(_Run(tuple(cur)))
            cur.clear()

    blocked = {p for s, e in taken for p in range(s, e)}
    while i < n:
        if i in blocked:
            close()
            i += 1
            continue
        ch = text[i]
        if cur and cur[-1][1] in _DIGIT_VALUE and _COUNTED.match(text, i):
            close()
            i += 1
            continue
        if not cur and ch in CN_DIGIT_VALUES and _COUNTED.match(text, i + 1):
            i += 1
            continue
        if sound_digit(ch) is not None:
            cur.append((i, ch))
            i += 1
            continue
        if cur:
            m = _RUN_SEPARATOR.match(text, i)
            if m:
                j = m.end()
                while j < n and j - i < 4 and (m2 := _RUN_SEPARATOR.match(text, j)):
                    j = m2.end()
                if j < n and j - i <= 4 and sound_digit(text[j]) is not None:
                    i = j
                    continue
            elif (is_han(ch) and ch not in _PLACE_VALUE and cur[-1][1] in _DIGIT_VALUE
                  and i + 1 < n and text[i + 1] in _DIGIT_VALUE):
                i += 1  # one misheard digit between real ones
                continue
        close()
        i += 1
    close()
    return runs


def _reading(chars: Sequence[tuple[int, str]]) -> str:
    """The digits a run reads as (every character of a run is a digit or a sound digit)."""
    return "".join(sound_digit(c) or "" for _, c in chars)


_SPOKEN_MIN_DIGITS = 7
_SPOKEN_MIN_REAL = 0.6
LOOSE_MIN_DIGITS = 6  # a digit string of no type is masked from this many digits on
_ARABIC = frozenset("0123456789０１２３４５６７８９")


def _spoken_numbers(text: str, taken: list[tuple[int, int]], *, context: bool = False) -> list[PiiSpan]:
    """Numbers read out digit by digit that ASR wrote partly as sound-alikes of digits, or
    wholly in Chinese digits but too short for a type (a fragment of a phone or ID number).

    Density: a run of at least seven digit-like characters, most of them (60%) real digits,
    is a number. Sound-alikes at either end may be ordinary words (是, 我, 就 …): variants
    without them are tried too, and the one that reads as a typed number wins. In a number
    context (the customer answering a request for a number, an agent reading one back),
    any run holding three or more real digits is masked.
    """
    spans: list[PiiSpan] = []
    # Every number this finds has seven digit-like characters (a real digit is one too), or
    # in a context three real digits: a text with fewer (most turns) skips the scan.
    if sum(map(bool, map(sound_digit, text))) < (3 if context else _SPOKEN_MIN_DIGITS):
        return spans
    for run in _digit_runs(text, taken):
        chars = list(run.chars)
        if len(chars) < _SPOKEN_MIN_DIGITS and not any(c in _DIGIT_VALUE for _, c in chars):
            continue  # too short for a typed number and no real digit to be a core: nothing
        variants = []
        for lo in range(4):
            for hi in range(4):
                part = chars[lo: len(chars) - hi]
                trimmed = chars[:lo] + chars[len(chars) - hi:]
                if part and all(c not in _DIGIT_VALUE for _, c in trimmed):
                    variants.append(part)
        best = None
        for part in variants:
            digits = _reading(part)
            kind = classify(digits)
            if kind in _STRONG and len(part) >= _SPOKEN_MIN_DIGITS:
                best = (part, kind)
                break
        if best is None:
            cores = [p for p in variants if p[0][1] in _DIGIT_VALUE and p[-1][1] in _DIGIT_VALUE]
            if not cores:
                continue
            core = max(cores, key=len)
            real = sum(1 for _, c in core if c in _DIGIT_VALUE)
            read_out = any(c not in _ARABIC for _, c in core)  # all-Arabic runs are the chains' job
            dense = len(core) >= _SPOKEN_MIN_DIGITS and real >= _SPOKEN_MIN_REAL * len(core) and read_out
            if not (dense or (context and real >= 3)):
                continue
            best = (core, "number")
        part, kind = best
        spans.append(PiiSpan(kind, part[0][0], part[-1][0] + 1, MASKS[kind]))
    return spans


def find_pii(text: str, *, context: int | None = None, loose_min_digits: int = 11,
             cues: NumberCues | None = None) -> list[PiiSpan]:
    """The PII in ``text``, as non-overlapping spans sorted by position.

    ``context``: the text is a number context from this character offset on (see
    :func:`number_contexts`): there every number-like span with three or more real digits
    is masked. ``loose_min_digits``: a digit
    string that fits no type is masked from this many digits on (11; 6 in a customer's turn,
    where six digits in a row are a fragment of the customer's own number).
    """
    spans = [PiiSpan("email", m.start(), m.end(), MASKS["email"]) for m in _EMAIL.finditer(text)]
    taken = [(s.start, s.end) for s in spans]
    for chain in _chains(text, taken):
        spans.extend(_chain_spans(text, chain, loose_min_digits, cues))
    spans.extend(_spoken_numbers(text, [(s.start, s.end) for s in spans]))
    if context is not None:
        loose = _spoken_numbers(text, [(s.start, s.end) for s in spans], context=True)
        spans.extend(s for s in loose if s.start >= context and not _kept(text, s, cues or number_cues()))
    return _with_fragments(text, sorted(spans, key=lambda s: s.start))


def _after_keep_word(text: str, start: int, cues: NumberCues) -> bool:
    """Whether a number starting at ``start`` follows a keep-readable word (工号8012)."""
    before = text[max(0, start - 6): start].rstrip(" ，,:：是为")
    return before.endswith(cues.keep_after)


def _kept(text: str, span: PiiSpan, cues: NumberCues) -> bool:
    """Whether a number is a staff number that stays readable (工号8012, 8012号客服)."""
    return _after_keep_word(text, span.start, cues) or text.startswith(cues.keep_before, span.end)


def _with_fragments(text: str, spans: list[PiiSpan]) -> list[PiiSpan]:
    """A run of four or more read-out digits (Chinese digits or sound digits) ending at most
    one character before a masked number is the start of the same number, broken up by ASR
    (是一零一零五,一周[九零零三…]): it is masked with it. Digits written in Arabic just
    before a number (工号8012) stay."""
    out: list[PiiSpan] = []
    for span in spans:
        if span.kind != "email":
            floor = out[-1].end if out else 0
            j = _skip_separators(text, span.start, floor)
            if j > floor and sound_digit(text[j - 1]) is None:
                j = _skip_separators(text, j - 1, floor)  # one character between (一周[九…)
            k, count = j, 0
            while k > floor:
                if sound_digit(text[k - 1]) is not None:
                    k -= 1
                    count += 1
                elif _RUN_SEPARATOR.fullmatch(text[k - 1]) and k - 1 > floor and sound_digit(text[k - 2]):
                    k -= 1
                else:
                    break
            fragment = text[k:j]
            if count >= 4 and any(c not in _DIGIT_VALUE or c in CN_DIGIT_VALUES for c in fragment
                                  if sound_digit(c) is not None):
                span = PiiSpan(span.kind, k, span.end, span.mask)
        out.append(span)
    return out


def _skip_separators(text: str, j: int, floor: int) -> int:
    while j > floor and _RUN_SEPARATOR.fullmatch(text[j - 1]):
        j -= 1
    return j


# -- number contexts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberCues:
    """The vocabulary of number requests and read-backs (speechqa/data/pii_zh.toml)."""

    numbers: tuple[str, ...]
    readbacks: tuple[str, ...]
    questions: tuple[str, ...]
    keep_after: tuple[str, ...]
    keep_before: tuple[str, ...]
    window_s: float
    source: str = ""
    codes: tuple[str, ...] = ()  # words before a secret code (密码, 验证码 …)

    @property
    def code_words(self) -> re.Pattern[str]:
        return _alternation(self.codes)


def parse_number_cues(data: dict[str, Any], source: str) -> NumberCues:
    """Validate a number-cue table; raises ConfigError naming the file and the key."""
    lists = ("numbers", "readbacks", "questions", "keep_after", "keep_before", "codes")
    unknown = sorted(set(data) - {*lists, "window_s"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; known: {', '.join((*lists, 'window_s'))}")
    values: dict[str, Any] = {}
    for key in lists:
        raw = data.get(key)
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x.strip() for x in raw):
            raise ConfigError(f"{source}: {key} must be a non-empty list of phrases")
        values[key] = tuple(x.strip() for x in raw)
    window = data.get("window_s", 90.0)
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise ConfigError(f"{source}: window_s must be a number > 0, got {window!r}")
    return NumberCues(**values, window_s=float(window), source=source)


@lru_cache(maxsize=16)
def _alternation(words: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``words`` (vocab.alternation), compiled once per list."""
    from speechqa.vocab import alternation

    return re.compile(alternation(words))


@lru_cache(maxsize=8)
def number_cues(path: str = "") -> NumberCues:
    """The number cues at ``path``, or the shipped ones (loaded once per process)."""
    from speechqa.vocab import read_toml

    data, source = read_toml(path, "pii_zh.toml", "[text] pii_cues_file")
    return parse_number_cues(data, source)


@lru_cache(maxsize=8)
def _noun_sounds(nouns: tuple[str, ...]) -> tuple[tuple[str, ...], SoundBank]:
    """The nouns of three or more characters, all with pinyin, that the sound search hears
    (all but one of a noun's syllables the same), and their sound bank."""
    heard = [n for n in nouns if len(n) >= 3 and phrase_sounds(n) is not None]
    return tuple(heard), SoundBank.of([phrase_sounds(n) for n in heard], [len(n) - 1 for n in heard])  # type: ignore[misc]


def _number_at(text: str, cues: NumberCues) -> int | None:
    """Where ``text`` first names a kind of number, spelled or by sound (收集号 for 手机号),
    or None. The sound search runs only for nouns most of whose fuzzy syllables the text has."""
    spelled = _alternation(tuple(cues.numbers)).search(text)  # leftmost: the first noun named
    if spelled:
        return spelled.start()
    sounds = pinyin(text)
    where = syllable_positions(sounds)
    nouns, bank = _noun_sounds(tuple(cues.numbers))
    found = [m[0].start for j in bank.candidates([syllable_mask(where)])
             if (m := sounds_like(text, nouns[j], bank.needs[j], 0.5, sounds, where,
                                  min_same=bank.needs[j], max_step=0.5))]
    return min(found) if found else None


def _is_question(text: str, cues: NumberCues) -> bool:
    return any(q in text for q in cues.questions)


def number_contexts(turns: Sequence[Turn], cues: NumberCues) -> dict[int, int]:
    """The turns that are number contexts: turn index -> the character offset from which
    number-like spans are masked.

    A turn that names a kind of number (手机号, 身份证, 卡号, 验证码 …) is one from that
    name on, so a staff number said before it (我是8012号客服，请问您的卡号是…) stays. An
    agent's read-back (我重复一遍, 跟您核对一下 …) is one as a whole. So is every turn after an
    agent's (on a mono call: anyone's) turn that names a number, up to the agent's next
    question that names none, and at most ``window_s`` later: the customer's answer, however
    many turns ASR cut it into. A customer naming a number opens no window: what the customer
    says next (我要打12315投诉) is not an answer to it.
    """
    found: dict[int, int] = {}
    open_until: float | None = None
    for i, t in enumerate(turns):
        text = t.text
        at = _number_at(text, cues)
        asks = t.role != "customer"  # the agent, or anyone on a mono call
        if open_until is not None:
            if t.start > open_until or (asks and at is None and _is_question(text, cues)):
                open_until = None
            else:
                found[i] = 0
        if at is not None:
            found[i] = min(found.get(i, at), at)
        if asks and any(r in text for r in cues.readbacks):
            found[i] = 0
        if at is not None and asks:
            open_until = t.end + cues.window_s
    return found


def _apply(text: str, spans: list[PiiSpan]) -> str:
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(s.mask)
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str, *, context: int | None = None, loose_min_digits: int = 11,
                cues: NumberCues | None = None) -> tuple[str, list[PiiSpan]]:
    """``text`` with its PII replaced by typed masks, and the spans that were masked."""
    spans = find_pii(text, context=context, loose_min_digits=loose_min_digits, cues=cues)
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


def redact_turn(turn: Turn, *, context: int | None = None,
                cues: NumberCues | None = None) -> tuple[Turn, tuple[Event, ...]]:
    """A copy of ``turn`` with PII masked in its text, words and corrections, and one
    ``redaction`` event per masked span, timed by the words it covers.

    ``context``: the turn is a number context from this offset of its text on
    (:func:`number_contexts`). A digit string that fits no type is masked from six digits
    on (``LOOSE_MIN_DIGITS``), whoever said it: roles can be wrong (a stereo call wired the
    other way round), and six digits in a row are a fragment of someone's number. Staff
    numbers after 工号 / 编号 (``keep_after``) stay.
    """
    loose = LOOSE_MIN_DIGITS
    text, spans = redact_text(turn.text, context=context, loose_min_digits=loose, cues=cues)
    corrections = tuple(scrub(c) for c in turn.corrections)
    joined = "".join(w.word for w in turn.words)
    lead = len(joined) - len(joined.lstrip())
    exact = joined.strip() == turn.text
    if exact:
        word_spans = [(s.start + lead, s.end + lead, s.mask) for s in spans]
    elif not joined.strip():
        word_spans = []  # no words (an imported transcript): nothing to mask there
    else:
        # Script conversion or a lexicon repair made the words differ from the text: find
        # the PII in the words themselves, so that none of it survives there either.
        shift = None if context is None else (0 if context == 0 else context + lead)
        word_spans = [(s.start, s.end, s.mask) for s in find_pii(joined, context=shift, loose_min_digits=loose,
                                                                  cues=cues)]
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
