"""The scorecard file: sections of items, each a pass condition and an optional N/A condition.

A scorecard is TOML::

    [scorecard]
    name = "普通话客服通用质检"
    version = "2026.11"
    language = "zh"             # optional: calls in another language are not scored (all N/A)

    [[sections]]
    id = "opening"
    name = "开场"

    [[sections.items]]
    id = "greeting"
    name = "开场问候"
    description = "开场白中欢迎来电并报出公司名称"
    severity = "major"          # minor | major | critical
    points = 15                 # the points of all items add up to 100
    auto_fail = false           # true: a failure sets the call's score to 0 (致命项)
    pass = { phrases = ["欢迎致电", "欢迎来电"], role = "agent", first_s = 30, fuzzy = 0.75 }
    na = { ... }                # optional: the item does not apply when this holds

A condition is one of (see the README's rules reference for every key):

- ``phrases``: any / all / none of a list (an entry that is itself a list is a group of
  synonyms), ``min_hits``, ``fuzzy`` (the pinyin similarity a sound-alike needs, 1 = exact);
  an entry may be a *phrase family*, ``欢迎(您)?(致电|来电|拨打)``: ``(a|b)`` picks one
  alternative, ``?`` makes the character or group before it optional;
- ``similar``: example sentences and a ``threshold``: a turn that says about the same thing in
  other words (character and sound alignment, see the engine);
- ``regex`` with an optional ``exclude`` (read on the turn's whole sentence: the same
  speaker's turns that go on with it within 1.5 s); ``phrases`` take an ``exclude`` too;
- scope keys on both: ``role``, ``first_s``, ``last_s``, ``first_pct``, ``last_pct``,
  ``first_turns``, ``last_turns``;
- ``before = [A, B]``: A happens, and B (when it happens) only after A's first hit;
- ``each`` / ``has`` with ``within_s`` or ``within_turns`` and ``direction``: every hit of the
  anchor (a condition, or an event) has a hit of ``has`` in the window before or after it;
- ``event``: events of a type (silence, hold, interruption, escalation …) with ``detail``,
  ``role``, ``min_duration_s``, ``min_count``;
- ``metric`` with ``op`` and ``value``, over the call's metrics and sentiment;
- ``all`` / ``any`` (lists of conditions) and ``not``.

Every error names the file, the item and the field: ``rules.toml: item "greeting": first_s
must be > 0``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechqa import metrics
from speechqa.calls import SENTIMENT_COLUMNS
from speechqa.errors import ConfigError

SEVERITIES = ("minor", "major", "critical")
ROLES = ("agent", "customer", "any")
OPS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne"}
EVENT_TYPES = ("silence", "hold", "interruption", "overlap", "escalation", "redaction")
SCOPE_KEYS = ("role", "first_s", "last_s", "first_pct", "last_pct", "first_turns", "last_turns")
DEFAULT_FUZZY = 0.8
# What a metric condition can test: the call's metrics, its sentiment, and a few counts.
METRIC_NAMES = (*metrics.METRIC_NAMES, *SENTIMENT_COLUMNS, "duration_s", "n_turns", "n_redactions")


@dataclass(frozen=True)
class Scope:
    role: str = "any"
    first_s: float | None = None
    last_s: float | None = None
    first_pct: float | None = None
    last_pct: float | None = None
    first_turns: int | None = None
    last_turns: int | None = None

    def describe(self) -> str:
        parts = [] if self.role == "any" else [f"by the {self.role}"]
        for name, unit in (("first_s", "s"), ("last_s", "s"), ("first_pct", "%"), ("last_pct", "%"),
                           ("first_turns", " turns"), ("last_turns", " turns")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"in the {name.split('_')[0]} {value:g}{unit}")
        return " ".join(parts)


@dataclass(frozen=True)
class Phrases:
    groups: tuple[tuple[str, ...], ...]  # each group: synonyms, families expanded to every wording
    match: str = "any"  # any | all | none
    min_hits: int = 1
    fuzzy: float = DEFAULT_FUZZY
    scope: Scope = Scope()
    labels: tuple[str, ...] = ()  # each group's first entry as written (a family stays one label)
    cores: tuple[tuple[str, ...], ...] = ()  # each group's core wordings, for the sound-alike search
    exclude: re.Pattern[str] | None = None  # a hit in a sentence this matches does not count

    def sound_groups(self) -> tuple[tuple[str, ...], ...]:
        return self.cores or self.groups


@dataclass(frozen=True)
class Similar:
    """Turns that say what one of the example sentences says, in other words."""

    examples: tuple[str, ...]
    threshold: float = 0.8
    scope: Scope = Scope()


@dataclass(frozen=True)
class Regex:
    pattern: re.Pattern[str]
    exclude: re.Pattern[str] | None = None
    scope: Scope = Scope()


@dataclass(frozen=True)
class Before:
    first: Condition
    then: Condition


@dataclass(frozen=True)
class EventCond:
    type: str
    detail: tuple[str, ...] = ()
    role: str = "any"
    min_duration_s: float = 0.0
    min_count: int = 1


@dataclass(frozen=True)
class Context:
    each: Condition  # anchors: a condition's hits or events
    has: Condition
    direction: str = "after"  # after | before
    within_s: float | None = None
    within_turns: int | None = None
    last_said: bool = False  # before: the hit's speaker said nothing more before the anchor


@dataclass(frozen=True)
class Metric:
    name: str
    op: str
    value: float


@dataclass(frozen=True)
class All:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


Condition = Phrases | Similar | Regex | Before | EventCond | Context | Metric | All | Any_ | Not


def uses_roles(cond: Condition) -> bool:
    """Whether ``cond`` needs to know who is the agent: a scope or event of one role, or a
    metric of one role (talk_ratio_agent, n_interruptions_agent …)."""
    return any(_one_role(c) for c in walk(cond))


def _one_role(cond: Condition) -> bool:
    if isinstance(cond, Phrases | Similar | Regex):
        return cond.scope.role in ("agent", "customer")
    if isinstance(cond, EventCond):
        return cond.role in ("agent", "customer")
    return isinstance(cond, Metric) and ("agent" in cond.name or "customer" in cond.name)


@dataclass(frozen=True)
class ItemClips:
    """What training clips an item's result makes (``[sections.items.clips]``)."""

    pass_tag: str = ""  # a passed item is a good clip with this tag (items sharing it must all pass)
    fail_tag: str = ""  # a failed item is a bad clip with this tag
    apology: bool = False  # the item's phrases are apologies: de-escalation clips start from them


