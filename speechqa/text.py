"""The text stage: match-text normalisation, the jieba segmenter, and the per-call text pass.

A turn keeps two forms of its words. ``Turn.text`` is the display text: what Whisper wrote,
readable, changed only by PII masking (speechqa/pii.py). ``Turn.match_text`` is
``normalize(text)``, the form that compliance rules, sentiment and escalation match against,
so that spellings of the same speech meet:

- NFKC: full-width letters, digits and symbols become half-width; letters are lowercased.
- Punctuation and whitespace: every run of them becomes one ASCII space, trimmed at the ends.
  Whisper's commas and full stops fall wherever its decoder put them, so they carry no
  meaning a rule could rely on; a matcher that wants to ignore clause boundaries deletes the
  spaces. Kept: ``.`` and ``:`` between two digits or letters (1.5, 10:30, qq.com), the
  symbols ``% + @ # * & = $ ¥ € £ ° ℃``, and PII masks such as ``[手机号]``, which stay
  whole tokens. A thousands comma (``3,500``) is dropped.
- Numerals: canonical form is Arabic digits. Chinese numerals are converted only where they
  are certainly a number, because most 一 in speech are not (一下, 一直, 一样, 万一, 十分感谢):
  a digit-by-digit string of three or more (工号八零一二 → 工号8012, 幺三八 → 138), a
  well-formed place-value numeral of two or more characters (一百二十 → 120, 两万五 → 25000,
  1万 → 10000, 2.5万 → 25000), a single numeral right before a measure word (三个 → 3个,
  两点 → 2点, 十月 → 10月; not 一点儿, 一块儿, 快一点, 十分感谢) and 百分之五十 → 50%.
  Approximations (三四个, 两三百) and a short list of set phrases (三三两两, 一次性,
  三天两头 ...) are left alone. 点 stays a character: 十点半 → 10点半, 一点五 → 1点5.

``normalize`` runs on every turn, so it is a handful of compiled regular expressions and
costs some tens of microseconds per turn; it needs neither jieba nor cn2an.

The segmenter is a private ``jieba.Tokenizer``: jieba's module-level ``cut`` is bound to a
process-global Tokenizer, and importing it logs to stderr. We keep our own with its own cache
file and a silenced logger, built lazily once per process and per user dictionary.
"""

from __future__ import annotations

import logging
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechqa.errors import ConfigError
from speechqa.vocab import alternation, read_lists

if TYPE_CHECKING:
    from speechqa.calls import Event, Turn
    from speechqa.config import TextSettings

# ---------------------------------------------------------------------------------------------
# Numerals

#: Chinese characters that stand for one decimal digit. 幺 (1) and 洞 (0) are how digits are
#: read out in phone and account numbers; they are digits only in digit-by-digit strings.
CN_DIGIT_VALUES: dict[str, str] = {
    "零": "0", "〇": "0", "洞": "0", "幺": "1", "一": "1", "二": "2", "两": "2", "三": "3",
    "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
}  # fmt: skip
_PLACE_DIGITS = {c: int(v) for c, v in CN_DIGIT_VALUES.items() if c not in "洞幺"}
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
_TO_DIGITS = str.maketrans(CN_DIGIT_VALUES)

_NUMERAL_CHARS = frozenset("0123456789" + "".join(CN_DIGIT_VALUES) + "十百千万亿")
_RUN_CHARS = "0-9" + "".join(CN_DIGIT_VALUES) + "十百千万亿"  # as a regex class


@lru_cache(maxsize=1)
def _words() -> dict[str, tuple[str, ...]]:
    """The language's word lists (speechqa/data/words_zh.toml), checked once."""
    return read_lists("", WORDS_FILE, "shipped", ("set_phrases", "measures", "backchannels"))


WORDS_FILE = "words_zh.toml"
# Set phrases that contain numerals but are not numbers (三天两头, 一次性 …).
_SET_PHRASES = _words()["set_phrases"]
# Measure words and units after which a lone numeral is a count (三个, 两天, 五块钱).
_MEASURES = alternation(_words()["measures"])
_MEASURE = re.compile(f"(?:{_MEASURES})")
_HAS_UNIT = re.compile("[十百千万亿]")
# Only positions that may start a number are tried, and a lone numeral only before a measure
# word or after "<numeral>点": most 一 in speech never reach Python code.
_NUMERAL = re.compile(
    f"(?=[{_RUN_CHARS}])(?:"
    f"(?P<keep>{'|'.join(_SET_PHRASES)})"
    f"|百分之(?P<pct>百|[{_RUN_CHARS}]+(?:[.点][{_RUN_CHARS}]+)?)"
    r"|(?P<dec>[0-9]+\.[0-9]+)(?P<big>[万亿])(?![0-9])"
    f"|(?P<run>[{_RUN_CHARS}]{{2,}})"
    f"|(?P<one>[{_RUN_CHARS}])(?=(?:{_MEASURES}))"
    f"|(?<=[{_RUN_CHARS}]点)(?P<after>[{_RUN_CHARS}])"
    ")"
)