@dataclass(frozen=True)
class Item:
    id: str
    section: str
    name: str
    description: str
    severity: str
    points: float
    auto_fail: bool
    passes: Condition
    na: Condition | None = None
    clips: ItemClips = ItemClips()


@dataclass(frozen=True)
class Scorecard:
    name: str
    version: str
    sha256: str
    source: str
    items: tuple[Item, ...]
    sections: tuple[tuple[str, str], ...] = field(default=())  # (id, name)
    language: str = ""  # the Whisper language code its phrases are written in; empty: any

    @property
    def max_points(self) -> float:
        return sum(i.points for i in self.items)


MAX_FAMILY = 512  # wordings one phrase family may expand to
_FAMILY_TOKEN = re.compile(r"[()|?]")


def expand_family(phrase: str, optional: bool = True) -> tuple[str, ...]:
    """Every wording of a phrase family: ``(a|b)`` is one of its alternatives (an empty one
    makes it optional), and ``?`` makes the character or group before it optional.

    >>> expand_family("欢迎(您)?(致电|来电)")
    ('欢迎致电', '欢迎来电', '欢迎您致电', '欢迎您来电')

    ``optional=False`` gives the core wordings only, every optional part left out: what the
    sound-alike search tries (a sound-alike of the core is found inside a longer wording).
    Raises ValueError for unbalanced parentheses, a ``?`` with nothing before it, or more
    than MAX_FAMILY wordings.
    """
    if not _FAMILY_TOKEN.search(phrase):
        return (phrase,)
    pos = 0

    def sequence() -> list[str]:
        nonlocal pos
        out = [""]
        while pos < len(phrase) and phrase[pos] not in "|)":
            ch = phrase[pos]
            if ch == "(":
                pos += 1
                options = alternatives()
                if pos >= len(phrase) or phrase[pos] != ")":
                    raise ValueError("unbalanced parentheses")
                pos += 1
            elif ch == "?":
                raise ValueError("'?' needs a character or a group before it")
            else:
                options = [ch]
                pos += 1
            if pos < len(phrase) and phrase[pos] == "?":
                options = ["", *options] if optional else [""]
                pos += 1
            out = [a + b for a in out for b in options]
            if len(out) > MAX_FAMILY:
                raise ValueError(f"more than {MAX_FAMILY} wordings")
        return out

    def alternatives() -> list[str]:
        nonlocal pos
        found = sequence()
        while pos < len(phrase) and phrase[pos] == "|":
            pos += 1
            found += sequence()
        return found

    result = alternatives()
    if pos != len(phrase):
        raise ValueError("unbalanced parentheses")
    result = list(dict.fromkeys(w for w in result if w.strip()))
    if not result:
        raise ValueError("it expands to nothing")
    return tuple(sorted(result, key=len))


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.where = ""

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where}{message}")

    def number(self, table: dict[str, Any], key: str, *, positive: bool = True, integer: bool = False,
               default: Any = None) -> Any:
        if key not in table:
            return default
        value = table[key]
        wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
        if wrong_type or (integer and not isinstance(value, int)):
            raise self.fail(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
        if positive and value <= 0:
            raise self.fail(f"{key} must be > 0")
        return value

    def scope(self, table: dict[str, Any]) -> Scope:
        role = table.get("role", "any")
        if role not in ROLES:
            raise self.fail(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        values = {k: self.number(table, k, integer=k.endswith("turns")) for k in SCOPE_KEYS[1:]}
        for key in ("first_pct", "last_pct"):
            if values[key] is not None and values[key] > 100:
                raise self.fail(f"{key} must be <= 100")
        return Scope(role=role, **values)

    def regex(self, table: dict[str, Any], key: str) -> re.Pattern[str] | None:
        if key not in table:
            return None
        if not isinstance(table[key], str) or not table[key]:
            raise self.fail(f"{key} must be a non-empty string")
        try:
            return re.compile(table[key])
        except re.error as exc:
            raise self.fail(f"{key} is not a valid regular expression ({exc})") from None

    def known(self, table: dict[str, Any], allowed: tuple[str, ...], kind: str) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} in a {kind} condition; known: {', '.join(allowed)}")

    def condition(self, value: Any) -> Condition:
        if not isinstance(value, dict) or not value:
            raise self.fail(f"a condition must be a table, got {value!r}")
        if "all" in value or "any" in value:
            key = "all" if "all" in value else "any"
            self.known(value, (key,), key)
            parts = value[key]
            if not isinstance(parts, list) or not parts:
                raise self.fail(f"{key} must be a non-empty list of conditions")
            built = tuple(self.condition(p) for p in parts)
            return All(built) if key == "all" else Any_(built)
        if "not" in value:
            self.known(value, ("not",), "not")
            return Not(self.condition(value["not"]))
        if "phrases" in value:
            self.known(value, ("phrases", "match", "min_hits", "fuzzy", "exclude", *SCOPE_KEYS), "phrases")
            raw = value["phrases"]
            if not isinstance(raw, list) or not raw:
                raise self.fail("phrases must be a non-empty list")
            groups, labels, cores = [], [], []
            for entry in raw:
                group = entry if isinstance(entry, list) else [entry]
                if not group or not all(isinstance(p, str) and p.strip() for p in group):
                    raise self.fail(f"phrases: {entry!r} must be a phrase or a list of synonyms")
                wordings: list[str] = []
                core: list[str] = []
                for phrase in group:
                    try:
                        wordings.extend(expand_family(phrase.strip()))
                        core.extend(expand_family(phrase.strip(), optional=False))
                    except ValueError as exc:
                        raise self.fail(f"phrases: {phrase!r} is not a valid phrase family ({exc})") from None
                groups.append(tuple(dict.fromkeys(wordings)))
                cores.append(tuple(dict.fromkeys(core)))
                labels.append(group[0].strip())
            match = value.get("match", "any")
            if match not in ("any", "all", "none"):
                raise self.fail(f"match must be any, all or none, got {match!r}")
            fuzzy = self.number(value, "fuzzy", default=DEFAULT_FUZZY)
            if not 0 < fuzzy <= 1:
                raise self.fail("fuzzy must be in (0, 1]")
            min_hits = self.number(value, "min_hits", integer=True, default=1)
            return Phrases(tuple(groups), match, min_hits, float(fuzzy), self.scope(value), tuple(labels),
                           tuple(cores), self.regex(value, "exclude"))
        if "similar" in value:
            self.known(value, ("similar", "threshold", *SCOPE_KEYS), "similar")
            raw = value["similar"]
            if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x.strip() for x in raw):
                raise self.fail("similar must be a non-empty list of example sentences")
            threshold = self.number(value, "threshold", default=0.8)
            if not 0 < threshold <= 1:
                raise self.fail("threshold must be in (0, 1]")
            return Similar(tuple(x.strip() for x in raw), float(threshold), self.scope(value))
        if "regex" in value:
            self.known(value, ("regex", "exclude", *SCOPE_KEYS), "regex")
            pattern = self.regex(value, "regex")
            assert pattern is not None
            return Regex(pattern, self.regex(value, "exclude"), self.scope(value))
        if "before" in value:
            self.known(value, ("before",), "before")
            pair = value["before"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail("before must be a list of two conditions [A, B]")
            return Before(self.condition(pair[0]), self.condition(pair[1]))
        if "each" in value:
            self.known(value, ("each", "has", "direction", "within_s", "within_turns", "last_said"), "each")
            if "has" not in value:
                raise self.fail("each needs has (what must be near every anchor)")
            direction = value.get("direction", "after")
            if direction not in ("after", "before"):
                raise self.fail(f"direction must be after or before, got {direction!r}")
            within_s = self.number(value, "within_s")
            within_turns = self.number(value, "within_turns", integer=True)
            if within_s is None and within_turns is None:
                raise self.fail("each needs within_s or within_turns")
            last_said = value.get("last_said", False)
            if not isinstance(last_said, bool):
                raise self.fail(f"last_said must be true or false, got {last_said!r}")
            return Context(self.condition(value["each"]), self.condition(value["has"]), direction,
                           within_s, within_turns, last_said)
        if "event" in value:
            self.known(value, ("event", "detail", "role", "min_duration_s", "min_count"), "event")
            if value["event"] not in EVENT_TYPES:
                raise self.fail(f"event must be one of {', '.join(EVENT_TYPES)}, got {value['event']!r}")
            detail = value.get("detail", [])
            detail = [detail] if isinstance(detail, str) else detail
            role = value.get("role", "any")
            if role not in (*ROLES, "both"):
                raise self.fail(f"role must be one of {', '.join(ROLES)}, got {role!r}")
            return EventCond(value["event"], tuple(detail), role,
                             float(self.number(value, "min_duration_s", positive=False, default=0.0)),
                             self.number(value, "min_count", integer=True, default=1))
        if "metric" in value:
            self.known(value, ("metric", "op", "value"), "metric")
            if value.get("op") not in OPS:
                raise self.fail(f"op must be one of {' '.join(OPS)}, got {value.get('op')!r}")
            if "value" not in value:
                raise self.fail("metric needs a value")
            return Metric(str(value["metric"]), value["op"], float(self.number(value, "value", positive=False)))
        raise self.fail(f"unknown condition with keys {sorted(value)}; expected one of phrases, similar, "
                        "regex, "
                        "before, each, event, metric, all, any, not")


def walk(cond: Condition | None) -> Iterator[Condition]:
    """``cond`` and every condition inside it, depth first."""
    if cond is None:
        return
    yield cond
    if isinstance(cond, All | Any_):
        for part in cond.parts:
            yield from walk(part)
    elif isinstance(cond, Not):
        yield from walk(cond.part)
    elif isinstance(cond, Before):
        yield from walk(cond.first)
        yield from walk(cond.then)
    elif isinstance(cond, Context):
        yield from walk(cond.each)
        yield from walk(cond.has)


def parse_scorecard(data: dict[str, Any], source: str, sha256: str = "") -> Scorecard:
    """Build and validate a scorecard from parsed TOML. Raises ConfigError naming the problem."""
    p = _Parser(source)
    head = data.get("scorecard", {})
    if not isinstance(head, dict):
        raise p.fail("[scorecard] must be a table")
    unknown_head = sorted(set(head) - {"name", "version", "language"})
    if unknown_head:
        raise p.fail(f"[scorecard] unknown key {unknown_head[0]!r}; known: name, version, language")
    language = head.get("language", "")
    if not isinstance(language, str) or not re.fullmatch(r"[a-z]{0,3}", language):
        raise p.fail(f"[scorecard] language must be a language code such as zh, got {language!r}")
    sections = data.get("sections")
    if not isinstance(sections, list) or not sections:
        raise p.fail("no [[sections]]: a scorecard needs at least one section with items")
    items: list[Item] = []
    seen: set[str] = set()
    section_names = []
    for s_index, section in enumerate(sections, 1):
        sid = section.get("id") or f"section{s_index}"
        section_names.append((sid, str(section.get("name", sid))))
        p.where = f'section "{sid}": '
        raw_items = section.get("items")
        if not isinstance(raw_items, list) or not raw_items:
            raise p.fail("no [[sections.items]]")
        for raw in raw_items:
            iid = raw.get("id")
            if not isinstance(iid, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", iid or ""):
                raise p.fail(f"every item needs an id of letters, digits, _ or -, got {iid!r}")
            p.where = f'item "{iid}": '
            if iid in seen:
                raise p.fail("id used twice")
            seen.add(iid)
            known = ("id", "name", "description", "severity", "points", "auto_fail", "pass", "na", "clips")
            unknown = sorted(set(raw) - set(known))
            if unknown:
                raise p.fail(f"unknown key {unknown[0]!r}; known: {', '.join(known)}")
            severity = raw.get("severity", "major")
            if severity not in SEVERITIES:
                raise p.fail(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
            points = p.number(raw, "points", positive=False)
            if points is None or points < 0:
                raise p.fail("points must be a number >= 0")
            auto_fail = raw.get("auto_fail", False)
            if not isinstance(auto_fail, bool):
                raise p.fail("auto_fail must be true or false")
            if "pass" not in raw:
                raise p.fail("pass (the condition the item checks) is missing")
            passes = p.condition(raw["pass"])
            na = p.condition(raw["na"]) if "na" in raw else None
            for cond in (passes, na):
                for metric in (c for c in walk(cond) if isinstance(c, Metric)):
                    if metric.name not in METRIC_NAMES:
                        raise p.fail(f"unknown metric {metric.name!r}; known: {', '.join(METRIC_NAMES)}")
            clips = ItemClips()
            if "clips" in raw:
                table = raw["clips"]
                if not isinstance(table, dict):
                    raise p.fail("clips must be a table such as { pass = \"greeting\" }")
                unknown = sorted(set(table) - {"pass", "fail", "apology"})
                if unknown:
                    raise p.fail(f"clips: unknown key {unknown[0]!r}; known: pass, fail, apology")
                for key in ("pass", "fail"):
                    tag = table.get(key, "")
                    if not isinstance(tag, str) or (key in table and not re.fullmatch(r"[A-Za-z0-9_\-]+", tag)):
                        raise p.fail(f"clips.{key} must be a tag of letters, digits, _ or -, got {tag!r}")
                apology = table.get("apology", False)
                if not isinstance(apology, bool):
                    raise p.fail("clips.apology must be true or false")
                if apology and not any(isinstance(c, Phrases) for c in walk(passes)):
                    raise p.fail("clips.apology needs phrases in the pass condition (they find the apologies)")
                clips = ItemClips(table.get("pass", ""), table.get("fail", ""), apology)
            items.append(Item(iid, sid, str(raw.get("name", iid)), str(raw.get("description", "")),
                              severity, float(points), auto_fail, passes, na, clips))
    p.where = ""
    total = sum(i.points for i in items)
    if abs(total - 100) > 1e-6:
        raise p.fail(f"item points add up to {total:g}, not 100")
    return Scorecard(str(head.get("name", Path(source).stem)), str(head.get("version", "")), sha256, source,
                     tuple(items), tuple(section_names), language)


def load_scorecard(path: Path | str | None = None) -> Scorecard:
    """The scorecard at ``path``, or the shipped default for Mandarin service calls."""
    from speechqa.vocab import parse_toml, read_bytes

    raw, source = read_bytes(str(path or ""), "scorecard_zh.toml", "rules file not found")
    return parse_scorecard(parse_toml(raw, source), source, hashlib.sha256(raw).hexdigest())