def _parse_section(s: str, first: bool) -> int | None:
    """Value of a place-value numeral below 10000 (三千五百, 一百零五, 十五), or None."""
    if s.isascii() and s.isdigit():
        return int(s)
    total, pending, last_unit, zero = 0, None, 0, False
    i = 0
    while i < len(s):
        ch = s[i]
        if ch.isascii() and ch.isdigit():
            j = i
            while j < len(s) and s[j].isascii() and s[j].isdigit():
                j += 1
            if pending is not None or j - i > 1:  # "30百" is no numeral
                return None
            pending, i = int(s[i:j]), j
            continue
        if ch in _PLACE_DIGITS:
            if pending is not None:
                return None  # two digits in a row: an approximation such as 三四百
            if _PLACE_DIGITS[ch] == 0:
                if not last_unit:
                    return None
                zero = True
            else:
                pending = _PLACE_DIGITS[ch]
        elif ch in _SMALL_UNITS:
            unit = _SMALL_UNITS[ch]
            if last_unit and unit >= last_unit:
                return None
            if pending is None and not (unit == 10 and ((first and not last_unit) or zero)):
                return None  # 百 or 千 with no digit before it
            total += (1 if pending is None else pending) * unit
            pending, last_unit = None, unit
        else:
            return None
        i += 1
    if pending is not None:
        # 三千五 is 3500 and 一百五 is 150: a last digit straight after 百 or 千 is one place down.
        total += pending * (last_unit // 10 if last_unit >= 100 and not zero else 1)
    return total


def parse_numeral(s: str) -> int | None:
    """The value of a Chinese (or mixed) place-value numeral such as 两万五 or 1万2千, or None.

    Strict on purpose: approximations (三四百), set phrases (千万, 万一) and malformed strings
    give None, so the caller leaves them as they are.
    """
    total, first, rest = 0, True, s
    for big, mult in sorted(_BIG_UNITS.items(), key=lambda kv: -kv[1]):
        if big not in rest:
            continue
        head, _, rest = rest.partition(big)
        if big in rest or not head:
            return None
        value = _parse_section(head, first)
        if value is None:
            return None
        total, first = total + value * mult, False
        if rest.startswith(("零", "〇")):
            rest = rest[1:]
        elif len(rest) == 1 and rest in _PLACE_DIGITS:
            return total + _PLACE_DIGITS[rest] * mult // 10  # 两万五 is 25000
    if rest:
        value = _parse_section(rest, first)
        if value is None:
            return None
        total += value
    return total


def _lone_numeral_counts(text: str, start: int, end: int) -> bool:
    """Whether the one-character numeral at ``text[start:end]`` is a count (三个, 两天, 十点)."""
    m = _MEASURE.match(text, end)
    if m is None:
        # the minutes or decimals of 十点五 / 一点五: a numeral after "<numeral>点"
        return text[start - 1 : start] == "点" and start >= 2 and text[start - 2] in _NUMERAL_CHARS
    ch, measure, after = text[start], m.group(), text[m.end() : m.end() + 1]
    if after == "儿" or text[start - 1 : start] == "几":  # 一块儿, 一点儿; 几十块
        return False
    if measure == "点" and ch == "一":  # 快一点 is "a bit"; 一点半 is half past one
        return bool(after) and (after in "半钟" or after in _NUMERAL_CHARS)
    if measure == "分" and ch == "十":  # 十分感谢 is "very"; 三点十分 is 3:10
        return text[start - 1 : start] == "点"
    return True


def _convert_run(text: str, start: int, run: str) -> str:
    if run.isascii():
        return run
    end = start + len(run)
    if not _HAS_UNIT.search(run):
        if len(run) >= 3:
            return run.translate(_TO_DIGITS)  # a digit-by-digit string: 八零一二, 幺三八
        if len(run) == 1 and run in _PLACE_DIGITS and _lone_numeral_counts(text, start, end):
            return str(_PLACE_DIGITS[run])
        return run
    value = parse_numeral(run)
    if value is None:
        return run
    if len(run) == 1 and not _lone_numeral_counts(text, start, end):
        return run  # a lone 十 that counts nothing
    return str(value)


def _numeral_sub(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind == "keep":
        return m.group()
    if kind == "pct":
        pct = m.group("pct")
        if pct == "百":
            return "100%"
        head, dot, frac = pct.replace("点", ".").partition(".")
        value = parse_numeral(head)
        if value is None or (frac and not frac.translate(_TO_DIGITS).isdigit()):
            return m.group()
        return f"{value}{dot}{frac.translate(_TO_DIGITS)}%"
    if kind == "big":
        amount = float(m.group("dec")) * _BIG_UNITS[m.group("big")]
        return str(int(amount)) if amount.is_integer() else m.group()
    return _convert_run(m.string, m.start(), m.group())


# ---------------------------------------------------------------------------------------------
# Normalisation

_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}
_MASK_SPLIT = re.compile(r"(\[[\u4e00-\u9fff]{1,8}\])")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_INNER_MARK = re.compile(r"(?<=[0-9a-z])([.:])(?=[0-9a-z])")
_MARK_HIDE = {".": "\ue000", ":": "\ue001"}
_MARK_SHOW = str.maketrans({v: k for k, v in _MARK_HIDE.items()})
_PUNCT = re.compile(r"[^\w%+@#*&=$¥€£°℃\ue000\ue001]+|_+")


def _normalize_segment(seg: str) -> str:
    if "." in seg or ":" in seg:
        seg = _INNER_MARK.sub(lambda m: _MARK_HIDE[m.group()], seg)
    seg = _PUNCT.sub(" ", seg).translate(_MARK_SHOW)
    return _NUMERAL.sub(_numeral_sub, seg)


def normalize(text: str) -> str:
    """The match text of ``text``: half-width, lowercase, one kind of separator, Arabic numerals.

    >>> normalize("工号八零一二，一共一百二十块！")
    '工号8012 一共120块'
    """
    if not text:
        return ""
    if "," in text:
        text = _THOUSANDS.sub("", text)
    text = fold(text)
    if "[" not in text:
        return " ".join(_normalize_segment(text).split())
    parts = _MASK_SPLIT.split(text)
    out = [part if i % 2 else _normalize_segment(part) for i, part in enumerate(parts)]
    return " ".join("".join(out).split())


# ---------------------------------------------------------------------------------------------
# Repairs of what Whisper wrote

# whisper-base writes text as byte-level BPE tokens. A full-width comma is EF BC 8C in UTF-8;
# when the decoder gets its last byte wrong, another character of the same block comes out
# (Ｇ EF BC A7, ４ EF BC 94, １ EF BC 91) or one of the small-form block (﹔ EF B9 94). Such a
# character standing alone between Han characters is not a word of the text, it is the comma.
_SLIP_RANGE = "\uff01-\uff5e\ufe50-\ufe6b"
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SLIP = re.compile(f"(?<=[{_HAN}0-9])[{_SLIP_RANGE}](?=[{_HAN}]|[\\s\u3000-\u303f\uff0c\uff01\uff1f]|$)")
# The full-width forms that are punctuation already, and stay what they are.
_FULL_PUNCT = frozenset("，！？：；（）、．＂＇")
# A lone digit before one of these is a count (第１次, １个), not a slip.
_DIGIT_NEXT = re.compile(f"(?:{_MEASURES}|[:：.．%％])")


def _slip_fits_as_token(text: str, i: int, half: str) -> bool:
    """Whether the full-width character at ``text[i]`` (``half`` once folded) is a real token
    with its neighbours: a letter in a dictionary word (X光, B超, A股, T恤) or a digit that
    counts something (第１次, ４个)."""
    if half.isdigit():
        return text[i - 1 : i] == "第" or _DIGIT_NEXT.match(text, i + 1) is not None
    if not half.isalpha():
        return False
    freq = tokenizer().FREQ
    for variant in {half.upper(), half.lower()}:
        for lo in (1, 2):
            for hi in (1, 2):
                if freq.get(text[max(i - lo, 0) : i] + variant) or freq.get(variant + text[i + 1 : i + 1 + hi]):
                    return True
    return False


def repair_slips(text: str) -> str:
    """``text`` with whisper's byte-level punctuation slips made the comma they stand for.

    One rule, not one character at a time: a full-width ASCII-range or small-form character
    that stands alone after a Han character (or an ASCII digit: Whisper never mixes the two
    widths in one number), before another Han character, a punctuation
    mark or the end of the text, and that no real token fits (see
    :func:`_slip_fits_as_token`), becomes ``，`` (``。`` at the very end). A letter or digit
    that is a token is folded to half width instead. The length never changes, so word
    timestamps stay aligned.

    >>> repair_slips("你们怎么回事Ｇ我这个月的账单多扣了两百多块钱Ｇ")
    '你们怎么回事，我这个月的账单多扣了两百多块钱。'
    """
    if not _SLIP.search(text):
        return text
    chars = list(text)
    for m in _SLIP.finditer(text):
        i, ch = m.start(), m.group()
        if ch in _FULL_PUNCT:
            continue
        half = unicodedata.normalize("NFKC", ch)
        if len(half) == 1 and _slip_fits_as_token(text, i, half):
            chars[i] = half
        else:
            chars[i] = "。" if i == len(text) - 1 else "，"
    return "".join(chars)


@lru_cache(maxsize=16)
def loop_pattern(repeat_min: int = 5) -> re.Pattern[str]:
    """Decoding loops: a 1-2 character unit ``repeat_min`` times in a row, a 3-5 character
    unit three times, or a phrase of 6-30 characters twice. People do say 对对对 or 喂喂,
    but nobody says the same sentence twice without a breath. Matches text with punctuation
    removed (the guard) as well as match text, whose clause breaks are single spaces."""
    short = repeat_min - 1
    return re.compile(
        rf"(\S{{1,2}}?)(?: ?\1){{{short},}}|(\S[^ ]{{2,4}}?)(?: ?\2){{2,}}|(\S.{{5,29}}?)(?: ?\3)+",
        re.DOTALL,
    )


def collapse_loops(text: str, repeat_min: int = 5) -> str:
    """``text`` (match text) with every decoding loop cut to one occurrence of its unit.

    >>> collapse_loops("就是我本人 就是我本人 就是我本人 就是我本人")
    '就是我本人'
    """
    pattern = loop_pattern(repeat_min)
    return pattern.sub(lambda m: next(g for g in m.groups() if g is not None), text)


# ---------------------------------------------------------------------------------------------
# Segmentation

# A user word gets at least this frequency, about that of an everyday word in jieba's
# dictionary, so it stays one token next to neighbours it could share a character with.
_USER_WORD_FREQ = 2000


def _new_tokenizer() -> Any:
    import jieba

    logging.getLogger("jieba").setLevel(logging.ERROR)
    tok = jieba.Tokenizer()
    tok.cache_file = str(Path(tempfile.gettempdir()) / "speechqa-jieba.cache")
    tok.initialize()
    return tok


@lru_cache(maxsize=8)
def _tokenizer(user_words: tuple[str, ...], user_dict: str) -> Any:
    if not user_words and not user_dict:
        return _new_tokenizer()
    tok = _new_tokenizer()
    if user_dict:
        path = Path(user_dict)
        if not path.is_file():
            raise ConfigError(f"{path}: jieba user dictionary not found ([text] user_dict)")
        try:
            tok.load_userdict(str(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: not a jieba user dictionary ('word [freq] [tag]' per line, UTF-8): {exc}"
            ) from None
    for word in user_words:
        word = word.strip()
        if word:
            tok.add_word(word, freq=max(tok.suggest_freq(word, False), _USER_WORD_FREQ))
    return tok


def tokenizer(user_words: Sequence[str] = (), user_dict: str = "") -> Any:
    """speechqa's own jieba Tokenizer, initialised on first use and kept for the process.

    With no arguments it has jieba's default dictionary only (what speechqa/lexicon.py
    needs). ``user_words`` are added as single words; ``user_dict`` is a jieba user
    dictionary file ("word [freq] [tag]" per line). Raises ConfigError naming a missing or
    unreadable ``user_dict``.
    """
    return _tokenizer(tuple(user_words), str(user_dict))


def word_frequency(word: str) -> int:
    """How common ``word`` is as one word in jieba's dictionary (0 when it is not one)."""
    return int(tokenizer().FREQ.get(word, 0))


COMMON_WORD_FREQ = 50  # jieba's count above which a word is everyday speech (现象 9054; 续保 3)


def is_common_word(word: str) -> bool:
    """Whether ``word`` is an everyday word: a sound-alike that is one (主观, 经历) means that
    word, and one that splits one (象麻烦 out of 现象麻烦) is no sound-alike."""
    return word_frequency(word) > COMMON_WORD_FREQ


@lru_cache(maxsize=65536)
def _cut(tok: Any, n_words: int, total: int, text: str) -> tuple[str, ...]:
    return tuple(tok.cut(text, HMM=False))


def cut(text: str, tok: Any = None) -> tuple[str, ...]:
    """``tok.cut(text, HMM=False)`` (default: :func:`tokenizer`), cached per text and per
    state of the tokenizer's dictionary (its word count and total frequency, which
    ``add_word`` and ``del_word`` change); an object without them is not cached."""
    tok = tokenizer() if tok is None else tok
    freq, total = getattr(tok, "FREQ", None), getattr(tok, "total", None)
    if not isinstance(freq, dict) or not isinstance(total, int | float):
        return tuple(tok.cut(text, HMM=False))
    return _cut(tok, len(freq), total, text)


def token_bounds(text: str) -> frozenset[int]:
    """Character offsets where jieba's segmentation puts a word boundary."""
    bounds = {0}
    pos = 0
    for token in cut(text):
        pos += len(token)
        bounds.add(pos)
    return frozenset(bounds)


def tokens(text: str, tokenizer: Any = None) -> tuple[str, ...]:
    """jieba tokens of display text, without whitespace and punctuation.

    A PII mask (``[手机号]``) is one token. The HMM for unknown words is off, as in the
    lexicon: tokens come from the dictionaries only, so a user word decides segmentation.
    """
    tok = _tokenizer((), "") if tokenizer is None else tokenizer
    out: list[str] = []
    for i, part in enumerate(_MASK_SPLIT.split(text) if "[" in text else (text,)):
        if i % 2:
            out.append(part)
            continue
        out.extend(t for t in cut(part, tok) if any(c.isalnum() for c in t))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The stage


def _replaced(turn: Turn, **changes: Any) -> Turn:
    """``dataclasses.replace(turn, **changes)`` without the keyword call through ``__init__``
    (Turn is a frozen dataclass with no ``__post_init__``: the same object, cheaper per turn)."""
    new = object.__new__(type(turn))
    fields = new.__dict__
    fields.update(turn.__dict__)
    fields.update(changes)
    return new


def process_turns(turns: Sequence[Turn], settings: TextSettings) -> tuple[tuple[Turn, ...], tuple[Event, ...]]:
    """The text stage for one call: PII masked (when ``settings.redact_pii``), then the match
    text and tokens filled in. Returns new turns and the redaction events; changes nothing.

    PII is masked with the whole call in view: the customer's answer to a request for a
    number, and an agent's read-back, are number contexts (speechqa/pii.py). A turn flagged
    ``repetition`` keeps its raw text; its match text, which sentiment and the rules read,
    holds each decoding loop once.
    """
    from speechqa.pii import number_contexts, number_cues, redact_turn

    tok = tokenizer(settings.user_words, settings.user_dict)
    cues = number_cues(settings.pii_cues_file)
    contexts = number_contexts(turns, cues) if settings.redact_pii else {}
    out: list[Turn] = []
    events: list[Event] = []
    for i, turn in enumerate(turns):
        if settings.redact_pii:
            turn, found = redact_turn(turn, context=contexts.get(i), cues=cues)
            events.extend(found)
        match_text = normalize(turn.text)
        if "repetition" in turn.flags:
            match_text = collapse_loops(match_text)
        out.append(_replaced(turn, match_text=match_text, tokens=tokens(turn.text, tok)))
    return tuple(out), tuple(events)


# Acknowledgements that do not take the floor or carry an opinion (words_zh.toml
# ``backchannels``); metrics uses them to tell a backchannel from an interruption, sentiment
# to keep them neutral.
_BACKCHANNEL = re.compile(f"(?:{alternation(_words()['backchannels'])})+")
_NOT_CONTENT = re.compile(r"[\W_]+")


def is_backchannel(text: str) -> bool:
    """Whether ``text`` is only an acknowledgement (punctuation and case ignored)."""
    content = _NOT_CONTENT.sub("", text).lower()
    return bool(content) and _BACKCHANNEL.fullmatch(content) is not None


# --- shared normalisation primitives ---
# The other stages' text forms build on these, so that half-width folding, case and
# punctuation mean the same everywhere: the match text above (rules), clause text
# (sentiment), squashed text (the junk-phrase guard) and CER text (evaluation).

#: Punctuation, symbols and whitespace as a regex character class: ASCII punctuation,
#: CJK punctuation (U+3000-303F), full-width forms, and … — ·.
PUNCT_CLASS = r"\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~…—·"
PUNCT_RUN = re.compile(f"[{PUNCT_CLASS}]+")
CLAUSE_BREAKS = frozenset("，。！？；,.!?;")  # what ends a clause in clause text
_DIGIT_GAP = re.compile(r"(?<=[0-9])\s+(?=[0-9])")  # ASR may say "1 2 3 1 5"
_SPACE_RUN = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[\W_]+")  # \w is str.isalnum() plus the underscore


def fold(text: str) -> str:
    """Half-width (the full-width table, then NFKC) and lower case: every normaliser's first step."""
    text = text.translate(_HALF_WIDTH)  # the common case, cheaply; NFKC does the rest
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def squash(text: str) -> str:
    """Folded letters and digits only: no punctuation, spaces or symbols (CER, junk phrases)."""
    return _NOT_ALNUM.sub("", fold(text))


def clause_text(text: str) -> str:
    """Folded text with its clause breaks kept: PII masks and spaces become ``，`` and digits
    that ASR spaced out are joined (sentiment's form, which the sentiment model was trained on)."""
    text = _MASK_SPLIT.sub("，", fold(text))
    return _SPACE_RUN.sub("，", _DIGIT_GAP.sub("", text.strip()))
